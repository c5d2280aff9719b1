package ixgbeemu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/internal/fuzzinput"
)

// Fuzz targets (go test -fuzz). The guest is hostile: every register value
// and descriptor field comes from the fuzzer. Beyond "no panic" they check
// what a driver relies on:
//
//   - DMA: the model writes guest memory only inside what the driver
//     posted: rx descriptors RDH..RDT-1 and their packet/header buffers at
//     the SRRCTL sizes; tx the status dword of descriptors TDH..TDT-1 and
//     the head write-back word. fuzzMem diffs guest memory against a
//     snapshot after every device operation.
//   - Rings: RDH/TDH stay inside the ring and never pass the tail; rx
//     write-back is in order (DD on every consumed descriptor, EOP on the
//     last) and its lengths add up to the frame.
//   - Wire: no frame longer than the model's limit (256 KB + VLAN tag).
//   - Recovery: after CTRL.RST and a standard bring-up a frame is received
//     (copy and zero-copy path) and one is sent, whatever came before.

const (
	fzBase   = 0x10000   // GPA of the fuzz guest memory; nothing below it
	fzSize   = 128 << 10 // its size
	fzData   = 0x8000    // offset of the data area (tx payload)
	fzQueues = 2         // Config.Queues: higher queues can never be enabled
)

// fuzzMem is a small guest memory. The model reaches it only through Slice,
// which refuses anything outside; verify checks what it wrote.
type fuzzMem struct {
	ram, snap []byte
}

func newFuzzMem() *fuzzMem {
	return &fuzzMem{ram: make([]byte, fzSize), snap: make([]byte, fzSize)}
}

// Slice implements DMA. The view's capacity runs to the end of ram, which
// gpa uses to find where a view handed out by the model lies.
func (m *fuzzMem) Slice(addr, n uint64) ([]byte, error) {
	size := uint64(len(m.ram))
	if addr < fzBase || addr-fzBase > size || n > size-(addr-fzBase) {
		return nil, ErrDMA
	}
	off := addr - fzBase
	return m.ram[off : off+n], nil
}

func (m *fuzzMem) gpa(view []byte) uint64 { return fzBase + uint64(len(m.ram)-cap(view)) }

// put is a write by the guest (or the tap reader): unchecked, and part of
// the snapshot.
func (m *fuzzMem) put(addr uint64, b []byte) {
	for i, c := range b {
		if a := addr + uint64(i); a >= fzBase && a-fzBase < uint64(len(m.ram)) {
			m.ram[a-fzBase], m.snap[a-fzBase] = c, c
		}
	}
}

// putDesc is the guest writing a 16-byte descriptor (two little-endian
// quadwords) at addr.
func (m *fuzzMem) putDesc(addr, lo, hi uint64) {
	m.put(addr, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, lo), hi))
}

// putDescs is the guest filling descriptors 0, 1, ... of the ring at base:
// desc gives descriptor i, or ok=false when there are no more; at most n
// are written.
func (m *fuzzMem) putDescs(base uint64, n uint32, desc func(i uint32) (lo, hi uint64, ok bool)) {
	for i := uint32(0); i < n; i++ {
		lo, hi, ok := desc(i)
		if !ok {
			return
		}
		m.putDesc(base+16*uint64(i), lo, hi)
	}
}

// at returns n bytes at addr of mem (m.ram or m.snap) if all are inside.
func (m *fuzzMem) at(mem []byte, addr uint64, n int) ([]byte, bool) {
	if addr < fzBase || addr-fzBase > uint64(len(mem)) || uint64(n) > uint64(len(mem))-(addr-fzBase) {
		return nil, false
	}
	return mem[addr-fzBase : addr-fzBase+uint64(n)], true
}

// span is the guest address range [lo, hi).
type span struct{ lo, hi uint64 }

func spanOf(addr, n uint64) span {
	hi := addr + n
	if hi < addr {
		hi = math.MaxUint64
	}
	return span{addr, hi}
}

// verify fails if a byte changed since the last snapshot lies outside
// every allowed span (computed only when something changed), then takes a
// new snapshot.
func (m *fuzzMem) verify(t *testing.T, op fmt.Stringer, allowed func() []span) {
	if bytes.Equal(m.ram, m.snap) {
		return
	}
	var iv []span // allowed, as offsets into ram
	for _, s := range allowed() {
		lo, hi := max(s.lo, fzBase), min(s.hi, fzBase+uint64(len(m.ram)))
		if lo < hi {
			iv = append(iv, span{lo - fzBase, hi - fzBase})
		}
	}
	iv = mergeSpans(iv)
	const blk = 64
	for b := 0; b < len(m.ram); b += blk {
		e := min(b+blk, len(m.ram))
		if bytes.Equal(m.ram[b:e], m.snap[b:e]) {
			continue
		}
		for i := b; i < e; i++ {
			if m.ram[i] == m.snap[i] {
				continue
			}
			j := sort.Search(len(iv), func(k int) bool { return iv[k].hi > uint64(i) })
			if j == len(iv) || iv[j].lo > uint64(i) {
				t.Fatalf("%v: wrote guest memory at %#x (%#02x -> %#02x) outside the posted descriptors and buffers",
					op, fzBase+i, m.snap[i], m.ram[i])
			}
		}
	}
	copy(m.snap, m.ram)
}

