package virtionet

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/pair"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/internal/fuzzinput"
	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// FuzzNetDevice drives a virtio-net device through the PCI transport the
// way a hostile guest can: fuzzed feature negotiation, device config
// accesses, queue layouts, descriptor tables, avail rings and avail idx
// jumps, while a pair peer on the wire sends frames of fuzzed sizes and
// receives what the guest transmits. The device's model end is capped
// (it accepts a limited number of receive buffers), as a NIC ring would be.
//
// An input is a sequence of rounds. Each round resets the device, writes
// the rings while the device is stopped, sets DRIVER_OK and runs fuzzed
// actions (kicks, avail idx jumps, peer traffic, config and status
// writes), then resets the device again, which stops its workers. Then:
//   - every used element names a descriptor of the queue, and its length
//     is at most the writable bytes of that chain (0 for transmit);
//   - no head comes back more often than the guest made it available;
//   - guest memory changed only inside the used rings and the writable
//     buffers of the receive queue.
//
// Ring contents only change while the device is stopped (during a round
// the guest only stores avail idx, atomically), so the target is
// race-detector clean for guests whose buffers overlap neither each other
// nor the rings; the seeds are such guests. (A guest that aliases a
// receive buffer with a transmit buffer or a ring makes device goroutines
// race on its memory, which only it can observe.)
func FuzzNetDevice(f *testing.F) {
	for _, s := range fuzzNetSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newNetFuzz(t, data)
		for round := 0; round < 4 && !r.in.Empty(); round++ {
			r.round()
		}
	})
}

// A model may report completions after its Stop returned: pair does when
// a delivery races with Stop, calling the sink after dropping its lock.
// After Reset they must reach neither the queue (which the transport
// resets) nor guest memory.
func TestCompletionsAfterResetAreDropped(t *testing.T) {
	r := newRig(t, true, 0)
	head, err := r.rxD.AddChain(nil, []uint32{2048})
	require.NoError(t, err)
	r.dev.mu.Lock()
	st := r.dev.pair0()
	r.dev.mu.Unlock()
	st.postRx() // what the rx worker does on a kick
	require.Equal(t, 1, r.model.posted())

	r.dev.Reset()
	var b nic.RxBatch
	b.Add(nic.Used{ID: head, Written: 100})
	r.model.sink.RxFrames(&b)
	r.model.sink.TxDone([]uint16{0})
	idx, err := r.rxD.UsedIdx()
	require.NoError(t, err)
	require.Zero(t, idx, "used element written after reset")
}

// Guest RAM and where the guest puts its rings by default.
const (
	fzRAM      = 0x10000
	fzRAMSize  = 0x20000
	fzRxDesc   = 0x10000
	fzTxDesc   = 0x13000
	fzBufs     = 0x16000 // buffers from here to the end of RAM
	fzIndirect = 0x2E000 // one 2 KiB indirect table per queue
	fzAvailOff = 0x1000  // avail ring = desc + 0x1000
	fzUsedOff  = 0x2000  // used ring = desc + 0x2000
)

type netFuzz struct {
	t     *testing.T
	in    *fuzzinput.Reader
	mem   *guestmem.Memory
	ram   []byte
	mmio  *bus.Bus
	base  uint64 // BAR0
	tr    *pcitransport.Transport
	dev   *Net
	model *cappedModel
	peer  *pair.End
	sink  *peerSink

	// Per round.
	shadow   []byte    // RAM as the guest left it (plus its own later stores)
	q        [2]fzRing // rx, tx as programmed
	features uint64
	oldBufs  []span // receive buffers of descriptors rewritten this round
}

// fzRing is the guest's view of one queue.
type fzRing struct {
	size              uint16
	desc, avail, used uint64
	written           bool // the guest wrote the rings (the size is usable)
	enabled           bool
	availIdx          uint16
	maxAvail          uint16 // largest avail idx stored this round
	availWrapped      bool   // some stored idx was beyond size
	rewritten         bool   // descriptors changed during the round
}

