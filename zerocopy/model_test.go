package zerocopy

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

// spyPort records where ReadFrame was asked to write, to prove the iovec
// is guest memory itself.
type spyPort struct {
	*MemPort
	first []byte
}

func (p *spyPort) ReadFrame(hdr []byte, bufs [][]byte, wait bool) (int, error) {
	n, err := p.MemPort.ReadFrame(hdr, bufs, wait)
	if err == nil {
		p.first = bufs[0]
	}
	return n, err
}

func sameMem(a, b []byte) bool { return unsafe.SliceData(a) == unsafe.SliceData(b) }

func TestRxZeroCopyEndToEnd(t *testing.T) {
	r := newRig(t, mrgCfg, false, nil) // real reader goroutine
	gpa := uint64(lowRAM + 0x4000)
	// 1 KiB NIC buffers: a maximum-size frame needs two posted before any read.
	require.Equal(t, 2, r.m.PostRx([]nic.Buf{r.buf(7, gpa, 1536), r.buf(8, gpa+0x1000, 1536)}))
	f := frame(900, 1)
	r.port.Inject([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, f)
	r.sink.waitRx(t)

	require.Equal(t, [][]nic.Used{{{ID: 7, Written: 12 + 900}}}, r.sink.rx())
	require.Equal(t, f, r.at(gpa+12, 900), "frame at exactly gpa+hdrLen")
	hdr := r.at(gpa, 12)
	require.Equal(t, uint16(1), numBuffers(hdr))
	require.Equal(t, make([]byte, 10), hdr[:10], "offload fields not negotiated are cleared")
	st := r.m.Stats()
	require.Equal(t, uint64(1), st.RxFrames)
	require.Equal(t, uint64(1), st.RxZeroCopyFrames)
	require.Zero(t, st.RxCopiedBytes)
	require.Equal(t, uint64(1536), st.PinnedBytes)
	require.Equal(t, uint64(2*1536), st.PinnedBytesPeak)
}

func TestRxViewsAliasGuestMemory(t *testing.T) {
	mem := testRAM(t)
	spy := &spyPort{MemPort: NewMemPort(12)}
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: spy})
	require.NoError(t, err)
	m.manual = true
	s := newSink()
	require.NoError(t, m.Start(mrgCfg, s))
	defer m.Close()
	r := &rig{t: t, mem: mem, m: m, sink: s}
	gpa := uint64(highRAM + 0x2000)
	require.Equal(t, 2, m.PostRx([]nic.Buf{r.buf(1, gpa, 2048), r.buf(2, gpa+0x1000, 2048)}))
	spy.Inject(nil, frame(200, 2))
	r.step()
	require.True(t, sameMem(spy.first, r.at(gpa+12, 1)), "readv target is the guest buffer at gpa+hdrLen")
	require.Len(t, s.rx(), 1)
	require.Zero(t, m.Stats().RxCopiedBytes)
	m.Stop()
}

func TestRxJumboSpansThreeMergeableBuffers(t *testing.T) {
	r := newRig(t, mrgCfg, true, func(c *Config) { c.MTU = 9000 })
	base := uint64(lowRAM + 0x10000)
	var bufs []nic.Buf
	for i := 0; i < 16; i++ { // need = ceil(9018/1024) = 9 descriptors posted
		bufs = append(bufs, r.buf(uint16(i), base+uint64(i)*0x1000, 1536))
	}
	require.Equal(t, 16, r.m.PostRx(bufs))
	f := frame(2500, 3)
	r.port.Inject(nil, f)
	r.step()

	got := r.sink.rx()
	require.Len(t, got, 1)
	require.Equal(t, []nic.Used{{ID: 0, Written: 12 + 1024}, {ID: 1, Written: 1024}, {ID: 2, Written: 452}}, got[0])
	require.Equal(t, uint16(3), numBuffers(r.at(base, 12)))
	// Continuation buffers carry data from offset 0 (§5.1.6.4).
	require.Equal(t, f[:1024], r.at(base+12, 1024))
	require.Equal(t, f[1024:2048], r.at(base+0x1000, 1024))
	require.Equal(t, f[2048:], r.at(base+0x2000, 452))
	st := r.m.Stats()
	require.Zero(t, st.RxCopiedBytes)
	require.Equal(t, uint64(1), st.RxZeroCopyFrames)
	require.Equal(t, uint64(13*1536), st.PinnedBytes)

	// The next frame starts in buffer 3 with its header in front.
	f2 := frame(1514, 4)
	r.port.Inject(nil, f2)
	r.step()
	require.Equal(t, []nic.Used{{ID: 3, Written: 12 + 1024}, {ID: 4, Written: 490}}, r.sink.rx()[1])
	require.Equal(t, f2[:1024], r.at(base+0x3000+12, 1024))
	require.Equal(t, f2[1024:], r.at(base+0x4000, 490))
}

