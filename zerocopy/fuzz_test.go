package zerocopy

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/internal/fuzzinput"
	"github.com/govmm/govmm/vmm/guestmem"
)

// FuzzRegistry drives the model as a device would for a hostile guest:
// PostRx with buffers of every shape (empty, huge, misaligned, split,
// overlapping, at addresses outside guest RAM, without guest addresses),
// frames of fuzzed sizes injected on the MemPort, receive steps, Stop and
// Start with other layouts, and transmits. The model runs without its
// reader goroutine (manual), so every step is deterministic.
//
// Invariants, after every operation:
//   - the pinned bytes and buffers never exceed the pin limit and equal
//     what is lent; PostRx refuses only a buffer the cap cannot take;
//   - every buffer posted comes back exactly once, in a receive completion
//     or from Stop (in posting order), with Written <= its length;
//   - a frame is delivered with its length and bytes (zeroed header,
//     num_buffers), handed back empty, or dropped as a runt or oversize;
//   - transmits complete every frame once and send the guest's bytes;
//   - memory changes only inside buffers lent to the model.
func FuzzRegistry(f *testing.F) {
	for _, s := range fuzzRegistrySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		z := newZCFuzz(t, data)
		for ops := 0; !z.in.Empty() && ops < 200; ops++ {
			z.op()
		}
		z.stop()
	})
}

// Guest RAM of the fuzz: two 64 KiB regions with a hole between them, and
// host memory outside guest RAM for buffers a (lying) device names by
// addresses the guest does not have.
const (
	zLow     = 0x10000
	zHigh    = 0x30000
	zRegion  = 0x10000
	zForeign = 0x10000
)

// zBuf is a buffer lent to the model, as the fuzz remembers it.
type zBuf struct {
	buf  nic.Buf
	size uint64
	seq  int
	ram  []span // where its segments are, for overlap and write checks
}

// span is a range in one of the fuzz's memories: region 0 low RAM,
// 1 high RAM, 2 foreign memory.
type span struct {
	mem    int
	lo, hi int
}

func (a span) overlaps(b span) bool { return a.mem == b.mem && a.lo < b.hi && b.lo < a.hi }

type zcFuzz struct {
	t       *testing.T
	in      *fuzzinput.Reader
	mem     *guestmem.Memory
	host    [3][]byte // low, high, foreign
	shadow  [3][]byte
	port    *MemPort
	m       *Model
	sink    *sink
	limit   PinLimit
	mtu     int
	running bool
	cfg     nic.Config
	portHdr int      // the MemPort's header length (follows Start)
	pending [][]byte // injected frames as the port holds them (header + frame)

	lent     map[uint16]*zBuf
	writable []span // of the buffers lent at the last memory snapshot
	nextID   uint16
	nextSeq  int
}

var mtus = []int{1500, 68, 9000, 3000}

