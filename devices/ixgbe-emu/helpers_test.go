package ixgbeemu

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/stretchr/testify/require"
)

const (
	memBase = 0x100000
	memSize = 8 << 20
	rxRing  = memBase + 0x0000  // rx descriptor rings, 0x1000 apart per queue
	txRing  = memBase + 0x40000 // tx descriptor rings
	rxBufs  = memBase + 0x100000
	txBufs  = memBase + 0x500000
)

var (
	testMAC  = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	peerMAC  = [6]byte{0x52, 0x54, 0x00, 0xAA, 0xBB, 0xCC}
	bcastMAC = [6]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
)

type fakeWire struct {
	mu     sync.Mutex
	frames [][]byte
	nsegs  []int
}

func (w *fakeWire) Send(segs [][]byte) error {
	var f []byte
	for _, s := range segs {
		f = append(f, s...)
	}
	w.mu.Lock()
	w.frames = append(w.frames, f)
	w.nsegs = append(w.nsegs, len(segs))
	w.mu.Unlock()
	return nil
}

func (w *fakeWire) get() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.frames...)
}

type fakeIRQ struct {
	mu      sync.Mutex
	vectors []int
	times   []time.Time
	level   bool
	edges   int
}

func (f *fakeIRQ) Trigger(v int) error {
	f.mu.Lock()
	f.vectors = append(f.vectors, v)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	return nil
}

func (f *fakeIRQ) SetINTx(a bool) {
	f.mu.Lock()
	if a && !f.level {
		f.edges++
	}
	f.level = a
	f.mu.Unlock()
}

func (f *fakeIRQ) fired() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.vectors...)
}

func (f *fakeIRQ) intx() (bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.level, f.edges
}

type rig struct {
	t    *testing.T
	d    *Device
	mem  *guestmem.Memory
	ram  []byte
	wire *fakeWire
	irq  *fakeIRQ
}

func newRig(t testing.TB) *rig {
	ram := make([]byte, memSize)
	mem, err := guestmem.FromRegions(guestmem.Region{GPA: memBase, Host: ram})
	require.NoError(t, err)
	r := &rig{mem: mem, ram: ram, wire: &fakeWire{}, irq: &fakeIRQ{}}
	if tt, ok := t.(*testing.T); ok {
		r.t = tt
	}
	d, err := New(Config{MAC: testMAC, Queues: 16, DMA: mem, Wire: r.wire, IRQ: r.irq})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	r.d = d
	return r
}

func (r *rig) rd(off uint32) uint32       { return r.d.ReadReg(off) }
func (r *rig) wr(off uint32, v uint32)    { r.d.WriteReg(off, v) }
func (r *rig) u64(gpa uint64) uint64      { return binary.LittleEndian.Uint64(r.ram[gpa-memBase:]) }
func (r *rig) put64(gpa uint64, v uint64) { binary.LittleEndian.PutUint64(r.ram[gpa-memBase:], v) }
func (r *rig) bytes(gpa uint64, n int) []byte {
	return r.ram[gpa-memBase : gpa-memBase+uint64(n)]
}

func rxRingOf(q int) uint64   { return rxRing + uint64(q)*0x1000 }
func txRingOf(q int) uint64   { return txRing + uint64(q)*0x1000 }
func rxBufOf(q, i int) uint64 { return rxBufs + uint64(q)*0x40000 + uint64(i)*0x4000 }

// setupRx programs rx queue q the way ixgbe_configure_rx_ring does and
// posts n-1 of n descriptors (§4.6.7 "Receive initialization").
func (r *rig) setupRx(q, n int, bsizeKB uint32, descType uint32) {
	r.wr(regFCTRL, fctrlBAM)
	base := rxQueueBase(q)
	r.wr(base+qRDBAL, uint32(rxRingOf(q)))
	r.wr(base+qRDBAH, uint32(rxRingOf(q)>>32))
	r.wr(base+qRDLEN, uint32(n*16))
	r.wr(base+qRDH, 0)
	r.wr(base+qRDT, 0)
	r.wr(base+qSRRCTL, bsizeKB|4<<8|descType<<srrctlDescTypeSh|srrctlDropEn)
	r.wr(base+qRXDCTL, rxdctlEnable)
	for i := 0; i < n; i++ {
		r.post(q, i)
	}
	r.wr(base+qRDT, uint32(n-1))
	r.wr(regRXCTRL, rxctrlRXEN)
}

// post re-arms descriptor i of queue q (ixgbe_alloc_rx_buffers).
func (r *rig) post(q, i int) {
	d := rxRingOf(q) + uint64(i)*16
	r.put64(d, rxBufOf(q, i))
	r.put64(d+8, rxBufOf(q, i)+0x3000) // header buffer (header split)
}

func (r *rig) rxDesc(q, i int) (lo, hi uint64) {
	d := rxRingOf(q) + uint64(i)*16
	return r.u64(d), r.u64(d + 8)
}