func TestRxBigPacketsHeaderSplit(t *testing.T) {
	r := newRig(t, noMrgCfg, true, nil)
	page := uint64(lowRAM + 0x20000)
	b := nic.Buf{ID: 9}
	for _, s := range bigPackets(page, 12, 32) {
		v := r.at(s.GPA, int(s.Len))
		b.Segs, b.GPAs = append(b.Segs, v), append(b.GPAs, s.GPA)
	}
	require.Equal(t, 1, r.m.PostRx([]nic.Buf{b}))
	f := frame(1514, 5)
	r.port.Inject(nil, f)
	r.step()
	require.Equal(t, [][]nic.Used{{{ID: 9, Written: 12 + 1514}}}, r.sink.rx())
	require.Equal(t, f, r.at(page+32, 1514), "payload in the first data segment")
	require.Equal(t, uint64(1), r.m.Stats().Decisions["zerocopy-header-split"])
	require.Zero(t, r.m.Stats().RxCopiedBytes)
}

func TestRxSmallBuffersFallBackAndCopy(t *testing.T) {
	r := newRig(t, noMrgCfg, true, nil)
	gpa := uint64(lowRAM + 0x30000)
	require.Equal(t, 1, r.m.PostRx([]nic.Buf{r.buf(4, gpa, 12+1518)}))
	f := frame(1514, 6)
	r.port.Inject(nil, f)
	r.step()
	require.Equal(t, [][]nic.Used{{{ID: 4, Written: 12 + 1514}}}, r.sink.rx())
	require.Equal(t, f, r.at(gpa+12, 1514))
	st := r.m.Stats()
	require.Equal(t, uint64(1), st.RxCopiedFrames)
	require.Equal(t, uint64(1514), st.RxCopiedBytes)
	require.Equal(t, uint64(1), st.HeadroomFallbacks)
	require.Equal(t, map[string]uint64{"too_small": 1}, st.FallbackReasons)
}

func TestRxMergeableBounceSpansThree(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	base := uint64(lowRAM + 0x40000)
	var bufs []nic.Buf
	for i := 0; i < 4; i++ { // 600 bytes: below the 1 KiB NIC buffer → bounce lane
		bufs = append(bufs, r.buf(uint16(10+i), base+uint64(i)*0x1000, 600))
	}
	require.Equal(t, 4, r.m.PostRx(bufs))
	f := frame(1400, 7)
	r.port.Inject(nil, f)
	r.step()
	require.Equal(t, [][]nic.Used{{{ID: 10, Written: 600}, {ID: 11, Written: 600}, {ID: 12, Written: 212}}}, r.sink.rx())
	require.Equal(t, uint16(3), numBuffers(r.at(base, 12)))
	require.Equal(t, f[:588], r.at(base+12, 588))
	require.Equal(t, f[588:1188], r.at(base+0x1000, 600))
	require.Equal(t, f[1188:], r.at(base+0x2000, 212))
	require.Equal(t, uint64(1400), r.m.Stats().RxCopiedBytes)
}

func TestRxNoGPAFallsBack(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	b := r.buf(1, lowRAM, 4096)
	b.GPAs = nil
	require.Equal(t, 1, r.m.PostRx([]nic.Buf{b}))
	r.port.Inject(nil, frame(1000, 8))
	r.step()
	require.Len(t, r.sink.rx(), 1)
	st := r.m.Stats()
	require.Equal(t, map[string]uint64{"no_gpa": 1}, st.FallbackReasons)
	require.Equal(t, uint64(1000), st.RxCopiedBytes)
}

func TestRxOversizeAndRuntDroppedAndCounted(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	var bufs []nic.Buf
	for i := 0; i < 4; i++ {
		bufs = append(bufs, r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 1536))
	}
	require.Equal(t, 4, r.m.PostRx(bufs))
	r.port.Inject(nil, frame(3000, 9)) // longer than MTU 1500 allows
	r.step()
	r.port.Inject(nil, make([]byte, 10))
	r.step()
	require.Empty(t, r.sink.rx())
	require.Equal(t, uint64(2), r.m.Stats().RxDroppedNIC)
	// The buffers are still posted and still work.
	r.port.Inject(nil, frame(100, 9))
	r.step()
	require.Equal(t, [][]nic.Used{{{ID: 0, Written: 112}}}, r.sink.rx())
}