func newZCFuzz(t *testing.T, data []byte) *zcFuzz {
	z := &zcFuzz{t: t, in: fuzzinput.New(data), lent: map[uint16]*zBuf{}}
	for i, n := range []int{zRegion, zRegion, zForeign} {
		z.host[i] = make([]byte, n)
		z.shadow[i] = make([]byte, n)
	}
	var err error
	z.mem, err = guestmem.FromRegions(guestmem.Region{GPA: zLow, Host: z.host[0]}, guestmem.Region{GPA: zHigh, Host: z.host[1]})
	require.NoError(t, err)
	h := z.in.Byte()
	z.mtu = mtus[h%4]
	z.limit = PinLimit{Descs: 1 + int(h>>2)%32, Bytes: (uint64(z.in.U16()) + 1) * 32}
	z.portHdr = 12
	z.port = NewMemPort(z.portHdr)
	z.m, err = NewModel(Config{MAC: guestMAC, Mem: z.mem, Port: z.port, Pin: z.limit, MTU: z.mtu, Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	z.m.manual = true
	t.Cleanup(func() { z.m.Stop(); z.m.Close() })
	z.sink = &sink{rxCh: make(chan struct{}, 1<<16)}
	z.start(z.in.Byte())
	return z
}

var hdrLens = []int{12, 10, 20, 12}

// start starts the model with the layout cfg selects.
func (z *zcFuzz) start(cfg byte) {
	c := nic.Config{HdrLen: hdrLens[cfg%4], Mergeable: cfg&4 != 0}
	err := z.m.Start(c, z.sink)
	if z.running {
		require.Error(z.t, err, "Start while running")
		// Known bug (reported, zerocopy may not be changed here): Start
		// sets the port's header length before it finds the model
		// running, which shifts every later frame on the wire by the
		// difference. Put it back so the rest of the run stays checkable.
		require.NoError(z.t, z.port.SetHdrLen(z.cfg.HdrLen))
		return
	}
	z.portHdr = c.HdrLen // set before Start can fail
	if err == nil {
		z.running, z.cfg = true, c
	}
	z.check()
}

func (z *zcFuzz) op() {
	switch k := z.in.Byte(); k % 8 {
	case 0, 1:
		z.postRx(1 + int(k>>3)%4)
	case 2:
		z.inject()
	case 3, 4:
		for range 1 + int(k>>3)%8 {
			z.step()
		}
	case 5:
		z.stop()
		if k&8 != 0 {
			z.start(z.in.Byte())
		}
	case 6:
		z.start(z.in.Byte())
	case 7:
		z.transmit(1 + int(k>>3)%3)
	}
}

// Buffer generation.

var zLens = []int{0, 1, 10, 11, 12, 13, 20, 1024, 1036, 1044, 1536, 2048, 2060, 2068, 4096, 9018, 9030, 16384, 16396, 32768, 0xFFFF, 0x10000}

func (z *zcFuzz) length() int {
	if c := z.in.Byte(); c < 0xE0 {
		return int(c) * 16
	} else if int(c-0xE0) < len(zLens) {
		return zLens[c-0xE0]
	}
	return int(z.in.U16())
}

// Addresses a guest does not have: the hole, below RAM, past its end, the
// private region, the top of the address space. A foreign segment starts
// up to 63 bytes after one of them, still outside RAM.
var zAway = []uint64{zLow + zRegion, 0, zHigh + zRegion, PrivateBase, PrivateBase - 8, 1<<46 + 0x1000, ^uint64(0) - 0xFF, zHigh - 0x80}

var zBase = [2]uint64{zLow, zHigh}

// segment makes one segment: its view, guest address and span. prevEnd is
// where the previous segment ended, for contiguous chains.
func (z *zcFuzz) segment(prevEnd uint64) ([]byte, uint64, span) {
	mode := z.in.Byte()
	n := z.length()
	switch mode % 8 {
	case 6: // outside guest RAM: the view is foreign memory
		off := int(z.in.U16()) % zForeign
		n = min(n, zForeign-off)
		return z.host[2][off : off+n], zAway[mode>>3%8] + uint64(off%64), span{2, off, off + n}
	case 7:
		n = 0
	}
	gpa := zBase[mode&1] + uint64(z.in.U16())%zRegion
	if mode%8 == 5 { // right behind the previous segment, if in RAM
		gpa = prevEnd
	}
	r := 0
	if gpa >= zHigh {
		r = 1
	}
	off := int(gpa - zBase[r])
	if off < 0 || off > zRegion {
		r, off, gpa = 0, 0, zLow
	}
	n = min(n, zRegion-off)
	return z.host[r][off : off+n], gpa, span{r, off, off + n}
}

// newBuf makes one receive buffer of 1-3 segments.
func (z *zcFuzz) newBuf() *zBuf {
	shape := z.in.Byte()
	b := &zBuf{buf: nic.Buf{ID: z.nextID}, seq: z.nextSeq}
	z.nextID++
	z.nextSeq++
	end := uint64(zLow)
	for range 1 + int(shape&3)%3 {
		view, gpa, s := z.segment(end)
		b.buf.Segs = append(b.buf.Segs, view)
		b.buf.GPAs = append(b.buf.GPAs, gpa)
		b.ram = append(b.ram, s)
		b.size += uint64(len(view))
		end = gpa + uint64(len(view))
	}
	switch {
	case shape&0x80 != 0:
		b.buf.GPAs = nil // the device gave no guest addresses
	case shape&0x40 != 0:
		b.buf.GPAs = b.buf.GPAs[:len(b.buf.GPAs)-1] // or not one per segment
	}
	return b
}

// Operations.

func (z *zcFuzz) postRx(n int) {
	bufs := make([]*zBuf, n)
	list := make([]nic.Buf, n)
	for i := range bufs {
		bufs[i] = z.newBuf()
		list[i] = bufs[i].buf
	}
	before := z.m.Stats()
	k := z.m.PostRx(list)
	if !z.running {
		require.Zero(z.t, k, "PostRx while stopped")
	}
	require.True(z.t, k >= 0 && k <= n, "PostRx returned %d of %d", k, n)
	if z.running && k < n {
		// Refused only where the cap cannot take the next buffer.
		var b, d uint64
		for _, x := range bufs[:k] {
			b, d = b+x.size, d+1
		}
		b, d = b+before.PinnedBytes, d+before.PinnedDescs
		if b+bufs[k].size <= z.limit.Bytes && d+1 <= uint64(z.limit.Descs) {
			z.t.Fatalf("PostRx refused buffer %d of %d (%d bytes) with %d bytes / %d buffers pinned, limit %+v", k, n, bufs[k].size, b, d, z.limit)
		}
	}
	for _, x := range bufs[:k] {
		z.lent[x.buf.ID] = x
	}
	z.check()
}

func (z *zcFuzz) inject() {
	n := int(z.in.U16()) % 20000
	vnet := bytes.Repeat([]byte{z.in.Byte()}, 20)
	f := zFrame(n, z.in.Byte())
	z.port.Inject(vnet, f)
	raw := make([]byte, z.portHdr+n)
	copy(raw, vnet)
	copy(raw[z.portHdr:], f)
	z.pending = append(z.pending, raw)
	z.check()
}

// step moves at most one frame and checks what became of it.
func (z *zcFuzz) step() {
	pending := z.port.Pending()
	if pending == 0 {
		return // a read would block
	}
	before := z.m.Stats()
	z.sink.frames = nil
	z.m.rxBatch(z.m.stop, false, 1)
	after := z.m.Stats()
	frames := z.sink.frames

	consumed := pending - z.port.Pending()
	require.True(z.t, consumed == 0 || consumed == 1, "one step read %d frames", consumed)
	require.LessOrEqual(z.t, len(frames), consumed, "frames delivered without a read")
	var want []byte
	if consumed == 1 {
		raw := z.pending[0]
		z.pending = z.pending[1:]
		want = raw[min(z.portHdr, len(raw)):] // as the port splits it now
	}
	// Memory may change only inside buffers lent before the step.
	z.checkMemory()
	if len(frames) == 0 {
		if consumed == 1 {
			dropped := after.RxDroppedNIC - before.RxDroppedNIC
			if n := len(want); dropped != 1 || (n >= 14 && n <= z.mtu+14) {
				z.t.Fatalf("a %d-byte frame (MTU %d) was read and neither delivered nor dropped as runt/oversize (dropped %d)", n, z.mtu, dropped)
			}
		}
		z.check()
		return
	}
	z.checkFrame(frames[0], want, after.RxDroppedNoBuffer-before.RxDroppedNoBuffer == 1)
	z.check()
}

// checkFrame checks one RxFrame against the frame read, and returns its
// buffers.
func (z *zcFuzz) checkFrame(used []nic.Used, want []byte, handedBack bool) {
	t := z.t
	hdr := z.cfg.HdrLen
	var spans []span
	var got []byte
	shortFirst := false
	for i, u := range used {
		b, ok := z.lent[u.ID]
		if !ok {
			t.Fatalf("RxFrame returned buffer %d, which is not lent", u.ID)
		}
		delete(z.lent, u.ID)
		if i == 0 && b.size < uint64(hdr) {
			// Known bug (reported, zerocopy may not be changed here): the
			// bounce lane writes the header into the first buffer only,
			// and reports it written, even when that buffer is shorter
			// than the virtio_net_hdr (non-mergeable: Written = hdr_len
			// for an empty frame; mergeable: the header is left out).
			// virtio-net never posts such buffers.
			shortFirst = true
		}
		if uint64(u.Written) > b.size && !shortFirst {
			t.Fatalf("buffer %d: %d bytes written into %d", u.ID, u.Written, b.size)
		}
		spans = append(spans, b.ram...)
		stream := bytes.Join(b.buf.Segs, nil)
		got = append(got, stream[:min(int(u.Written), len(stream))]...)
	}
	if !z.cfg.Mergeable && len(used) != 1 {
		t.Fatalf("without MRG_RXBUF a frame used %d buffers", len(used))
	}
	if shortFirst {
		return
	}
	// The bytes can only be checked where the buffers do not overlap.
	for i := range spans {
		for j := range i {
			if spans[i].overlaps(spans[j]) {
				return
			}
		}
	}
	if handedBack {
		if len(used) != 1 || len(got) != hdr || !bytes.Equal(got, make([]byte, hdr)) {
			t.Fatalf("buffer handed back for a %d-byte frame: used %v, header %x", len(want), used, got)
		}
		return
	}
	wantHdr := make([]byte, hdr)
	if hdr >= 12 {
		binary.LittleEndian.PutUint16(wantHdr[hdrNumBufs:], uint16(len(used)))
	}
	if len(got) != hdr+len(want) || !bytes.Equal(got[:hdr], wantHdr) || !bytes.Equal(got[hdr:], want) {
		t.Fatalf("frame of %d bytes delivered as %d bytes in %v (header %x, want %x)", len(want), len(got), used, got[:min(hdr, len(got))], wantHdr)
	}
}

// stop stops the model: every lent buffer comes back, in posting order.
func (z *zcFuzz) stop() {
	out := z.m.Stop()
	if !z.running {
		require.Empty(z.t, out, "Stop while stopped")
	}
	z.running = false
	last := -1
	for _, b := range out {
		x, ok := z.lent[b.ID]
		if !ok {
			z.t.Fatalf("Stop returned buffer %d, which is not lent", b.ID)
		}
		if x.seq < last {
			z.t.Fatalf("Stop returned buffer %d out of posting order", b.ID)
		}
		last = x.seq
		delete(z.lent, b.ID)
	}
	if len(z.lent) != 0 {
		z.t.Fatalf("Stop kept %d lent buffers", len(z.lent))
	}
	z.check()
}

// transmit sends frames from guest buffers (or foreign ones).
func (z *zcFuzz) transmit(n int) {
	if !z.running {
		return
	}
	var frames []nic.Buf
	var want [][]byte
	for range n {
		b := z.newBuf()
		frames = append(frames, b.buf)
		want = append(want, bytes.Join(b.buf.Segs, nil))
	}
	sent := len(z.port.Sent())
	z.sink.txIDs = nil
	z.m.Transmit(frames)
	ids := z.sink.txIDs
	require.Len(z.t, ids, n, "every frame completes once")
	for i := range frames {
		require.Equal(z.t, frames[i].ID, ids[i])
	}
	z.checkMemory()
	z.check()
	// The wire is compared frame by frame only for plain frames: one whose
	// virtio_net_hdr asks for a checksum or segmentation may go out
	// changed, or as several frames (the model honours such requests even
	// without VIRTIO_NET_F_CSUM / HOST_TSO, which a driver must not send).
	hdr := z.cfg.HdrLen
	for _, w := range want {
		if len(w) >= 2 && (w[0] != 0 || w[1] != 0) {
			return
		}
	}
	out := z.port.Sent()[sent:]
	for _, w := range want {
		// A plain frame of a sane size must go out; others may be dropped.
		ok := len(w) >= hdr+14 && len(w) <= hdr+z.mtu+18
		if len(out) > 0 && len(w) >= hdr && bytes.Equal(out[0], w[hdr:]) {
			out = out[1:]
		} else if ok {
			z.t.Fatalf("a %d-byte frame was not sent", len(w)-hdr)
		}
	}
	require.Empty(z.t, out, "unexpected frames on the wire")
}

// check verifies the pin accounting against what is lent.
func (z *zcFuzz) check() {
	st := z.m.Stats()
	var b, d uint64
	for _, x := range z.lent {
		b, d = b+x.size, d+1
	}
	if st.PinnedBytes != b || st.PinnedDescs != d || b > z.limit.Bytes || d > uint64(z.limit.Descs) {
		z.t.Fatalf("pinned %d bytes / %d buffers, lent %d / %d, limit %+v", st.PinnedBytes, st.PinnedDescs, b, d, z.limit)
	}
	z.checkMemory()
}

// checkMemory verifies that memory changed only inside lent buffers (and
// those completed since the last check), then takes a new snapshot.
func (z *zcFuzz) checkMemory() {
	for r := range z.host {
		if bytes.Equal(z.host[r], z.shadow[r]) {
			continue
		}
		for off := range z.host[r] {
			if z.host[r][off] != z.shadow[r][off] && !z.mayWrite(r, off) {
				z.t.Fatalf("memory %d offset %#x written outside lent buffers", r, off)
			}
		}
		copy(z.shadow[r], z.host[r])
	}
	z.writable = z.writable[:0]
	for _, x := range z.lent {
		z.writable = append(z.writable, x.ram...)
	}
}

func (z *zcFuzz) mayWrite(mem, off int) bool {
	for _, s := range z.writable {
		if s.mem == mem && off >= s.lo && off < s.hi {
			return true
		}
	}
	return false
}

// zFrame returns an n-byte frame with a pattern and, if it has an
// Ethernet header, a non-VLAN EtherType (so its size limit is MTU+14).
func zFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*7)
	}
	if n >= 14 {
		binary.BigEndian.PutUint16(f[12:], 0x88B5)
	}
	return f
}