func newNetFuzz(t *testing.T, data []byte) *netFuzz {
	r := &netFuzz{t: t, in: fuzzinput.New(data), mmio: bus.New("mmio")}
	logger := slog.New(slog.DiscardHandler)
	r.ram = make([]byte, fzRAMSize)
	var err error
	r.mem, err = guestmem.FromRegions(guestmem.Region{GPA: fzRAM, Host: r.ram})
	require.NoError(t, err)

	// Header: device options and the model's receive capacity.
	opt := r.in.Byte()
	a, b := pair.New()
	r.peer = b
	r.model = &cappedModel{End: a, t: t, limit: int(opt>>2) % 8 * 3} // 0 = unlimited
	var mtu uint16
	if opt&2 != 0 {
		mtu = 1500
	}
	r.dev, err = New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, MTU: mtu, Mergeable: opt&1 != 0, Model: r.model, Logger: logger})
	require.NoError(t, err)
	r.sink = &peerSink{t: t, size: map[uint16]int{}}
	require.NoError(t, b.Start(nic.Config{HdrLen: hdrLen, Mergeable: opt&0x20 != 0}, r.sink))

	br, err := pci.NewBridge(pci.Config{PIO: bus.New("pio"), MMIO: r.mmio, RAMEnd: 1 << 30, Logger: logger})
	require.NoError(t, err)
	r.tr, err = pcitransport.New(pcitransport.Config{Device: r.dev, Mem: r.mem, AllocVector: allocVector, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.tr.Close()) })
	slot, err := br.Add(r.tr)
	require.NoError(t, err)
	var ok bool
	r.base, ok = br.BAR(slot, pcitransport.BARIndex)
	require.True(t, ok)
	return r
}

type nopVector struct{}

func (nopVector) Update(uint64, uint32, bool) error { return nil }
func (nopVector) Trigger() error                    { return nil }

func allocVector() (msix.Vector, error) { return nopVector{}, nil }

// cappedModel is a pair end that holds at most limit receive buffers, as a
// NIC with a bounded ring (or the zero-copy model's pin cap) does: PostRx
// takes fewer and the device must keep the rest in its avail ring. It also
// checks that the device leaves the buffers it holds alone.
type cappedModel struct {
	*pair.End
	t     *testing.T
	limit int

	mu   sync.Mutex
	held []heldBuf // in posting order, which is the order pair fills them
}

// heldBuf is a buffer the model holds: its segment list, which the device
// must not change while the model owns it, and a copy as lent.
type heldBuf struct{ segs, lent [][]byte }

func (m *cappedModel) Start(cfg nic.Config, s nic.Sink) error {
	return m.End.Start(cfg, &cappedSink{Sink: s, m: m})
}

func (m *cappedModel) PostRx(bufs []nic.Buf) int {
	m.mu.Lock()
	n := len(bufs)
	if m.limit > 0 {
		n = min(n, m.limit-len(m.held))
	}
	for _, b := range bufs[:n] {
		m.held = append(m.held, heldBuf{b.Segs, append([][]byte(nil), b.Segs...)})
	}
	m.mu.Unlock()
	return m.End.PostRx(bufs[:n])
}

func (m *cappedModel) Stop() []nic.Buf {
	m.release(-1)
	return m.End.Stop()
}

// release checks and forgets the n oldest buffers held (all for n < 0).
func (m *cappedModel) release(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 || n > len(m.held) {
		n = len(m.held)
	}
	for _, h := range m.held[:n] {
		if !sameSegments(h.segs, h.lent) {
			m.t.Errorf("the device changed the segments of a buffer lent to the model")
		}
	}
	m.held = m.held[n:]
}

func sameSegments(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || len(a[i]) > 0 && &a[i][0] != &b[i][0] {
			return false
		}
	}
	return true
}

type cappedSink struct {
	nic.Sink
	m *cappedModel
}

func (s *cappedSink) RxFrames(b *nic.RxBatch) {
	s.m.release(b.Buffers())
	s.Sink.RxFrames(b)
}

// peerSink is the far end of the wire: it checks that the device side
// never reports more bytes than a peer buffer holds.
type peerSink struct {
	t    *testing.T
	mu   sync.Mutex
	size map[uint16]int
	next uint16
}

func (s *peerSink) RxFrames(b *nic.RxBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Len() {
		for _, u := range b.Frame(i) {
			if int(u.Written) > s.size[u.ID] {
				s.t.Errorf("peer buffer %d: %d bytes written into %d", u.ID, u.Written, s.size[u.ID])
			}
		}
	}
}