// mergeSpans sorts s and merges overlapping spans.
func mergeSpans(s []span) []span {
	sort.Slice(s, func(i, j int) bool { return s[i].lo < s[j].lo })
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && x.lo <= out[n-1].hi {
			out[n-1].hi = max(out[n-1].hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

// ringState is a queue's ring registers as the guest reads them.
type ringState struct {
	base             uint64
	size, head, tail uint32 // size in descriptors
	srrctl           uint32 // rx
	wbal, wbah       uint32 // tx head write-back
}

func rxState(d *Device, q int) ringState {
	b := rxQueueBase(q)
	return ringState{
		base: uint64(d.ReadReg(b+qRDBAH))<<32 | uint64(d.ReadReg(b+qRDBAL)),
		size: d.ReadReg(b+qRDLEN) / 16, head: d.ReadReg(b + qRDH), tail: d.ReadReg(b + qRDT),
		srrctl: d.ReadReg(b + qSRRCTL),
	}
}

func txState(d *Device, q int) ringState {
	b := txQueueBase(q)
	return ringState{
		base: uint64(d.ReadReg(b+qRDBAH))<<32 | uint64(d.ReadReg(b+qRDBAL)),
		size: d.ReadReg(b+qRDLEN) / 16, head: d.ReadReg(b + qRDH), tail: d.ReadReg(b + qRDT),
		wbal: d.ReadReg(b + qTDWBAL), wbah: d.ReadReg(b + qTDWBAH),
	}
}

func (r ringState) valid() bool    { return r.size != 0 && r.head < r.size && r.tail < r.size }
func (r ringState) posted() uint32 { return (r.tail + r.size - r.head) % r.size }

// desc is the address of the i-th descriptor after the head.
func (r ringState) desc(i uint32) uint64 { return r.base + 16*uint64((r.head+i)%r.size) }

func (r ringState) bsize() uint64 { return uint64(r.srrctl&srrctlBSizePktMask) * 1024 }
func (r ringState) hsize() uint64 { return uint64(r.srrctl&srrctlBSizeHdrMask>>8) * 64 }
func (r ringState) legacy() bool  { return r.srrctl>>srrctlDescTypeSh&7 == descTypeLegacy }

// rxPosted is what the model may write on rx ring r: the posted
// descriptors and, unless descOnly, their buffers (read from the snapshot,
// i.e. as posted before the operation).
func (m *fuzzMem) rxPosted(r ringState, descOnly bool) []span {
	if !r.valid() {
		return nil
	}
	var s []span
	for i := uint32(0); i < r.posted(); i++ {
		b, ok := m.at(m.snap, r.desc(i), 16)
		if !ok {
			continue // the model cannot reach it either
		}
		s = append(s, spanOf(r.desc(i), 16))
		if !descOnly {
			s = append(s, spanOf(le64(b), r.bsize()), spanOf(le64(b[8:])&^1, r.hsize()))
		}
	}
	return s
}

// txPosted is what the model may write on tx ring r: the status dword of
// the posted descriptors (DD) and the head write-back word.
func (m *fuzzMem) txPosted(r ringState) []span {
	var s []span
	if r.valid() {
		for i := uint32(0); i < r.posted(); i++ {
			if _, ok := m.at(m.snap, r.desc(i), 16); ok {
				s = append(s, spanOf(r.desc(i)+12, 4))
			}
		}
	}
	if r.wbal&1 != 0 {
		s = append(s, spanOf(uint64(r.wbah)<<32|uint64(r.wbal&^3), 4))
	}
	return s
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// rxWB is a written-back rx descriptor (§7.1.5 legacy, §7.1.6.2 advanced).
type rxWB struct {
	dd, eop, rxe bool
	len, hlen    int // hlen: bytes in the header buffer (SPH)
}

func decodeRxWB(desc []byte, legacy bool) rxWB {
	lo, hi := le64(desc), le64(desc[8:])
	if legacy { // length 15:0, status 39:32, errors 47:40 (RXE is bit 7)
		st, er := hi>>32, hi>>40
		return rxWB{dd: st&1 != 0, eop: st&2 != 0, rxe: er&0x80 != 0, len: int(hi & 0xFFFF)}
	}
	w := rxWB{dd: hi&rxdStatDD != 0, eop: hi&rxdStatEOP != 0, rxe: hi&rxdErrRXE != 0, len: int(hi >> 32 & 0xFFFF)}
	if lo>>31 != 0 {
		w.hlen = int(lo >> 21 & 0x3FF)
	}
	return w
}

// fuzzWire checks each frame's size and keeps the last one.
type fuzzWire struct {
	frames int
	keep   bool
	last   []byte
	err    error
}

func (w *fuzzWire) Send(segs [][]byte) error {
	n := 0
	for _, s := range segs {
		n += len(s)
	}
	w.frames++
	if (n == 0 || n > maxTxFrame+4) && w.err == nil {
		w.err = fmt.Errorf("a %d-byte frame was sent to the wire", n)
	}
	if w.keep {
		w.last = w.last[:0]
		for _, s := range segs {
			w.last = append(w.last, s...)
		}
	}
	return nil
}

// fuzzIRQ counts MSI-X messages; EITR timers call it from other goroutines.
type fuzzIRQ struct {
	mu    sync.Mutex
	fired [MSIXVectors]int
	err   error
}

func (f *fuzzIRQ) Trigger(v int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v < 0 || v >= MSIXVectors {
		f.err = fmt.Errorf("MSI-X vector %d triggered", v)
		return nil
	}
	f.fired[v]++
	return nil
}

func (f *fuzzIRQ) SetINTx(bool) {}

func (f *fuzzIRQ) count(v int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired[v]
}

// fzOp names an operation for failure messages.
type fzOp struct {
	name     string
	reg      bool // register write of n bytes at off: the guest may move heads itself
	off, v   uint32
	n        int
	descOnly bool // rx: may write descriptors, not buffers
	noWrites bool // may not write guest memory at all
	// allowed, if set, replaces the posted-ring spans (computed after the
	// operation).
	allowed func() []span
}

func (o *fzOp) String() string {
	if o.reg || o.off != 0 {
		return fmt.Sprintf("%s(%#x, %#x)", o.name, o.off, o.v)
	}
	return o.name
}

// writes reports whether the op wrote the register at off.
func (o *fzOp) writes(off uint32) bool {
	return o.reg && o.off&^3 <= off && off < o.off&^3+uint32(o.n)
}

type fuzzHarness struct {
	t      *testing.T
	d      *Device
	mem    *fuzzMem
	wire   *fuzzWire
	irq    *fuzzIRQ
	filled [fzQueues]int // bytes the tap reader put into the RxTarget views
}

func newFuzzHarness(t *testing.T) *fuzzHarness {
	h := &fuzzHarness{t: t, mem: newFuzzMem(), wire: &fuzzWire{}, irq: &fuzzIRQ{}}
	d, err := New(Config{MAC: testMAC, Queues: fzQueues, DMA: h.mem, Wire: h.wire, IRQ: h.irq})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	h.d = d
	return h
}

type queueStates [fzQueues][2]ringState // rx, tx

func (h *fuzzHarness) states() (s queueStates) {
	for q := range s {
		s[q] = [2]ringState{rxState(h.d, q), txState(h.d, q)}
	}
	return s
}

// do runs one device operation and checks the invariants around it.
func (h *fuzzHarness) do(op *fzOp, fn func()) (pre, post queueStates) {
	pre = h.states()
	fn()
	post = h.states()
	h.mem.verify(h.t, op, func() (s []span) {
		if op.noWrites {
			return nil
		}
		if op.allowed != nil {
			return op.allowed()
		}
		for q := range pre {
			s = append(s, h.mem.rxPosted(pre[q][0], op.descOnly)...)
			s = append(s, h.mem.txPosted(pre[q][1])...)
			kick := post[q][1] // a TDT or TXDCTL write kicks with the new registers
			kick.head = pre[q][1].head
			s = append(s, h.mem.txPosted(kick)...)
		}
		return s
	})
	for q := range pre {
		h.checkHead(op, "RDH", rxQueueBase(q)+qRDH, pre[q][0], post[q][0])
		h.checkHead(op, "TDH", txQueueBase(q)+qRDH, pre[q][1], post[q][1])
	}
	if h.wire.err != nil {
		h.t.Fatalf("%v: %v", op, h.wire.err)
	}
	h.irq.mu.Lock()
	err := h.irq.err
	h.irq.mu.Unlock()
	if err != nil {
		h.t.Fatalf("%v: %v", op, err)
	}
	return pre, post
}

// checkHead: the device moves a head only forward, inside the ring and not
// past the tail (§7.1.9, §7.2.1).
func (h *fuzzHarness) checkHead(op *fzOp, name string, headReg uint32, pre, post ringState) {
	if op.writes(headReg) || post.size != pre.size || post.base != pre.base {
		return
	}
	from := pre
	from.tail = post.tail // a TDT write is the doorbell
	if !from.valid() {
		return
	}
	adv := (post.head + pre.size - pre.head) % pre.size
	if post.head >= pre.size || adv > from.posted() {
		h.t.Fatalf("%v: %s moved %d -> %d, ring of %d with tail %d", op, name, pre.head, post.head, pre.size, post.tail)
	}
}

func (h *fuzzHarness) regWrite(off, v uint32) {
	h.do(&fzOp{name: "write", reg: true, off: off, v: v, n: 4}, func() { h.d.WriteReg(off, v) })
}

// checkRxDone checks the write-back of one rx operation on ring pre (the
// state before). A frame of n bytes delivered (err == nil) consumed
// descriptors in order whose lengths add up to n; a dropped one consumed
// none or (skip) some, empty, the last flagged RXE. It returns the
// descriptors consumed.
func (h *fuzzHarness) checkRxDone(op *fzOp, pre, post ringState, err error, n int, skip bool) uint32 {
	t := h.t
	if !pre.valid() || post.head == pre.head {
		if err == nil {
			t.Fatalf("%v: frame delivered but RDH did not move", op)
		}
		return 0
	}
	adv := (post.head + pre.size - pre.head) % pre.size
	total := 0
	var w rxWB
	for i := uint32(0); i < adv; i++ {
		b, ok := h.mem.at(h.mem.ram, pre.desc(i), 16)
		if !ok {
			t.Fatalf("%v: RDH passed descriptor %#x outside guest memory", op, pre.desc(i))
		}
		w = decodeRxWB(b, pre.legacy())
		if !w.dd || w.eop != (i == adv-1) {
			t.Fatalf("%v: descriptor %d of %d written back with DD=%v EOP=%v", op, i, adv, w.dd, w.eop)
		}
		if uint64(w.len) > pre.bsize() || uint64(w.hlen) > pre.hsize() {
			t.Fatalf("%v: write-back length %d/%d exceeds buffer sizes %d/%d", op, w.len, w.hlen, pre.bsize(), pre.hsize())
		}
		total += w.len + w.hlen
	}
	switch {
	case err == nil && total != n:
		t.Fatalf("%v: %d-byte frame written back as %d bytes", op, n, total)
	case err != nil && !(skip && total == 0 && w.rxe):
		t.Fatalf("%v: dropped (%v) but consumed %d descriptors (RXE=%v)", op, err, adv, w.rxe)
	}
	return adv
}

// checkViews: RxTarget hands out, in order, views inside the posted buffers
// of the next descriptors, adding up to the largest accepted frame.
func (h *fuzzHarness) checkViews(pre ringState, views [][]byte) {
	t := h.t
	if !pre.valid() || uint32(len(views)) > pre.posted() {
		t.Fatalf("RxTarget: %d views from ring %+v", len(views), pre)
	}
	room := 0
	for i, v := range views {
		b, ok := h.mem.at(h.mem.snap, pre.desc(uint32(i)), 16)
		if !ok {
			t.Fatalf("RxTarget: view %d from descriptor %#x outside guest memory", i, pre.desc(uint32(i)))
		}
		buf, a := le64(b), h.mem.gpa(v)
		if a < buf || a-buf > pre.bsize() || uint64(len(v)) > pre.bsize()-(a-buf) {
			t.Fatalf("RxTarget: view %d at %#x+%d outside buffer %#x+%d", i, a, len(v), buf, pre.bsize())
		}
		room += len(v)
	}
	mfs := 1518
	if h.d.ReadReg(regHLREG0)&hlreg0JumboEn != 0 {
		mfs = int(h.d.ReadReg(regMAXFRS) >> 16)
	}
	if room != mfs { // MAXFRS.MFS counts the FCS, a VLAN tag adds 4: MFS bytes
		t.Fatalf("RxTarget: views hold %d bytes, largest frame %d", room, mfs)
	}
}

// fill is the tap reader's readv into the views.
func (h *fuzzHarness) fill(views [][]byte, f []byte) int {
	n := 0
	for _, v := range views {
		c := f[n:min(len(f), n+len(v))]
		h.mem.put(h.mem.gpa(v), c)
		n += len(c)
	}
	return n
}

// --- FuzzRegisterWrites ---

// progReader reads a FuzzRegisterWrites program: the shared decoding plus
// the operands this harness biases (queues, registers, values, frames).
type progReader struct{ *fuzzinput.Reader }

// queue returns -1..fzQueues: invalid ones included.
func (in progReader) queue() int { return int(in.Byte())%(fzQueues+2) - 1 }

// fuzzRegs are the registers the programs name by index (fzRaw: a raw
// offset follows).
var fuzzRegs = func() []uint32 {
	r := []uint32{regCTRL, regSTATUS, regCTRLEXT, regEEC, regEERD, regEEWR, regSWSM, regGSSR,
		regMSCA, regMSRWD, regAUTOC, regLINKS, regHLREG0, regMAXFRS, regRDRXCTL, regRXCTRL,
		regRXCSUM, regFCTRL, regVLNCTRL, regMCSTCTRL, regMTA, regMTA + 4*127, regRALLow, regRALLow + 4,
		regRAL + 8, regRAL + 12, regRAL + 8*127 + 4, regPSRTYPE, regRQSMR, regTQSM, regFDIRCTRL, regFDIRCMD,
		regDMATXCTL, regDTXTCPFLGL, regDTXTCPFLGH, regEICR, regEICS, regEIAC, regEIMS, regEIMC,
		regEIAM, regGPIE, regIVARMisc, regEICSEx, regEIMSEx + 4, regEIMCEx, regEIAMEx + 4, regEITR(0),
		regEITR(1), regEITR(63), regIVAR(0), regIVAR(63), regGPRC, regGORCL, regGORCH, regQPRC,
		regQBRCL, regMPC, regQPRDC, regGPTC, rxQueueBase(64) + qRDT, txQueueBase(127) + qRDT, BAR0Size - 4}
	for q := 0; q <= fzQueues; q++ { // queue fzQueues is not implemented
		for _, o := range []uint32{qRDBAL, qRDBAH, qRDLEN, qRDH, qSRRCTL, qRDT, qRXDCTL} {
			r = append(r, rxQueueBase(q)+o)
		}
		r = append(r, 0x02100+4*uint32(q)) // SRRCTL alias
		for _, o := range []uint32{qRDBAL, qRDBAH, qRDLEN, qRDH, qRDT, qRXDCTL, qTDWBAL, qTDWBAH} {
			r = append(r, txQueueBase(q)+o)
		}
	}
	return r
}()

const fzRaw = 0xFF

func (in progReader) reg() uint32 {
	if s := int(in.Byte()); s < len(fuzzRegs) {
		return fuzzRegs[s]
	}
	return in.U32() % (BAR0Size + 0x100)
}

// val returns a register value, biased towards guest addresses, ring
// lengths and single bits.
func (in progReader) val() uint32 {
	switch in.Byte() % 8 {
	case 0:
		return in.U32()
	case 1:
		return uint32(in.Byte())
	case 2:
		return uint32(decodeAddr(uint32(in.U16())))
	case 3:
		return 1 << (in.Byte() % 32)
	case 4:
		return 0
	case 5:
		return math.MaxUint32
	case 6:
		return uint32(in.Byte()) * 128
	}
	return uint32(in.U16())
}

// decodeAddr maps 32 fuzz bits to a guest address: half of them inside
// the fuzz memory (a quarter of those in its data area), the others
// straddling its end, below it, wrapping around 2^64, or with high bits set
// (address truncation).
func decodeAddr(v uint32) uint64 {
	switch v >> 29 {
	case 3:
		return fzBase + fzData + uint64(v&0xFFF)
	case 4:
		return fzBase + fzSize - uint64(v&0xFFFF)
	case 5:
		return uint64(v & 0xFFFF)
	case 6:
		return math.MaxUint64 - uint64(v&0xFFFF)
	case 7:
		return uint64(v)<<32 | fzBase
	}
	return fzBase + uint64(v)%fzSize
}

// frame is a TCP/UDP frame to the device or a broadcast, or raw bytes,
// cut or padded to a fuzzed length (up to a 9.8 KB jumbo).
func (in progReader) frame() []byte {
	kind, n := in.Byte(), int(in.U16())%9800
	var f []byte
	switch kind % 4 {
	case 0:
		f = tcp4Frame(testMAC, nil)
	case 1:
		f = udp4Frame(bcastMAC, nil)
	case 2:
		f = tcp6Frame(testMAC, nil)
	default:
		f = in.Bytes(int(kind))
	}
	return padFrame(f, n)
}

func padFrame(f []byte, n int) []byte {
	if n <= len(f) {
		return f[:n]
	}
	p := make([]byte, n)
	copy(p, f)
	for i := len(f); i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

// Fixed layout for bring-ups: rings at 0x1000 per ring, rx buffers 2 KB
// apart per queue, tx buffers in the data area.
func fzRxRing(q int) uint64   { return fzBase + uint64(q)*0x1000 }
func fzTxRing(q int) uint64   { return fzBase + 0x2000 + uint64(q)*0x1000 }
func fzRxBuf(q, i int) uint64 { return fzBase + 0x10000 + uint64(q)*0x8000 + uint64(i)*0x800 }
func fzTxBuf(q int) uint64    { return fzBase + fzData + uint64(q)*0x2000 }

// bringUpRx programs rx queue q like ixgbe_configure_rx_ring and posts
// n-1 of n descriptors (n is 8 or 16, bsizeKB 1 or 2).
func (h *fuzzHarness) bringUpRx(q, n int, bsizeKB, descType uint32) {
	b := rxQueueBase(q)
	h.regWrite(regRAL, binary.LittleEndian.Uint32(testMAC[:]))
	h.regWrite(regRAL+4, uint32(testMAC[4])|uint32(testMAC[5])<<8|rahAV)
	h.regWrite(regFCTRL, fctrlBAM)
	h.regWrite(b+qRXDCTL, 0)
	h.regWrite(b+qRDBAL, uint32(fzRxRing(q)))
	h.regWrite(b+qRDBAH, 0)
	h.regWrite(b+qRDLEN, uint32(n*16))
	h.regWrite(b+qRDH, 0)
	h.regWrite(b+qRDT, 0)
	h.regWrite(b+qSRRCTL, bsizeKB|4<<8|descType<<srrctlDescTypeSh)
	h.regWrite(b+qRXDCTL, rxdctlEnable)
	h.mem.putDescs(fzRxRing(q), uint32(n), func(i uint32) (uint64, uint64, bool) {
		return fzRxBuf(q, int(i)), fzRxBuf(q, int(i)) + 0x400, true
	})
	h.regWrite(b+qRDT, uint32(n-1))
	h.regWrite(regRXCTRL, rxctrlRXEN)
}

func (h *fuzzHarness) bringUpTx(q, n int) {
	b := txQueueBase(q)
	h.regWrite(regDMATXCTL, dmatxctlTE)
	h.regWrite(b+qRXDCTL, 0)
	h.regWrite(b+qRDBAL, uint32(fzTxRing(q)))
	h.regWrite(b+qRDBAH, 0)
	h.regWrite(b+qRDLEN, uint32(n*16))
	h.regWrite(b+qRDH, 0)
	h.regWrite(b+qRDT, 0)
	h.regWrite(b+qRXDCTL, txdctlEnable)
}

// step runs one operation of a FuzzRegisterWrites program.
func (h *fuzzHarness) step(in progReader) {
	switch in.Byte() % 16 {
	case 0, 1, 2, 3:
		h.regWrite(in.reg(), in.val())
	case 4:
		off := in.reg()
		h.do(&fzOp{name: "read", off: off}, func() { h.d.ReadReg(off) })
	case 5: // bus access of any size and offset
		off, n := uint64(in.U32())%(BAR0Size+16), []int{0, 1, 2, 3, 4, 8, 16}[in.Byte()%7]
		buf := make([]byte, n)
		if in.Byte()&1 == 0 {
			h.do(&fzOp{name: "bus read", off: uint32(off)}, func() { h.d.Read(off, buf) })
			return
		}
		copy(buf, in.Bytes(n))
		h.do(&fzOp{name: "bus write", reg: true, off: uint32(off), n: n}, func() { h.d.Write(off, buf) })
	case 6: // the guest writes a descriptor of one of its rings
		q, tx := int(in.Byte())%fzQueues, in.Byte()&1 == 1
		r := rxState(h.d, q)
		if tx {
			r = txState(h.d, q)
		}
		idx := uint32(in.U16())
		if r.size != 0 {
			idx %= r.size
		}
		lo, hi := decodeAddr(in.U32()), decodeAddr(in.U32())
		if tx {
			hi = uint64(in.U32()) | uint64(in.U32())<<32
			if in.Byte()&1 == 1 { // a well-formed data descriptor
				hi = hi&^0xFFFFFFFF | hi&0xFFF | txdDTypData<<txdDTypShift | txdCmdDEXT | txdCmdEOP | txdCmdRS
			}
		}
		h.mem.putDesc(r.base+16*uint64(idx), lo, hi)
	case 7: // the guest writes anywhere
		h.mem.put(decodeAddr(in.U32()), in.Bytes(int(in.Byte()%64)))
	case 8:
		q, f := in.queue(), in.frame()
		op := &fzOp{name: "Receive"}
		var err error
		pre, post := h.do(op, func() { err = h.d.Receive(q, f) })
		if q >= 0 && q < fzQueues {
			h.checkRxDone(op, pre[q][0], post[q][0], err, len(f), true)
		}
	case 9:
		q, f := in.queue(), in.frame()
		var views [][]byte
		var ok bool
		pre, _ := h.do(&fzOp{name: "RxTarget"}, func() { views, ok = h.d.RxTarget(q) })
		if ok {
			h.checkViews(pre[q][0], views)
			h.filled[q] = h.fill(views, f)
		}
	case 10:
		q, n := in.queue(), int(in.U16())
		if q >= 0 && q < fzQueues && n&1 == 0 {
			n = h.filled[q]
		}
		op := &fzOp{name: "RxComplete", descOnly: true}
		var err error
		pre, post := h.do(op, func() { err = h.d.RxComplete(q, n) })
		if q >= 0 && q < fzQueues {
			h.checkRxDone(op, pre[q][0], post[q][0], err, n, false)
		}
	case 11:
		q := in.queue()
		h.do(&fzOp{name: "RxAbort", noWrites: true}, func() { h.d.RxAbort(q) })
	case 12: // tx doorbell
		b := txQueueBase(int(in.Byte()) % (fzQueues + 1))
		h.regWrite(b+qRDT, h.d.ReadReg(b+qRDT)+uint32(in.Byte()))
	case 13:
		h.regWrite(regCTRL, in.val()|ctrlRst)
	case 14: // a driver's queue bring-up, to reach deep states quickly
		q, k := int(in.Byte())%fzQueues, in.Byte()
		if k&1 == 0 { // RDLEN/TDLEN: multiples of 8 descriptors (§8.2.3.8.3)
			h.bringUpRx(q, 8<<(k>>1&1), 1+uint32(k>>2&1), uint32(in.Byte()%8))
		} else {
			h.bringUpTx(q, 8*(1+int(k>>1)%8))
		}
	case 15:
		up := in.Byte()&1 == 1
		h.do(&fzOp{name: "SetLink", noWrites: true}, func() { h.d.SetLink(up) })
	}
}

// checkRecovers resets the device and brings it up as a driver would: a
// frame must then be received through Receive and through RxTarget /
// RxComplete, with an MSI-X message, and a frame sent.
func (h *fuzzHarness) checkRecovers() {
	t := h.t
	h.regWrite(regCTRL, ctrlRst)
	clear(h.mem.ram) // the driver re-initialises its memory
	clear(h.mem.snap)
	h.bringUpRx(0, 8, 2, descTypeAdvOneBuf)
	h.bringUpTx(0, 8)
	h.regWrite(regGPIE, gpieMSIXMode)
	h.regWrite(regIVAR(0), ivarValid) // rx queue 0 → vector 0
	h.regWrite(regEIMS, 1)

	f := tcp4Frame(testMAC, payloadBytes(100))
	for i, zeroCopy := range []bool{false, true} {
		fired := h.irq.count(0)
		op := &fzOp{name: "recovery Receive"}
		var err error
		if zeroCopy {
			var views [][]byte
			var ok bool
			h.do(&fzOp{name: "recovery RxTarget"}, func() { views, ok = h.d.RxTarget(0) })
			require.True(t, ok, "RxTarget after reset")
			require.Equal(t, len(f), h.fill(views, f))
			op.name = "recovery RxComplete"
			h.do(op, func() { err = h.d.RxComplete(0, len(f)) })
		} else {
			h.do(op, func() { err = h.d.Receive(0, f) })
		}
		require.NoError(t, err, op.name)
		b, _ := h.mem.at(h.mem.ram, fzRxRing(0)+uint64(i)*16, 16)
		w := decodeRxWB(b, false)
		require.True(t, w.dd && w.eop, "%s: DD and EOP", op.name)
		require.Equal(t, len(f), w.len, op.name)
		got, _ := h.mem.at(h.mem.ram, fzRxBuf(0, i), len(f))
		require.Equal(t, f, got, op.name)
		require.Greater(t, h.irq.count(0), fired, "%s: MSI-X vector 0", op.name)
	}

	h.wire.keep = true
	h.mem.put(fzTxBuf(0), f)
	h.mem.putDesc(fzTxRing(0), fzTxBuf(0), uint64(len(f))|txdDTypData<<txdDTypShift|txdCmdDEXT|txdCmdEOP|txdCmdRS)
	h.regWrite(txQueueBase(0)+qRDT, 1)
	require.Equal(t, f, h.wire.last, "frame sent after reset")
	b, _ := h.mem.at(h.mem.ram, fzTxRing(0)+12, 4)
	require.NotZero(t, b[0]&txdStatDD, "DD written back")
}

// FuzzRegisterWrites runs a program of register writes and reads (most by
// name, some at raw offsets and odd sizes), guest descriptor writes, frames
// through Receive and RxTarget/RxComplete/RxAbort, tx doorbells, resets
// and link changes, then checks the device recovers.
func FuzzRegisterWrites(f *testing.F) {
	for _, s := range regSeeds() {
		f.Add([]byte(s.prog))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		h := newFuzzHarness(t)
		in := progReader{fuzzinput.New(prog)}
		for n := 0; n < 256 && !in.Empty(); n++ {
			h.step(in)
		}
		h.checkRecovers()
	})
}

// fzProg assembles FuzzRegisterWrites programs for the seed corpus.
type fzProg []byte

func (p fzProg) write(off, v uint32) fzProg {
	p = append(p, 0, fzRaw)
	p = binary.LittleEndian.AppendUint32(p, off)
	p = append(p, 0) // val(): raw 32 bits
	return binary.LittleEndian.AppendUint32(p, v)
}

func (p fzProg) bringUp(q int, descs16 bool, bsizeKB int) fzProg {
	k := byte(bsizeKB-1) << 2
	if descs16 {
		k |= 2
	}
	return append(p, 14, byte(q), k, descTypeAdvOneBuf)
}
func (p fzProg) bringUpTx(q, n int) fzProg { return append(p, 14, byte(q), byte((n/8-1)<<1|1)) }

// rxPost is the guest posting buffer addr (and addr+0x400 for headers) in
// descriptor idx of rx queue q.
func (p fzProg) rxPost(q, idx int, addr uint64) fzProg {
	p = append(p, 6, byte(q), 0, byte(idx), byte(idx>>8))
	p = binary.LittleEndian.AppendUint32(p, uint32(addr-fzBase)) // decodeAddr class 0
	return binary.LittleEndian.AppendUint32(p, uint32(addr+0x400-fzBase))
}

// frame kind 0: TCP to the device, n bytes.
func (p fzProg) receive(q int, n uint16) fzProg {
	return append(p, 8, byte(q+1), 0, byte(n), byte(n>>8))
}
func (p fzProg) rxTarget(q int, n uint16) fzProg {
	return append(p, 9, byte(q+1), 0, byte(n), byte(n>>8))
}
func (p fzProg) rxComplete(q int) fzProg { return append(p, 10, byte(q+1), 0, 0) }
func (p fzProg) rxAbort(q int) fzProg    { return append(p, 11, byte(q+1)) }

func (p fzProg) txFrame(q, idx int, addr uint64, n int) fzProg {
	p = append(p, 6, byte(q), 1, byte(idx), byte(idx>>8))
	p = binary.LittleEndian.AppendUint32(p, uint32(addr-fzBase)) // decodeAddr class 0
	p = binary.LittleEndian.AppendUint32(p, 0)
	p = binary.LittleEndian.AppendUint32(p, uint32(n))
	return append(p, 0, 0, 0, 0, 1) // well formed
}
func (p fzProg) doorbell(q int, by byte) fzProg { return append(p, 12, byte(q), by) }
func (p fzProg) reset() fzProg                  { return append(p, 13, 4) }

// regSeed is one FuzzRegisterWrites input.
type regSeed struct {
	name string
	prog fzProg
}

func (s regSeed) args() []any { return []any{[]byte(s.prog)} }

func regSeeds() []regSeed {
	rb, tb := rxQueueBase(0), txQueueBase(0)
	var linux fzProg // the register sequence of ixgbe_configure_rx/tx_ring, by hand
	linux = linux.write(regFCTRL, fctrlBAM).write(rb+qRDBAL, uint32(fzRxRing(0))).write(rb+qRDLEN, 8*16).
		write(rb+qSRRCTL, 2|4<<8|descTypeAdvOneBuf<<srrctlDescTypeSh).write(rb+qRXDCTL, rxdctlEnable).
		write(regRXCTRL, rxctrlRXEN)
	for i := 0; i < 8; i++ {
		linux = linux.rxPost(0, i, fzRxBuf(0, i))
	}
	linux = linux.write(rb+qRDT, 7).
		write(regDMATXCTL, dmatxctlTE).write(tb+qRDBAL, uint32(fzTxRing(0))).write(tb+qRDLEN, 8*16).
		write(tb+qTDWBAL, uint32(fzTxRing(0)+0x800)|1).write(tb+qRXDCTL, txdctlEnable).
		write(regGPIE, gpieMSIXMode|gpieEIAME).write(regIVAR(0), ivarValid|(ivarValid|1)<<8).
		write(regEITR(0), 0x40).write(regEIMS, 3).
		receive(0, 200).txFrame(0, 0, fzTxBuf(0), 60).doorbell(0, 1)

	zc := fzProg{}.bringUp(0, false, 2).bringUp(1, true, 1).bringUpTx(1, 8).
		rxTarget(0, 1000).receive(0, 300).rxComplete(0). // stale after the copy
		rxTarget(1, 3000).rxComplete(1).rxTarget(1, 60).rxAbort(1).
		txFrame(1, 0, fzTxBuf(1), 1514).doorbell(1, 1).reset().
		bringUp(0, false, 1).receive(0, 1000).rxTarget(0, 60).rxComplete(0)

	// The driver moves RDT back over a reservation, and resets with one
	// outstanding.
	back := fzProg{}.bringUp(0, false, 2).rxTarget(0, 100).write(rb+qRDT, 0).rxComplete(0).
		rxTarget(0, 100).reset().rxComplete(0).bringUp(0, false, 2).receive(0, 100)

	// Header split ring, jumbo frames, a ring straddling the memory end.
	split := fzProg{}.write(regHLREG0, hlreg0JumboEn).write(regMAXFRS, 9018<<16).
		write(regPSRTYPE, psrtypeTCPHdr|psrtypeIPv4Hdr).bringUp(0, true, 1).
		write(rb+qSRRCTL, 1|4<<8|descTypeAdvHdrSplit<<srrctlDescTypeSh).
		receive(0, 4000).rxTarget(0, 9000).rxComplete(0).
		write(rb+qRDBAL, fzBase+fzSize-0x80).write(rb+qRDT, 5).receive(0, 100)
	return []regSeed{{"seed-linux-rings", linux}, {"seed-zero-copy", zc}, {"seed-rdt-back", back}, {"seed-header-split", split}}
}

// --- FuzzRxDescriptors ---

// FuzzRxDescriptors places one fuzzed frame (several times) into a fuzzed
// rx ring: ring address and geometry, descriptor buffer addresses,
// SRRCTL (buffer sizes, descriptor type: header split), PSRTYPE,
// MAXFRS/JUMBOEN, through Receive or RxTarget/RxComplete. Every
// address/length is accepted: all frames pass the address filter.
func FuzzRxDescriptors(f *testing.F) {
	for _, s := range rxSeeds() {
		f.Add(s.ringAddr, s.rdlen, s.rdh, s.rdt, s.srrctl, s.psrtype, s.mfs, s.jumbo, s.path, s.descs, s.frame, s.padTo)
	}
	f.Fuzz(func(t *testing.T, ringAddr, rdlen uint32, rdh, rdt uint16, srrctl, psrtype, maxfrs uint32, jumbo bool,
		path uint16, descs, frame []byte, padTo uint16) {
		h := newFuzzHarness(t)
		b := rxQueueBase(0)
		base := decodeAddr(ringAddr)
		hl := h.d.ReadReg(regHLREG0) &^ hlreg0JumboEn
		if jumbo {
			hl |= hlreg0JumboEn
		}
		for _, w := range [][2]uint32{{regFCTRL, fctrlUPE | fctrlMPE | fctrlBAM}, {regHLREG0, hl},
			{regMAXFRS, maxfrs}, {regPSRTYPE, psrtype}, {b + qRDBAL, uint32(base)}, {b + qRDBAH, uint32(base >> 32)},
			{b + qRDLEN, rdlen}, {b + qSRRCTL, srrctl}, {b + qRDH, uint32(rdh)}, {b + qRDT, uint32(rdt)},
			{b + qRXDCTL, rxdctlEnable}, {regRXCTRL, rxctrlRXEN}} {
			h.regWrite(w[0], w[1])
		}
		r := rxState(h.d, 0)
		in := fuzzinput.New(descs)
		h.mem.putDescs(r.base, r.size, func(uint32) (uint64, uint64, bool) {
			if in.Empty() {
				return 0, 0, false
			}
			return decodeAddr(in.U32()), decodeAddr(in.U32()), true
		})
		frame = padFrame(frame, max(len(frame), int(padTo)))
		for k := 0; k <= int(path>>1&3); k++ {
			h.rxOnce(frame, path&1 == 1)
		}
	})
}

// rxSeeds: ring address (decodeAddr), RDLEN, RDH, RDT, SRRCTL, PSRTYPE,
// MAXFRS, JUMBOEN, path (bit 0: zero copy; bits 2:1: repeats), descriptor
// buffer addresses (decodeAddr pairs), frame, length to pad it to.
// rxSeed is one FuzzRxDescriptors input.
type rxSeed struct {
	name                 string
	ringAddr, rdlen      uint32
	rdh, rdt             uint16
	srrctl, psrtype, mfs uint32
	jumbo                bool
	path                 uint16
	descs, frame         []byte
	padTo                uint16
}

func (s rxSeed) args() []any {
	return []any{s.ringAddr, s.rdlen, s.rdh, s.rdt, s.srrctl, s.psrtype, s.mfs, s.jumbo, s.path, s.descs, s.frame, s.padTo}
}

// descOffs encodes guest memory offsets as decodeAddr class 0.
func descOffs(offs ...uint64) []byte {
	var b []byte
	for _, o := range offs {
		b = binary.LittleEndian.AppendUint32(b, uint32(o))
	}
	return b
}

func rxSeeds() []rxSeed {
	tcp := tcp4Frame(testMAC, payloadBytes(1000))
	adv := uint32(2 | 4<<8 | descTypeAdvOneBuf<<srrctlDescTypeSh)
	var pkts []byte // (packet, header) buffer pairs, 2 KB apart
	for i := uint64(0); i < 8; i++ {
		pkts = append(pkts, descOffs(0x1000+i*0x800, 0x6000+i*0x100)...)
	}
	mfs, jumbo := uint32(1518<<16), uint32(9018<<16)
	// Ring at offset 0 (ringAddr 0), 8 descriptors unless stated.
	return []rxSeed{
		{name: "seed-one-buffer", rdlen: 8 * 16, rdt: 7, srrctl: adv, mfs: mfs, descs: pkts, frame: tcp},
		{name: "seed-legacy-wrap", rdlen: 8 * 16, rdh: 6, rdt: 5, srrctl: 2, mfs: mfs, path: 7, descs: pkts,
			frame: udp4Frame(bcastMAC, payloadBytes(100))},
		{name: "seed-header-split-jumbo", rdlen: 16 * 16, rdt: 15, srrctl: 1 | 4<<8 | descTypeAdvHdrSplit<<srrctlDescTypeSh,
			psrtype: psrtypeTCPHdr | psrtypeIPv4Hdr, mfs: jumbo, jumbo: true, path: 2,
			descs: descOffs(0x1000, 0x8000, 0x1400, 0x8100, 0x1800, 0x8200, 0x1C00, 0x8300, 0x2000, 0x8400), frame: tcp, padTo: 5000},
		{name: "seed-zero-copy-jumbo", rdlen: 8 * 16, rdt: 7, srrctl: adv, mfs: jumbo, jumbo: true, path: 1, descs: pkts,
			frame: tcp, padTo: 9000},
		// A frame over two 1 KB buffers, the second below guest memory:
		// both descriptors are consumed, in order.
		{name: "seed-skip-second-buffer", rdlen: 8 * 16, rdt: 7, srrctl: 1 | descTypeAdvOneBuf<<srrctlDescTypeSh, mfs: mfs,
			descs: descOffs(0x1000, 0x6000, 5<<29|0x1000), frame: tcp, padTo: 1500},
		// Buffers straddling the end of memory, below it, and wrapping 2^64.
		{name: "seed-bad-addresses", rdlen: 8 * 16, rdt: 7, srrctl: adv, mfs: mfs, path: 4,
			descs: descOffs(4<<29|0x100, 5<<29, 6<<29|0x10), frame: tcp},
	}
}

// rxOnce delivers frame to queue 0 and checks where it landed.
func (h *fuzzHarness) rxOnce(frame []byte, zeroCopy bool) {
	r := rxState(h.d, 0)
	addrs := h.postedAddrs(r)
	op := &fzOp{name: "Receive"}
	var pre, post queueStates
	var err error
	n := len(frame)
	if zeroCopy {
		var views [][]byte
		var ok bool
		h.do(&fzOp{name: "RxTarget", noWrites: true}, func() { views, ok = h.d.RxTarget(0) })
		if !ok {
			return
		}
		h.checkViews(r, views)
		if h.fill(views, frame) < n { // longer than the views: the reader drops it
			h.do(&fzOp{name: "RxAbort", noWrites: true}, func() { h.d.RxAbort(0) })
			return
		}
		op = &fzOp{name: "RxComplete", descOnly: true}
		pre, post = h.do(op, func() { err = h.d.RxComplete(0, n) })
	} else {
		op.allowed = func() []span { return h.writtenBack(r, addrs) }
		pre, post = h.do(op, func() { err = h.d.Receive(0, frame) })
	}
	adv := h.checkRxDone(op, pre[0][0], post[0][0], err, n, !zeroCopy)
	if err == nil {
		h.checkLanded(r, addrs[:adv], frame)
	}
}

// postedAddrs returns the (packet, header) buffer addresses of the posted
// descriptors of r, as many as one frame can use.
func (h *fuzzHarness) postedAddrs(r ringState) [][2]uint64 {
	if !r.valid() {
		return nil
	}
	var a [][2]uint64
	for i := uint32(0); i < min(r.posted(), 128); i++ {
		b, ok := h.mem.at(h.mem.ram, r.desc(i), 16)
		if !ok {
			break
		}
		a = append(a, [2]uint64{le64(b), le64(b[8:]) &^ 1})
	}
	return a
}

// writtenBack is exactly what placing a frame on ring r (as before the
// operation, buffers at addrs) may write: the descriptors RDH moved over
// and, in their buffers, the bytes their write-back reports.
func (h *fuzzHarness) writtenBack(r ringState, addrs [][2]uint64) []span {
	if !r.valid() {
		return nil
	}
	var s []span
	adv := (rxState(h.d, 0).head + r.size - r.head) % r.size
	for i := uint32(0); i < adv && int(i) < len(addrs); i++ {
		s = append(s, spanOf(r.desc(i), 16))
		if b, ok := h.mem.at(h.mem.ram, r.desc(i), 16); ok {
			w := decodeRxWB(b, r.legacy())
			s = append(s, spanOf(addrs[i][0], uint64(w.len)), spanOf(addrs[i][1], uint64(w.hlen)))
		}
	}
	return s
}

// checkLanded checks the frame's bytes are in the buffers the write-back
// names, when no buffer overlaps another or a descriptor (else the guest
// made the bytes ambiguous itself).
func (h *fuzzHarness) checkLanded(r ringState, addrs [][2]uint64, frame []byte) {
	var used []span
	var parts [][]byte
	for i, a := range addrs {
		b, _ := h.mem.at(h.mem.ram, r.desc(uint32(i)), 16)
		w := decodeRxWB(b, r.legacy())
		used = append(used, spanOf(r.desc(uint32(i)), 16))
		for _, p := range []struct {
			addr uint64
			n    int
		}{{a[1], w.hlen}, {a[0], w.len}} {
			if p.n == 0 {
				continue
			}
			used = append(used, spanOf(p.addr, uint64(p.n)))
			got, ok := h.mem.at(h.mem.ram, p.addr, p.n)
			if !ok {
				h.t.Fatalf("write-back names %#x+%d outside guest memory", p.addr, p.n)
			}
			parts = append(parts, got)
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
	for i := 1; i < len(used); i++ {
		if used[i].lo < used[i-1].hi {
			return
		}
	}
	if got := bytes.Join(parts, nil); !bytes.Equal(got, frame) {
		h.t.Fatalf("frame landed as %x, want %x", got, frame)
	}
}

// --- FuzzTxDescriptors ---

// FuzzTxDescriptors transmits a fuzzed tx ring: data, context and legacy
// descriptors with any command bits (TSO, checksum, VLAN), lengths and
// buffer addresses (decodeAddr), ring geometry and head write-back, with
// a fuzzed payload in the data area.
func FuzzTxDescriptors(f *testing.F) {
	for _, s := range txSeeds() {
		f.Add(s.ringAddr, s.tdlen, s.tdh, s.tdt, s.wbAddr, s.wbEn, s.tcpFlags, s.descs, s.payload)
	}
	f.Fuzz(func(t *testing.T, ringAddr, tdlen uint32, tdh, tdt uint16, wbAddr uint32, wbEn bool, tcpFlags uint64,
		descs, payload []byte) {
		h := newFuzzHarness(t)
		h.mem.put(fzBase+fzData, payload[:min(len(payload), fzSize-fzData)])
		b := txQueueBase(0)
		base, wba := decodeAddr(ringAddr), decodeAddr(wbAddr)
		wbl := uint32(wba)
		if wbEn {
			wbl |= 1
		}
		for _, w := range [][2]uint32{{regDMATXCTL, dmatxctlTE}, {regDTXTCPFLGL, uint32(tcpFlags)},
			{regDTXTCPFLGH, uint32(tcpFlags >> 32)}, {b + qRDBAL, uint32(base)}, {b + qRDBAH, uint32(base >> 32)},
			{b + qRDLEN, tdlen}, {b + qRDH, uint32(tdh)}, {b + qRDT, uint32(tdh)}, {b + qTDWBAL, wbl},
			{b + qTDWBAH, uint32(wba >> 32)}, {b + qRXDCTL, txdctlEnable}} {
			h.regWrite(w[0], w[1])
		}
		r := txState(h.d, 0)
		in := fuzzinput.New(descs)
		h.mem.putDescs(r.base, r.size, func(uint32) (uint64, uint64, bool) {
			if in.Empty() {
				return 0, 0, false
			}
			a, dw2, dw3 := in.U32(), in.U32(), in.U32()
			lo := uint64(a) // context descriptor fields
			if !(dw2&txdCmdDEXT != 0 && dw2>>txdDTypShift&0xF == txdDTypCtxt) {
				lo = decodeAddr(a)
			}
			return lo, uint64(dw2) | uint64(dw3)<<32, true
		})
		before := make([]byte, fzSize)
		copy(before, h.mem.ram)
		h.regWrite(b+qRDT, uint32(tdt))
		h.checkTxDD(r, txState(h.d, 0), before)

		// Another pass finds nothing left to send.
		frames := h.wire.frames
		h.do(&fzOp{name: "ProcessTx again", noWrites: true}, func() { _ = h.d.ProcessTx(0) })
		require.Equal(t, frames, h.wire.frames, "frames sent twice")
		require.Equal(t, uint64(h.wire.frames), h.d.Stats().TxFrames)
	})
}

// txSeeds: ring address (decodeAddr), TDLEN, TDH, TDT, head write-back
// address (decodeAddr) and enable, DTXTCPFLGL/H, descriptors (12 bytes
// each: buffer address (decodeAddr) or context fields, dw2, dw3), payload.
// txSeed is one FuzzTxDescriptors input.
type txSeed struct {
	name            string
	ringAddr, tdlen uint32
	tdh, tdt        uint16
	wbAddr          uint32
	wbEn            bool
	tcpFlags        uint64
	descs, payload  []byte
}

func (s txSeed) args() []any {
	return []any{s.ringAddr, s.tdlen, s.tdh, s.tdt, s.wbAddr, s.wbEn, s.tcpFlags, s.descs, s.payload}
}

func txSeeds() []txSeed {
	tcp := tcp4Frame(peerMAC, payloadBytes(3000))
	desc := func(addr uint32, dw2, dw3 uint32) []byte {
		return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, addr), dw2), dw3)
	}
	data := func(off, n int, cmd, olinfo uint32) []byte {
		return desc(3<<29|uint32(off), uint32(n)|txdDTypData<<txdDTypShift|txdCmdDEXT|cmd, olinfo)
	}
	ctx := func(maclen, iplen int, tucmd uint32, mss, l4len int) []byte {
		return desc(uint32(maclen<<9|iplen), tucmd|txdDTypCtxt<<txdDTypShift|txdCmdDEXT, uint32(mss<<16|l4len<<8))
	}
	flags := uint64(0x0FF6<<16|0x0FF6) | 0x0F7F<<32 // the reset values
	wrap := append(data(54, len(tcp)-54, txdCmdEOP|txdCmdRS, 0), desc(3<<29, 60|txdCmdEOP|txdCmdRS, 0)...)
	wrap = append(wrap, make([]byte, 4*12)...)
	wrap = append(append(wrap, ctx(14, 20, tucmdIPv4|tucmdL4TTCP, 0, 20)...), data(0, 54, 0, txdPoptsTXSM|txdPoptsIXSM)...)
	// Ring at offset 0 (ringAddr 0), head write-back at 0x1800.
	return []txSeed{
		{name: "seed-two-descriptors", tdlen: 8 * 16, tdt: 2, wbAddr: 0x1800, wbEn: true, tcpFlags: flags,
			descs: append(data(0, 54, 0, 0), data(54, 946, txdCmdEOP|txdCmdRS, 0)...), payload: tcp},
		{name: "seed-tso-vlan", tdlen: 8 * 16, tdt: 3, wbAddr: 0x1800, tcpFlags: flags,
			descs: append(append(ctx(14, 20, tucmdIPv4|tucmdL4TTCP, 1000, 20), data(0, 54, txdCmdTSE|txdCmdVLE, txdPoptsTXSM|txdPoptsIXSM)...),
				data(54, 3000, txdCmdEOP|txdCmdRS, 0)...), payload: tcp},
		// Checksum offload in a frame wrapping from descriptor 7 to 0,
		// then a legacy descriptor.
		{name: "seed-checksum-wrap-legacy", tdlen: 8 * 16, tdh: 6, tdt: 2, wbAddr: 0x1800, wbEn: true, tcpFlags: flags,
			descs: wrap, payload: tcp},
		// Buffers past memory, a ring straddling its end, no EOP.
		{name: "seed-bad-addresses", ringAddr: 4<<29 | 0x40, tdlen: 16 * 16, tdt: 12, wbAddr: 5 << 29, wbEn: true, tcpFlags: flags,
			descs: append(desc(6<<29, 100|txdCmdEOP|txdCmdRS, 0), data(0, 0xFFFF, txdCmdRS, 0)...), payload: tcp},
	}
}

// checkTxDD: every consumed descriptor that asked for it (RS, not a
// context descriptor) has DD written back (§7.2.3.5.2), unless the head
// write-back word overwrote it.
func (h *fuzzHarness) checkTxDD(pre, post ringState, before []byte) {
	if !pre.valid() || post.head == pre.head {
		return
	}
	wb := spanOf(uint64(post.wbah)<<32|uint64(post.wbal&^3), 4)
	for i := uint32(0); i < (post.head+pre.size-pre.head)%pre.size; i++ {
		a := pre.desc(i)
		old, ok := h.mem.at(before, a, 16)
		if !ok {
			h.t.Fatalf("TDH passed descriptor %#x outside guest memory", a)
		}
		dw2 := binary.LittleEndian.Uint32(old[8:])
		ctx := dw2&txdCmdDEXT != 0 && dw2>>txdDTypShift&0xF == txdDTypCtxt
		if ctx || dw2&txdCmdRS == 0 || post.wbal&1 != 0 && wb.lo < a+16 && a+12 < wb.hi {
			continue
		}
		if now, _ := h.mem.at(h.mem.ram, a+12, 4); now[0]&txdStatDD == 0 {
			h.t.Fatalf("descriptor %#x (RS) consumed without DD", a)
		}
	}
}

// TestRegisterSweep writes all ones to every register, reads every
// register back (no panic), and checks the device still recovers.
func TestRegisterSweep(t *testing.T) {
	h := newFuzzHarness(t)
	for off := uint32(0); off < BAR0Size; off += 4 {
		h.d.WriteReg(off, math.MaxUint32)
	}
	for off := uint32(0); off < BAR0Size+8; off += 4 {
		h.d.ReadReg(off)
	}
	h.mem.verify(t, &fzOp{name: "sweep"}, func() []span { return nil }) // every ring is outside memory
	h.checkRecovers()
}

// TestFuzzSeedFiles keeps testdata/fuzz/<target>/seed-* equal to the seeds
// above; IXGBE_WRITE_SEEDS=1 rewrites them.
func TestFuzzSeedFiles(t *testing.T) {
	files := map[string][]any{}
	for _, s := range regSeeds() {
		files["FuzzRegisterWrites/"+s.name] = s.args()
	}
	for _, s := range rxSeeds() {
		files["FuzzRxDescriptors/"+s.name] = s.args()
	}
	for _, s := range txSeeds() {
		files["FuzzTxDescriptors/"+s.name] = s.args()
	}
	for name, args := range files {
		want := []byte("go test fuzz v1\n") // the format of go test -fuzz corpus files
		for _, a := range args {
			if b, ok := a.([]byte); ok {
				want = fmt.Appendf(want, "[]byte(%q)\n", b)
			} else {
				want = fmt.Appendf(want, "%T(%v)\n", a, a)
			}
		}
		path := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("IXGBE_WRITE_SEEDS") == "1" {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
			continue
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "IXGBE_WRITE_SEEDS=1 go test -run TestFuzzSeedFiles writes it")
		require.Equal(t, string(want), string(got), path)
	}
}