// Seeds, written with the encoder below (the same bytes are in
// testdata/fuzz/FuzzRegistry).
func fuzzRegistrySeeds() [][]byte {
	var seeds [][]byte

	// MTU 1500, 16 buffers / 2 MiB, mergeable: zero-copy receive of a
	// small, a full and a runt frame; a transmit; then without MRG_RXBUF
	// a big-packets (header split) buffer.
	var s zSeed
	s.header(0, 15, 0xFFFF, 4)
	s.post(zSeg{mode: 0, len: 96, at: 0}, zSeg{mode: 0, len: 96, at: 0x1000}, zSeg{mode: 0, len: 96, at: 0x2000}, zSeg{mode: 1, len: 96, at: 0x3000})
	s.inject(900, 0xFF, 1)
	s.steps(1)
	s.inject(1514, 0, 2)
	s.inject(10, 0, 3)
	s.steps(3)
	s.transmit(zBufSpec{zSeg{mode: 0, len: 0xE4, at: 0x8000}, zSeg{mode: 5, len: 0x40}})
	s.stopStart(0)
	s.post(zBufSpec{zSeg{mode: 1, len: 0xE4, at: 0x4000}, zSeg{mode: 5, len: 0xEE}})
	s.inject(1514, 0, 4)
	s.steps(3)
	seeds = append(seeds, s.b)

	// MTU 9000 and a pin cap of 3 buffers / 8 KiB: mergeable cannot start
	// (a frame needs 9); hdr_len 20 without MRG_RXBUF does. Buffers that
	// are empty, foreign, without GPAs, huge, misaligned and overlapping;
	// frames of 0, 13, 9014, 9032 and 19999 bytes; Stop/Start cycles.
	s = zSeed{}
	s.header(2, 2, 0xFF, 4)
	s.start(2)
	s.post(zSeg{mode: 7, at: 0x100}, zSeg{mode: 6, len: 96, at: 0x40}, zSeg{mode: 0, len: 0xF5, at: 0})
	s.postNoGPA(zSeg{mode: 0, len: 0xF0, at: 0x5001})
	s.post(zSeg{mode: 0, len: 0xF0, at: 0x5001}, zSeg{mode: 1, len: 0xF1, at: 0x3})
	for _, n := range []uint16{0, 13, 9014, 9032, 19999} {
		s.inject(n, 0x11, byte(n))
		s.steps(1)
	}
	s.transmit(zBufSpec{zSeg{mode: 6, len: 0x60, at: 0x200}})
	s.stopStart(6)
	s.post(zSeg{mode: 1, len: 0xF0, at: 0})
	s.inject(60, 0, 9)
	s.steps(2)
	seeds = append(seeds, s.b)

	// Mergeable bounce lane: buffers below the 1 KiB NIC buffer, one split
	// 6+6 across its header, frames spanning several of them.
	s = zSeed{}
	s.header(0, 31, 0x7FFF, 4)
	s.post(zSeg{mode: 0, len: 40, at: 0}, zSeg{mode: 0, len: 40, at: 0x400}, zSeg{mode: 0, len: 40, at: 0x800}, zSeg{mode: 0, len: 40, at: 0xC00})
	s.post(zBufSpec{zSeg{mode: 1, len: 0xE6, at: 0}, zSeg{mode: 5, len: 0xE6}, zSeg{mode: 5, len: 0x60}})
	s.inject(1400, 0, 5)
	s.steps(2)
	s.inject(1514, 0, 6)
	s.steps(1)
	s.stopStart(5)
	seeds = append(seeds, s.b)
	return seeds
}