func (s *peerSink) TxDone([]uint16) {}
func (s *peerSink) RxStarved()      {}

// Register access through the BAR.

func (r *netFuzz) wr(off uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	r.mmio.Write(r.base+off, b[:n])
}

func (r *netFuzz) rd(off uint64, n int) uint64 {
	var b [8]byte
	r.mmio.Read(r.base+off, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

func (r *netFuzz) status() uint8 { return uint8(r.rd(pcitransport.RegDeviceStatus, 1)) }

func (r *netFuzz) addStatus(bits uint8) {
	r.wr(pcitransport.RegDeviceStatus, 1, uint64(r.status()|bits))
}

// round runs one bring-up, activity and reset, then checks.
func (r *netFuzz) round() {
	r.wr(pcitransport.RegDeviceStatus, 1, 0)
	r.addStatus(pcitransport.StatusAcknowledge)
	r.addStatus(pcitransport.StatusDriver)
	r.negotiate(r.in.Byte())
	for range r.in.Byte() % 4 {
		r.configAccess()
	}
	for i := range r.q {
		r.setupQueue(i)
	}
	r.shadow = append(r.shadow[:0], r.ram...)
	r.oldBufs = r.oldBufs[:0]
	r.addStatus(pcitransport.StatusDriverOK)
	r.syncRx()
	for range r.in.Byte() % 24 {
		r.action()
	}
	r.wr(pcitransport.RegDeviceStatus, 1, 0) // stops the workers
	r.check()
}

// negotiate accepts the offered features, minus or plus what sel says.
func (r *netFuzz) negotiate(sel byte) {
	r.wr(pcitransport.RegDeviceFeatureSelect, 4, 0)
	f := r.rd(pcitransport.RegDeviceFeature, 4)
	r.wr(pcitransport.RegDeviceFeatureSelect, 4, 1)
	f |= r.rd(pcitransport.RegDeviceFeature, 4) << 32
	for bit, drop := range []uint64{FeatMrgRxbuf, FeatEventIdx, FeatIndirect, FeatCsum | FeatGuestCsum, FeatHostTSO4 | FeatGuestTSO4 | FeatHostTSO6 | FeatGuestTSO6} {
		if sel&(1<<bit) != 0 {
			f &^= drop
		}
	}
	if sel&0x20 != 0 {
		f ^= 1 << (r.in.Byte() & 63) // likely refused at FEATURES_OK
	}
	r.wr(pcitransport.RegDriverFeatureSelect, 4, 0)
	r.wr(pcitransport.RegDriverFeature, 4, f&0xFFFF_FFFF)
	r.wr(pcitransport.RegDriverFeatureSelect, 4, 1)
	r.wr(pcitransport.RegDriverFeature, 4, f>>32)
	r.addStatus(pcitransport.StatusFeaturesOK)
	r.features = f
}

// configAccess reads or writes the device config window (MAC, status,
// max_virtqueue_pairs, MTU and beyond). Writes are ignored (the MAC is
// read-only for a modern driver), so a read always shows the config.
func (r *netFuzz) configAccess() {
	off := uint64(r.in.Byte())
	flags := r.in.Byte()
	v := uint64(r.in.U16())
	n := 1 << (flags & 3)
	if off == 0xFF {
		off = pcitransport.DeviceCfgLength - uint64(n) // last bytes of the window
	}
	if flags&4 != 0 {
		r.wr(pcitransport.DeviceCfgOffset+off, n, v)
		return
	}
	var want [8]byte
	cfg := r.dev.configBytes()
	for i := range n {
		if o := off + uint64(i); o < uint64(len(cfg)) {
			want[i] = cfg[o]
		}
	}
	if got := r.rd(pcitransport.DeviceCfgOffset+off, n); got != binary.LittleEndian.Uint64(want[:]) {
		r.t.Fatalf("config read at %#x: %#x, want % x", off, got, want[:n])
	}
}

// setupQueue programs queue i from the input: size, ring addresses (a
// hostile layout on request), descriptors, an indirect table and the avail
// ring, written while the device is stopped; then enables it.
func (r *netFuzz) setupQueue(i int) {
	q := &r.q[i]
	c := r.in.Byte()
	*q = fzRing{size: 1 << (c % 9), desc: fzRxDesc + uint64(i)*(fzTxDesc-fzRxDesc)}
	q.avail, q.used = q.desc+fzAvailOff, q.desc+fzUsedOff
	if c&0x10 != 0 {
		q.size = r.in.U16() // anything, e.g. not a power of two
	}
	if c&0x20 != 0 {
		q.desc = fzRAM + uint64(r.in.U16())*2
		q.avail = fzRAM + uint64(r.in.U16())*2
		q.used = fzRAM + uint64(r.in.U16())*2
	}
	q.written = q.size != 0 && q.size <= QueueSize && q.size&(q.size-1) == 0
	if q.written {
		r.writeRing(i, q)
	}
	r.wr(pcitransport.RegQueueSelect, 2, uint64(i))
	r.wr(pcitransport.RegQueueSize, 2, uint64(q.size))
	r.wr(pcitransport.RegQueueDesc, 8, q.desc)
	r.wr(pcitransport.RegQueueDriver, 8, q.avail)
	r.wr(pcitransport.RegQueueDevice, 8, q.used)
	if c&0x40 == 0 {
		r.wr(pcitransport.RegQueueEnable, 2, 1)
	}
	q.enabled = r.rd(pcitransport.RegQueueEnable, 2) == 1
	if q.enabled && !q.written {
		r.t.Fatalf("queue %d enabled with size %d", i, q.size)
	}
}

// writeRing fills the descriptor table, the queue's indirect table and
// the avail ring, and clears the used ring. Out-of-RAM parts are skipped.
func (r *netFuzz) writeRing(i int, q *fzRing) {
	zero := make([]byte, queue.UsedRingSize(q.size))
	_ = r.mem.WriteAt(zero, q.used)
	table := uint64(fzIndirect) + uint64(i)*0x800
	for j := range uint64(r.in.Byte()) % (uint64(q.size) + 1) {
		r.putDesc(q.desc+16*j, table)
	}
	for j := range uint64(r.in.Byte()) % 17 {
		r.putDesc(table+16*j, table)
	}
	n := uint16(r.in.Byte()) % (q.size + 1)
	for j := range n {
		b := r.in.Byte()
		head := uint16(b)
		if b < 0x80 {
			head = uint16(b) % q.size
		}
		_ = r.mem.PutUint16(q.avail+4+2*uint64(j), head)
	}
	q.availIdx = n + uint16(int8(r.in.Byte())) // an avail idx jump on request
	q.maxAvail, q.availWrapped = q.availIdx, q.availIdx > q.size
	_ = r.mem.PutUint16(q.avail, 0)                        // flags
	_ = r.mem.PutUint16(q.avail+2, q.availIdx)             // idx
	_ = r.mem.PutUint16(q.avail+4+2*uint64(q.size), n/2)   // used_event
	_ = r.mem.PutUint16(q.used+4+8*uint64(q.size), 0xFFFF) // avail_event
}

// Descriptor encoding: addr (2 bytes), len, flags, next.
var (
	specialAddrs = []uint64{0, fzRAM - 8, fzRAM + fzRAMSize - 8, fzRxDesc, fzRxDesc + fzUsedOff, fzTxDesc, ^uint64(0) - 7, 1 << 46}
	specialLens  = []uint32{0, 1, 11, 12, 13, 1526, 4096, 0x8000, 0x10000, 0x2_0000, 0xFFFF_FFFF, 16, 32, 48, 64, 0x800}
)

func (r *netFuzz) putDesc(gpa, table uint64) {
	a := r.in.U16()
	l := r.in.Byte()
	flags := uint16(r.in.Byte())
	next := uint16(r.in.Byte())
	addr := fzBufs + uint64(a&0x7FFF)*8 // past the end of RAM for high values
	switch {
	case a&0xC000 == 0xC000:
		addr = table
	case a&0x8000 != 0:
		addr = specialAddrs[a%uint16(len(specialAddrs))]
	}
	n := uint32(l) * 16
	if l >= 0xF0 {
		n = specialLens[l-0xF0]
	}
	var d [16]byte
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags&7)
	binary.LittleEndian.PutUint16(d[14:], next)
	_ = r.mem.WriteAt(d[:], gpa)
}

// action is one thing the guest or the wire does while the device runs.
func (r *netFuzz) action() {
	switch k := r.in.Byte(); k % 8 {
	case 0, 1:
		r.kick(int(k % 2))
	case 2, 3:
		// Avail idx jump (forwards or backwards), then a kick.
		i := int(k % 2)
		q := &r.q[i]
		if !q.enabled {
			return
		}
		q.availIdx += uint16(int8(r.in.Byte()))
		q.maxAvail = max(q.maxAvail, q.availIdx)
		q.availWrapped = q.availWrapped || q.availIdx > q.size
		r.storeShadow16(q.avail+2, q.availIdx)
		_ = r.mem.StoreUint16(q.avail+2, q.availIdx)
		r.kick(i)
	case 4:
		// The peer sends a frame (virtio_net_hdr included) of fuzzed size.
		n := int(r.in.U16()) + int(k>>3&1)<<16
		frame := bytes.Repeat([]byte{r.in.Byte()}, n)
		r.peer.Transmit([]nic.Buf{{ID: 0, Segs: [][]byte{frame}}})
	case 5:
		// The peer posts receive buffers for what the guest transmits.
		for range r.in.Byte() % 4 {
			r.sink.mu.Lock()
			id := r.sink.next
			r.sink.next++
			n := int(r.in.U16() % 0x4000)
			r.sink.size[id] = n
			r.sink.mu.Unlock()
			r.peer.PostRx([]nic.Buf{{ID: id, Segs: [][]byte{make([]byte, n)}}})
		}
	case 6:
		if k&8 != 0 {
			r.rewriteDesc()
			return
		}
		r.configAccess()
	case 7:
		// Status writes mid-flight: FAILED, garbage, or a reset.
		r.wr(pcitransport.RegDeviceStatus, 1, uint64(r.in.Byte()))
	}
}

// rewriteDesc changes a receive descriptor while the device runs, as a
// hostile driver may even for a chain it made available. The buffers of
// the old descriptors stay where the device may write.
func (r *netFuzz) rewriteDesc() {
	rx := &r.q[rxIndex(0)]
	j := uint64(r.in.Byte())
	if !rx.written {
		return
	}
	r.oldBufs = append(r.oldBufs, r.rxBufs()...)
	gpa := rx.desc + 16*(j%uint64(rx.size))
	r.putDesc(gpa, fzIndirect)
	if gpa >= fzRAM && gpa+16 <= fzRAM+fzRAMSize {
		copy(r.shadow[gpa-fzRAM:][:16], r.ram[gpa-fzRAM:])
	}
	rx.rewritten = true
	r.syncRx()
}

// rxBufs returns the writable buffers of every chain in the receive avail
// ring, as the round's RAM image has them.
func (r *netFuzz) rxBufs() []span {
	var s []span
	if rx := &r.q[rxIndex(0)]; rx.enabled {
		for slot := range uint64(rx.size) {
			head := binary.LittleEndian.Uint16(r.shadowAt(rx.avail+4+2*slot, 2))
			segs, _ := r.walk(rx, head)
			s = append(s, segs...)
		}
	}
	return s
}

// kick notifies queue i. For the receive queue it then also runs the
// receive worker's pass itself, so that the buffers are lent to the model
// when the next action runs (the worker serialises with it on rxMu); the
// transmit queue is left to its worker alone.
func (r *netFuzz) kick(i int) {
	r.wr(pcitransport.NotifyOffset+uint64(i)*pcitransport.NotifyMultiplier, 2, uint64(i))
	if i == rxIndex(0) {
		r.syncRx()
	}
}

func (r *netFuzz) syncRx() {
	r.dev.mu.Lock()
	st := r.dev.pair0()
	r.dev.mu.Unlock()
	if st != nil {
		st.postRx()
	}
}

func (r *netFuzz) storeShadow16(gpa uint64, v uint16) {
	if gpa >= fzRAM && gpa+2 <= fzRAM+fzRAMSize {
		binary.LittleEndian.PutUint16(r.shadow[gpa-fzRAM:], v)
	}
}

// check runs after the reset: the device is stopped.
func (r *netFuzz) check() {
	var used []span
	for i := range r.q {
		if q := &r.q[i]; q.enabled {
			used = append(used, span{q.used, q.used + queue.UsedRingSize(q.size)})
		}
	}
	rxBufs := append(r.rxBufs(), r.oldBufs...)
	allowed := append(append([]span(nil), used...), rxBufs...)
	const chunk = 256
	for off := 0; off < len(r.ram); off += chunk {
		if bytes.Equal(r.ram[off:off+chunk], r.shadow[off:off+chunk]) {
			continue
		}
		for k := off; k < off+chunk; k++ {
			if gpa := uint64(fzRAM + k); r.ram[k] != r.shadow[k] && !inSpans(allowed, gpa) {
				r.t.Fatalf("device wrote guest memory at %#x (%#x -> %#x), outside the used rings and receive buffers", gpa, r.shadow[k], r.ram[k])
			}
		}
	}
	// The used elements can be read back only if nothing else wrote over
	// them, and judged only against descriptors nothing overwrote.
	guestSet := r.guestStructures()
	for i := range r.q {
		q := &r.q[i]
		if !q.enabled {
			continue
		}
		u := span{q.used, q.used + queue.UsedRingSize(q.size)}
		others := append(append([]span(nil), guestSet...), rxBufs...)
		for j := range r.q {
			if j != i && r.q[j].enabled {
				others = append(others, span{r.q[j].used, r.q[j].used + queue.UsedRingSize(r.q[j].size)})
			}
		}
		if overlaps(u, others) || overlapsAny(rxBufs, guestSet) {
			continue
		}
		r.checkUsed(i, q)
	}
}

// guestStructures returns what the guest wrote for the rings: descriptor
// tables, indirect tables and avail rings of both queues.
func (r *netFuzz) guestStructures() []span {
	var s []span
	for i := range r.q {
		q := &r.q[i]
		if !q.written {
			continue
		}
		table := uint64(fzIndirect) + uint64(i)*0x800
		s = append(s, span{q.desc, q.desc + queue.DescTableSize(q.size)},
			span{table, table + 0x800},
			span{q.avail, q.avail + queue.AvailRingSize(q.size)})
	}
	return s
}

func overlaps(a span, list []span) bool {
	for _, b := range list {
		if a.lo < b.hi && b.lo < a.hi {
			return true
		}
	}
	return false
}

func overlapsAny(a, b []span) bool {
	for _, x := range a {
		if overlaps(x, b) {
			return true
		}
	}
	return false
}

// checkUsed checks the used elements the device published this round.
func (r *netFuzz) checkUsed(i int, q *fzRing) {
	t := r.t
	idx, err := r.mem.LoadUint16(q.used + 2)
	require.NoError(t, err)
	n := min(idx, q.size) // older elements may have been overwritten
	returned := map[uint16]int{}
	for k := idx - n; k != idx; k++ {
		e := q.used + 4 + 8*uint64(k%q.size)
		id, _ := r.mem.Uint32(e)
		l, _ := r.mem.Uint32(e + 4)
		if id >= uint32(q.size) {
			t.Fatalf("queue %d: used element %d names descriptor %d, size %d", i, k, id, q.size)
		}
		_, writable := r.walk(q, uint16(id))
		if i == txIndex(0) {
			writable = 0
		}
		if uint64(l) > writable && !q.rewritten {
			t.Fatalf("queue %d: used element %d (head %d) has len %d, the chain can hold %d", i, k, id, l, writable)
		}
		returned[uint16(id)]++
	}
	// Without wrap-around every element is still there, and each avail
	// slot was consumed at most once.
	if idx > q.size || q.availWrapped {
		return
	}
	posted := map[uint16]int{}
	for slot := range uint64(q.maxAvail) {
		posted[binary.LittleEndian.Uint16(r.shadowAt(q.avail+4+2*slot, 2))]++
	}
	for id, k := range returned {
		if k > posted[id] {
			t.Fatalf("queue %d: head %d returned %d times, made available %d times", i, id, k, posted[id])
		}
	}
}

// span is a guest address range [lo, hi).
type span struct{ lo, hi uint64 }

func inSpans(s []span, gpa uint64) bool {
	for _, x := range s {
		if gpa >= x.lo && gpa < x.hi {
			return true
		}
	}
	return false
}

// shadowAt returns n bytes of the round's RAM image at gpa (zeros outside
// RAM).
func (r *netFuzz) shadowAt(gpa uint64, n int) []byte {
	b := make([]byte, n)
	if gpa >= fzRAM && gpa < fzRAM+fzRAMSize {
		copy(b, r.shadow[gpa-fzRAM:])
	}
	return b
}

// walk follows the chain at head in the round's RAM image the way the
// device may, and returns its device-writable segments and their total
// length. It over-approximates: it does not stop at the errors that make
// the device reject a chain, only where it cannot go on.
func (r *netFuzz) walk(q *fzRing, head uint16) ([]span, uint64) {
	var segs []span
	var total uint64
	table, limit, idx := q.desc, uint32(q.size), head
	indirect := false
	for count := uint32(0); count < limit && uint32(idx) < limit; {
		count++
		d := r.shadowAt(table+16*uint64(idx), 16)
		addr := binary.LittleEndian.Uint64(d)
		n := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		if flags&queue.DescFIndirect != 0 {
			if indirect {
				break
			}
			indirect = true
			table, limit, idx, count = addr, n/queue.DescSize, 0, 0
			continue
		}
		if flags&queue.DescFWrite != 0 && n > 0 {
			segs = append(segs, span{addr, addr + uint64(n)})
			total += uint64(n)
		}
		if flags&queue.DescFNext == 0 {
			break
		}
		idx = binary.LittleEndian.Uint16(d[14:])
	}
	return segs, total
}

// Seeds, written with the encoder below (the same bytes are in
// testdata/fuzz/FuzzNetDevice).
func fuzzNetSeeds() [][]byte {
	rxBufs := func(n int) []fzDesc {
		var d []fzDesc
		for i := range n {
			d = append(d, fzDesc{addr: uint16(i * 0x200), len: 0x80, flags: queue.DescFWrite}) // 2 KiB each
		}
		return d
	}
	heads := func(h ...byte) []byte { return h }
	// Two frames for the wire: header and payload in two descriptors each.
	txFrames := []fzDesc{
		{addr: 0x2000, len: 0xF3, flags: queue.DescFNext, next: 1}, {addr: 0x2020, len: 0x40},
		{addr: 0x2200, len: 0xF3, flags: queue.DescFNext, next: 3}, {addr: 0x2220, len: 0x10},
	}
	traffic := []byte{
		5, 2, 0xD0, 0x07, 0xD0, 0x07, // peer posts two 2000-byte buffers
		0, 1, // kick rx, kick tx
		4, 0x58, 0x02, 0xAB, // peer sends 600 bytes
		4, 0xEA, 0x05, 0xCD, // peer sends 1514 bytes
		6, 0, 3, 0, 0, // read the MAC
		2, 0, // avail idx unchanged, kick rx
	}
	var seeds [][]byte

	// A Linux-like guest with MRG_RXBUF: 8 receive buffers, 2 frames out.
	var s fzSeed
	s.b = append(s.b, 1) // mergeable, no cap
	s.round(0, fzQueue{log2: 4, descs: rxBufs(8), avail: heads(0, 1, 2, 3, 4, 5, 6, 7)},
		fzQueue{log2: 4, descs: txFrames, avail: heads(0, 2)}, traffic)
	seeds = append(seeds, s.b)

	// Without MRG_RXBUF, EVENT_IDX or INDIRECT, MTU offered, model cap 3;
	// then a round with an indirect transmit chain.
	s = fzSeed{}
	s.b = append(s.b, 2|1<<2)
	s.round(0x07, fzQueue{log2: 3, descs: rxBufs(6), avail: heads(0, 1, 2, 3, 4, 5)},
		fzQueue{log2: 3, descs: txFrames, avail: heads(0, 2)}, traffic)
	s.round(0x00, fzQueue{log2: 2, descs: rxBufs(4), avail: heads(0, 1, 2, 3)},
		fzQueue{log2: 2, descs: []fzDesc{{addr: 0xC000, len: 0x20, flags: queue.DescFIndirect}},
			indirect: txFrames[:2], avail: heads(0)}, traffic)
	seeds = append(seeds, s.b)

	// Hostile: chains that are not receive buffers, heads out of range,
	// an avail idx jump, config writes, a reset in the middle.
	s = fzSeed{}
	s.b = append(s.b, 1)
	s.round(0, fzQueue{log2: 4, descs: []fzDesc{
		{addr: 0x0, len: 0x80, flags: queue.DescFWrite},
		{addr: 0x200, len: 0x80},                                                     // readable
		{addr: 0x400, len: 0xF2, flags: queue.DescFWrite},                            // 11 bytes: no room for the header
		{addr: 0x600, len: 0x80, flags: queue.DescFWrite | queue.DescFNext, next: 3}, // loop
		{addr: 0x8001, len: 0x80, flags: queue.DescFWrite},                           // outside RAM
	}, avail: heads(0, 1, 2, 3, 4)},
		fzQueue{log2: 4, descs: txFrames, avail: heads(0, 2, 1)},
		[]byte{7, 0x80, 6, 0, 7, 0x34, 0x12, 2, 100, 3, 0xF0, 7, 0, 0, 1})
	seeds = append(seeds, s.b)

	// A model that takes 3 buffers, offered 4 good ones and then a bad
	// one: the bad one must come back once, the refused good one later.
	s = fzSeed{}
	s.b = append(s.b, 1|1<<2)
	s.round(0, fzQueue{log2: 3, descs: append(rxBufs(4), fzDesc{addr: 0x800, len: 0x80}), avail: heads(0, 1, 2, 3, 4)},
		fzQueue{log2: 3}, []byte{4, 0x58, 0x02, 0xAB, 0})
	seeds = append(seeds, s.b)

	// The driver rewrites a descriptor the model holds and makes its head
	// available again: the model's buffer must not change under it.
	s = fzSeed{}
	s.b = append(s.b, 1)
	s.round(0, fzQueue{log2: 3, descs: rxBufs(1), avail: heads(0, 0), jump: 0xFF},
		fzQueue{log2: 3}, []byte{6 | 8, 0, 0x00, 0x02, 0x80, queue.DescFWrite, 0, 2, 1})
	seeds = append(seeds, s.b)
	return seeds
}

// fzDesc is one encoded descriptor: addr is the 2-byte address code
// (fzBufs + 8*addr below 0x8000), len the length code (16*len below 0xF0).
type fzDesc struct {
	addr        uint16
	len         byte
	flags, next byte
}

type fzQueue struct {
	log2            byte
	descs, indirect []fzDesc
	avail           []byte
	jump            byte
}

type fzSeed struct{ b []byte }

func (s *fzSeed) descs(d []fzDesc) {
	s.b = append(s.b, byte(len(d)))
	for _, x := range d {
		s.b = append(s.b, byte(x.addr), byte(x.addr>>8), x.len, x.flags, x.next)
	}
}

func (s *fzSeed) queue(q fzQueue) {
	s.b = append(s.b, q.log2)
	s.descs(q.descs)
	s.descs(q.indirect)
	s.b = append(s.b, byte(len(q.avail)))
	s.b = append(s.b, q.avail...)
	s.b = append(s.b, q.jump)
}

// round encodes one round: features, no config accesses, both queues and
// the actions.
func (s *fzSeed) round(features byte, rx, tx fzQueue, actions []byte) {
	s.b = append(s.b, features, 0)
	s.queue(rx)
	s.queue(tx)
	s.b = append(s.b, byte(countActions(actions)))
	s.b = append(s.b, actions...)
}

// countActions counts the actions in an encoded list (see action).
func countActions(a []byte) int {
	n := 0
	for i := 0; i < len(a); n++ {
		switch a[i] % 8 {
		case 2, 3, 7:
			i += 2
		case 4:
			i += 4
		case 5:
			i += 2 + 2*int(a[i+1]%4)
		case 6:
			i += 5
			if a[i-5]&8 != 0 { // a descriptor rewrite
				i += 2
			}
		default:
			i++
		}
	}
	return n
}