func TestRxNonMergeableTooSmallBounceBuffer(t *testing.T) {
	r := newRig(t, noMrgCfg, true, nil)
	require.Equal(t, 1, r.m.PostRx([]nic.Buf{r.buf(3, lowRAM, 12+500)}))
	r.port.Inject(nil, frame(1000, 1))
	r.step()
	// Handed back with an empty frame, never truncated, and counted.
	require.Equal(t, [][]nic.Used{{{ID: 3, Written: 12}}}, r.sink.rx())
	require.Equal(t, uint64(1), r.m.Stats().RxDroppedNoBuffer)
	require.Zero(t, r.m.Stats().PinnedBytes)
}

// A hostile guest posts 256 chains of 64 KiB and never drains them: the
// model pins at most the cap, refuses the rest (they stay in the avail
// ring), and traffic still flows as buffers complete.
func TestHostileGuestPinCap(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	limit := DefaultPinLimit(256)
	const chain = 64 << 10
	var all []nic.Buf
	for i := 0; i < 256; i++ {
		gpa := uint64(lowRAM)
		if i >= 120 {
			gpa = highRAM - 120*chain
		}
		all = append(all, r.buf(uint16(i), gpa+uint64(i)*chain, chain))
	}
	pending := all
	got := 0
	// The last buffer stays posted: a read needs room for a maximum-size
	// frame (two 1 KiB NIC buffers), exactly as the 82599 would.
	for round := 0; len(pending) > 0 || got < 255; round++ {
		require.Less(t, round, 1000)
		n := r.m.PostRx(pending)
		pending = pending[n:]
		st := r.m.Stats()
		require.LessOrEqual(t, st.PinnedBytes, limit.Bytes)
		require.LessOrEqual(t, st.PinnedDescs, uint64(limit.Descs))
		if len(pending) > 0 {
			require.Equal(t, limit.Bytes, st.PinnedBytes, "posting stops exactly at the cap")
			require.Equal(t, 0, r.m.PostRx(pending[:1]), "nothing more while full")
		}
		r.port.Inject(nil, frame(1000, byte(round)))
		r.step()
		got = len(r.sink.rx())
	}
	st := r.m.Stats()
	require.Equal(t, uint64(255), st.RxZeroCopyFrames)
	require.Equal(t, limit.Bytes, st.PinnedBytesPeak)
	require.Equal(t, uint64(chain), st.PinnedBytes)
	require.Greater(t, st.PostRxRefused, uint64(0))
	require.Zero(t, st.RxCopiedBytes)
	left := r.m.Stop()
	require.Len(t, left, 1)
	require.Equal(t, uint16(255), left[0].ID)
	for i, u := range r.sink.rx() {
		require.Equal(t, []nic.Used{{ID: uint16(i), Written: 1012}}, u, "completed in posting order")
	}
}

func TestPinCapByDescriptors(t *testing.T) {
	r := newRig(t, mrgCfg, true, func(c *Config) { c.Pin = PinLimit{Bytes: 1 << 30, Descs: 8} })
	var bufs []nic.Buf
	for i := 0; i < 20; i++ {
		bufs = append(bufs, r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 1536))
	}
	require.Equal(t, 8, r.m.PostRx(bufs))
	require.Equal(t, uint64(8), r.m.Stats().PinnedDescs)
}

func TestStopReturnsBuffersInPostingOrder(t *testing.T) {
	r := newRig(t, mrgCfg, false, nil)
	bufs := []nic.Buf{
		r.buf(0, lowRAM, 1536),
		r.buf(1, lowRAM+0x1000, 100), // bounce lane
		r.buf(2, lowRAM+0x2000, 1536),
		r.buf(3, lowRAM+0x3000, 1, 4096), // header straddles: bounce lane
	}
	require.Equal(t, 4, r.m.PostRx(bufs))
	require.Equal(t, uint64(2), r.m.Stats().HeadroomFallbacks)
	out := r.m.Stop()
	var ids []uint16
	for _, b := range out {
		ids = append(ids, b.ID)
	}
	require.Equal(t, []uint16{0, 1, 2, 3}, ids)
	require.Zero(t, r.m.Stats().PinnedBytes)
	require.Equal(t, 0, r.m.PostRx(bufs), "stopped")
	// Restart (virtio reset + DRIVER_OK) works on a fresh ring.
	require.NoError(t, r.m.Start(mrgCfg, r.sink))
	require.Equal(t, 3, r.m.PostRx(bufs[:3]))
	r.port.Inject(nil, frame(64, 1))
	r.sink.waitRx(t)
	require.Equal(t, []nic.Used{{ID: 0, Written: 76}}, r.sink.rx()[0])
}