// setupTx programs tx queue q like ixgbe_configure_tx_ring.
func (r *rig) setupTx(q, n int) {
	r.wr(regDMATXCTL, dmatxctlTE)
	base := txQueueBase(q)
	r.wr(base+qRXDCTL, 0)
	r.wr(base+qRDBAL, uint32(txRingOf(q)))
	r.wr(base+qRDBAH, 0)
	r.wr(base+qRDLEN, uint32(n*16))
	r.wr(base+qRDH, 0)
	r.wr(base+qRDT, 0)
	r.wr(base+qRXDCTL, txdctlEnable)
	require.Equal(r.t, uint32(txdctlEnable), r.rd(base+qRXDCTL)&txdctlEnable)
}

// txData writes an advanced data descriptor.
func (r *rig) txData(q, i int, addr uint64, n int, cmd uint32, olinfo uint32) {
	d := txRingOf(q) + uint64(i)*16
	r.put64(d, addr)
	r.put64(d+8, uint64(uint32(n)|txdDTypData<<txdDTypShift|txdCmdDEXT|cmd)|uint64(olinfo)<<32)
}

func (r *rig) txCtx(q, i int, maclen, iplen int, tucmd uint32, mss, l4len int) {
	d := txRingOf(q) + uint64(i)*16
	r.put64(d, uint64(maclen<<9|iplen))
	r.put64(d+8, uint64(tucmd|txdDTypCtxt<<txdDTypShift|txdCmdDEXT)|uint64(mss<<16|l4len<<8)<<32)
}

// --- frame builders (RFC 791/793/768/8200) ---

func ethHdr(dst, src [6]byte, et uint16) []byte {
	b := append(append([]byte{}, dst[:]...), src[:]...)
	return binary.BigEndian.AppendUint16(b, et)
}

func ip4Hdr(proto uint8, l4len int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+l4len))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	h[8] = 64
	h[9] = proto
	copy(h[12:], []byte{10, 0, 0, 1})
	copy(h[16:], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(h[10:], ^csum.Fold(csum.Sum(h, 0)))
	return h
}

func ip6Hdr(proto uint8, l4len int) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(l4len))
	h[6] = proto
	h[7] = 64
	h[8], h[23] = 0xFD, 1
	h[24], h[39] = 0xFD, 2
	return h
}

func tcpHdr(seq uint32, flags uint16) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], 1234)
	binary.BigEndian.PutUint16(h[2:], 80)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint16(h[12:], 5<<12|flags)
	binary.BigEndian.PutUint16(h[14:], 65535)
	return h
}

func udpHdr(l4len int) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], 5000)
	binary.BigEndian.PutUint16(h[2:], 6000)
	binary.BigEndian.PutUint16(h[4:], uint16(l4len))
	return h
}

// l4Sum is the independent checksum verifier: it returns the folded sum of
// pseudo-header + L4 segment (0xFFFF when the checksum is right).
func l4Sum(f []byte, l3off int, v6 bool, proto uint8) uint16 {
	var s uint64
	var l4 []byte
	if v6 {
		l4 = f[l3off+40 : l3off+40+int(binary.BigEndian.Uint16(f[l3off+4:]))]
		for i := 8; i < 40; i += 2 {
			s += uint64(binary.BigEndian.Uint16(f[l3off+i:]))
		}
	} else {
		ihl := int(f[l3off]&0xF) * 4
		l4 = f[l3off+ihl : l3off+int(binary.BigEndian.Uint16(f[l3off+2:]))]
		for i := 12; i < 20; i += 2 {
			s += uint64(binary.BigEndian.Uint16(f[l3off+i:]))
		}
	}
	s += uint64(proto) + uint64(len(l4))
	for i := 0; i+1 < len(l4); i += 2 {
		s += uint64(binary.BigEndian.Uint16(l4[i:]))
	}
	if len(l4)%2 == 1 {
		s += uint64(l4[len(l4)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return uint16(s)
}

func payloadBytes(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// tcp4Frame builds a valid IPv4/TCP frame with correct checksums.
func tcp4Frame(dst [6]byte, payload []byte) []byte {
	l4 := append(tcpHdr(1000, 0x18), payload...)
	f := append(append(ethHdr(dst, peerMAC, etherTypeIPv4), ip4Hdr(protoTCP, len(l4))...), l4...)
	binary.BigEndian.PutUint16(f[14+20+16:], ^l4Sum(f, 14, false, protoTCP))
	return f
}

func udp4Frame(dst [6]byte, payload []byte) []byte {
	l4 := append(udpHdr(8+len(payload)), payload...)
	f := append(append(ethHdr(dst, peerMAC, etherTypeIPv4), ip4Hdr(protoUDP, len(l4))...), l4...)
	binary.BigEndian.PutUint16(f[14+20+6:], ^l4Sum(f, 14, false, protoUDP))
	return f
}

func tcp6Frame(dst [6]byte, payload []byte) []byte {
	l4 := append(tcpHdr(1000, 0x18), payload...)
	f := append(append(ethHdr(dst, peerMAC, etherTypeIPv6), ip6Hdr(protoTCP, len(l4))...), l4...)
	binary.BigEndian.PutUint16(f[14+40+16:], ^l4Sum(f, 14, true, protoTCP))
	return f
}