// zSeg encodes a segment: mode (see segment), length code and position
// (offset in the region, or in foreign memory for mode 6).
type zSeg struct {
	mode, len byte
	at        uint16
}

type zBufSpec []zSeg

type zSeed struct{ b []byte }

func (s *zSeed) header(mtu, descs byte, pinBytes uint16, cfg byte) {
	s.b = append(s.b, mtu|descs<<2, byte(pinBytes), byte(pinBytes>>8), cfg)
}

func (s *zSeed) buf(shape byte, segs zBufSpec) {
	s.b = append(s.b, shape|byte(len(segs)-1))
	for _, g := range segs {
		s.b = append(s.b, g.mode, g.len, byte(g.at), byte(g.at>>8))
	}
}

// post lends single-segment buffers (or multi-segment ones given as
// zBufSpec), up to four per PostRx.
func (s *zSeed) post(bufs ...any) {
	s.b = append(s.b, byte(len(bufs)-1)<<3)
	for _, b := range bufs {
		switch b := b.(type) {
		case zSeg:
			s.buf(0, zBufSpec{b})
		case zBufSpec:
			s.buf(0, b)
		}
	}
}

func (s *zSeed) postNoGPA(g zSeg) {
	s.b = append(s.b, 0)
	s.buf(0x80, zBufSpec{g})
}

func (s *zSeed) inject(n uint16, vnet, seed byte) {
	s.b = append(s.b, 2, byte(n), byte(n>>8), vnet, seed)
}

func (s *zSeed) steps(n int)        { s.b = append(s.b, 3|byte(n-1)<<3) }
func (s *zSeed) start(cfg byte)     { s.b = append(s.b, 6, cfg) }
func (s *zSeed) stopStart(cfg byte) { s.b = append(s.b, 5|8, cfg) }

func (s *zSeed) transmit(b zBufSpec) {
	s.b = append(s.b, 7)
	s.buf(0, b)
}