func TestTxZeroCopy(t *testing.T) {
	spy := &txSpy{MemPort: NewMemPort(12)}
	mem := testRAM(t)
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: spy})
	require.NoError(t, err)
	s := newSink()
	require.NoError(t, m.Start(mrgCfg, s))
	defer func() { m.Stop(); m.Close() }()
	r := &rig{t: t, mem: mem, m: m}

	f := frame(1200, 11)
	gpa := uint64(highRAM + 0x8000)
	copy(r.at(gpa+12, 60), f[:60])
	copy(r.at(gpa+0x1000, 1140), f[60:])
	b := r.buf(5, gpa, 12+60)
	b2 := r.buf(0, gpa+0x1000, 1140)
	b.Segs, b.GPAs = append(b.Segs, b2.Segs...), append(b.GPAs, b2.GPAs...)
	m.Transmit([]nic.Buf{b})

	require.Equal(t, [][]byte{f}, spy.Sent(), "identical bytes on the wire")
	require.True(t, sameMem(spy.segs[1], r.at(gpa+12, 1)), "writev straight from guest memory")
	require.Equal(t, []uint16{5}, s.txIDs)
	st := m.Stats()
	require.Equal(t, uint64(1), st.TxFrames)
	require.Equal(t, uint64(1), st.TxZeroCopyFrames)
	require.Zero(t, st.TxCopiedBytes)
	require.Equal(t, uint64(1), m.Device().Stats().TxFrames)
}

type txSpy struct {
	*MemPort
	segs [][]byte
}

func (p *txSpy) Writev(segs [][]byte) error {
	p.segs = append(p.segs[:0], segs...)
	return p.MemPort.Writev(segs)
}

func TestTxCopyFallbackAndBadFrames(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	f := frame(300, 12)
	gpa := uint64(lowRAM + 0x9000)
	copy(r.at(gpa+12, 300), f)
	noGPA := r.buf(1, gpa, 312)
	noGPA.GPAs = nil
	runt := r.buf(2, gpa, 12+10)
	hdrOnly := r.buf(3, gpa, 8)
	r.m.Transmit([]nic.Buf{noGPA, runt, hdrOnly})
	require.Equal(t, [][]byte{f}, r.port.Sent())
	require.Equal(t, []uint16{1, 2, 3}, r.sink.txIDs, "every frame completes, sent or dropped")
	st := r.m.Stats()
	require.Equal(t, uint64(300), st.TxCopiedBytes)
	require.Equal(t, uint64(2), st.TxDropped)
	require.Zero(t, st.TxZeroCopyFrames)
}

func TestStatsJSON(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	b, err := json.Marshal(r.m.Stats())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"rx_frames", "rx_zerocopy_frames", "rx_copied_frames", "rx_copied_bytes",
		"rx_dropped_no_buffer", "tx_frames", "tx_zerocopy_frames", "tx_copied_bytes", "pinned_bytes",
		"pinned_bytes_peak", "pin_limit_bytes", "headroom_fallbacks"} {
		require.Contains(t, m, k)
	}
	require.Equal(t, float64(1<<20), m["pin_limit_bytes"])
}

func TestStartRejects(t *testing.T) {
	mem := testRAM(t)
	m, err := NewModel(Config{Mem: mem, Port: NewMemPort(12)})
	require.NoError(t, err)
	defer m.Close()
	require.Error(t, m.Start(nic.Config{HdrLen: 11}, newSink()))
	require.Equal(t, nic.Capabilities{Csum: true, TSO: true}, m.Capabilities())
	_, err = NewModel(Config{Mem: mem, Port: NewMemPort(12), MTU: 20000})
	require.Error(t, err)
	_, err = NewModel(Config{Mem: mem})
	require.Error(t, err)
	// A pin limit below what one frame needs would deadlock: refused.
	m2, err := NewModel(Config{Mem: mem, Port: NewMemPort(12), MTU: 9000, Pin: PinLimit{Bytes: 1 << 20, Descs: 4}})
	require.NoError(t, err)
	defer m2.Close()
	require.Error(t, m2.Start(mrgCfg, newSink()))
}

// A guest that keeps posting far more than the cap allows, with frames
// arriving all the while, leaves the host heap where it was: no host
// state grows with what the guest posts.
func TestHostileGuestMemoryFlat(t *testing.T) {
	mem := testRAM(t)
	port := &loopPort{frame: frame(1514, 9)}
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: port})
	require.NoError(t, err)
	m.manual = true
	s := &benchSink{}
	require.NoError(t, m.Start(mrgCfg, s))
	defer func() { m.Stop(); m.Close() }()
	r := &rig{t: t, mem: mem}
	const chain = 64 << 10
	var all []nic.Buf
	for i := 0; i < 256; i++ {
		gpa := uint64(lowRAM)
		if i >= 120 {
			gpa = highRAM - 120*chain
		}
		all = append(all, r.buf(uint16(i), gpa+uint64(i)*chain, chain))
	}
	pending := append([]nic.Buf(nil), all...)
	round := func() {
		n := m.PostRx(pending)
		pending = pending[n:]
		m.rxBatch(m.stop, false, 1)
		for _, id := range s.ids {
			pending = append(pending, all[id])
		}
		s.ids = s.ids[:0]
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for range 2000 {
		round() // warm up every scratch slice to its working size
	}
	before := heap()
	for range 50000 {
		round()
	}
	after := heap()
	st := m.Stats()
	require.LessOrEqual(t, st.PinnedBytesPeak, DefaultPinLimit(256).Bytes)
	require.Greater(t, st.RxZeroCopyFrames, uint64(50000))
	require.Less(t, int64(after)-int64(before), int64(64<<10), "heap grew from %d to %d bytes", before, after)
	t.Logf("heap before %d B, after 50000 hostile rounds %d B; pinned peak %d B", before, after, st.PinnedBytesPeak)
}

// Linux shrinks its mergeable receive buffers to 1.5 KiB under small-packet
// traffic; to the 82599's 1 KiB buffer granularity each is one descriptor,
// and a 64 KiB GSO frame needs 65. A model holding 64 such buffers cannot
// take a frame, and must say so (nic.Sink.RxStarved) before it waits:
// virtio-net holds the driver's new buffers back from a model that holds
// 64 or more, so without the call both would wait for each other.
func TestRxStarvedWhenBuffersCannotTakeAFrame(t *testing.T) {
	cfg := mrgCfg
	cfg.GuestCsum, cfg.GuestTSO4 = true, true
	r := newRig(t, cfg, false, nil)
	require.Equal(t, uint32(65), r.m.need)
	bufs := make([]nic.Buf, 64)
	for i := range bufs {
		bufs[i] = r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 1536)
	}
	require.Equal(t, 64, r.m.PostRx(bufs))
	r.port.Inject(nil, frame(100, 1))
	deadline := time.Now().Add(5 * time.Second)
	for r.sink.starved.Load() == 0 {
		require.True(t, time.Now().Before(deadline), "the model waits without telling the sink it is starved")
		time.Sleep(time.Millisecond)
	}
	require.Empty(t, r.sink.rx())
	// The sink lends more: the frame arrives.
	require.Equal(t, 1, r.m.PostRx([]nic.Buf{r.buf(64, lowRAM+64*0x1000, 1536)}))
	r.sink.waitRx(t)
}

// The reader drains what the port holds, up to its budget, and reports
// it in one RxFrames call: one used-ring publish and interrupt decision
// for the whole batch, each frame still in its own buffers.
func TestRxBatchReportsQueuedFramesTogether(t *testing.T) {
	r := newRig(t, mrgCfg, true, nil)
	var bufs []nic.Buf
	for i := range 8 {
		bufs = append(bufs, r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 4096))
	}
	require.Equal(t, 8, r.m.PostRx(bufs))
	for i := range 5 {
		r.port.Inject(nil, frame(200+i, byte(i)))
	}
	require.True(t, r.m.rxBatch(r.m.stop, false, 64))
	require.Equal(t, 1, r.sink.batches, "one report for the frames queued")
	got := r.sink.rx()
	require.Len(t, got, 5)
	for i, f := range got {
		require.Equal(t, []nic.Used{{ID: uint16(i), Written: uint32(12 + 200 + i)}}, f)
		require.Equal(t, frame(200+i, byte(i)), r.at(lowRAM+uint64(i)*0x1000+12, 200+i))
	}
	require.Zero(t, r.port.Pending())

	// The budget bounds a batch; the rest waits for the next one.
	for i := range 3 {
		r.port.Inject(nil, frame(100, byte(i)))
	}
	require.True(t, r.m.rxBatch(r.m.stop, false, 2))
	require.Equal(t, 2, r.sink.batches)
	require.Len(t, r.sink.rx(), 7)
	require.Equal(t, 1, r.port.Pending())
	// Out of buffers mid-batch: what was read is reported, the rest stays
	// queued in the port.
	r.port.Inject(nil, frame(100, 9))
	require.True(t, r.m.rxBatch(r.m.stop, false, 64))
	require.Len(t, r.sink.rx(), 8, "every buffer used once")
	require.Equal(t, 1, r.port.Pending())
}
