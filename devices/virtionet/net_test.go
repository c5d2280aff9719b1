package virtionet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
	"github.com/govmm/govmm/vmm/guestmem"
)

// fakeModel records what the device lends it and lets the test play the
// wire: Deliver writes a frame into the posted buffers like a NIC DMA.
type fakeModel struct {
	caps nic.Capabilities
	mu   sync.Mutex
	cfg  nic.Config
	sink nic.Sink
	bufs []nic.Buf
	sent [][]byte
	stop atomic.Bool
	capN int // if set, hold at most this many buffers (a pin cap)
	// offered counts the buffers PostRx was given, taken or not: chains
	// the device popped and walked.
	offered int
	// deferTx: Transmit keeps the ids; finishTx completes them later from
	// the caller's goroutine, as an asynchronous NIC would.
	deferTx   bool
	pendingTx []uint16
}

func (f *fakeModel) finishTx() {
	f.mu.Lock()
	ids := f.pendingTx
	f.pendingTx = nil
	f.mu.Unlock()
	f.sink.TxDone(ids)
}

func (f *fakeModel) Name() string                   { return "fake" }
func (f *fakeModel) Capabilities() nic.Capabilities { return f.caps }
func (f *fakeModel) Start(cfg nic.Config, s nic.Sink) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.sink = cfg, s
	return nil
}
func (f *fakeModel) PostRx(b []nic.Buf) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	f.offered += len(b)
	for _, x := range b {
		if f.capN > 0 && len(f.bufs) == f.capN {
			break
		}
		f.bufs = append(f.bufs, nic.Buf{ID: x.ID, Segs: append([][]byte(nil), x.Segs...)})
		n++
	}
	return n
}
func (f *fakeModel) Transmit(frames []nic.Buf) {
	ids := []uint16{}
	for _, fr := range frames {
		f.mu.Lock()
		f.sent = append(f.sent, bytes.Join(fr.Segs, nil))
		f.mu.Unlock()
		ids = append(ids, fr.ID)
	}
	if f.deferTx {
		f.mu.Lock()
		f.pendingTx = append(f.pendingTx, ids...)
		f.mu.Unlock()
		return
	}
	f.sink.TxDone(ids)
}
func (f *fakeModel) Stop() []nic.Buf {
	f.stop.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bufs
	f.bufs = nil
	return b
}

func (f *fakeModel) posted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bufs)
}

// deliver writes frame (header included) across as many posted buffers as
// needed, the way the tap model does, and completes them.
func (f *fakeModel) deliver(frame []byte) { f.deliverBatch(frame) }

// deliverBatch delivers frames as one batch (one RxFrames call).
func (f *fakeModel) deliverBatch(frames ...[]byte) {
	var b nic.RxBatch
	for _, fr := range frames {
		b.Add(f.land(fr)...)
	}
	f.sink.RxFrames(&b)
}

// land writes one frame into posted buffers and returns them as used.
func (f *fakeModel) land(frame []byte) []nic.Used {
	f.mu.Lock()
	var used []nic.Used
	rest := frame
	for len(rest) > 0 {
		b := f.bufs[0]
		f.bufs = f.bufs[1:]
		w := 0
		for _, s := range b.Segs {
			k := copy(s, rest)
			rest, w = rest[k:], w+k
		}
		used = append(used, nic.Used{ID: b.ID, Written: uint32(w)})
	}
	f.mu.Unlock()
	return used
}

type countIRQ struct{ n atomic.Int32 }

func (c *countIRQ) Trigger() error { c.n.Add(1); return nil }

type rig struct {
	dev          *Net
	model        *fakeModel
	rxD, txD     *queuetest.Driver
	rxQ, txQ     *queue.Queue
	rxBell       int
	txBell       int
	rxIRQ, txIRQ countIRQ
	resets       atomic.Int32 // NeedsReset calls
}

func newRig(t *testing.T, mergeable bool, features uint64) *rig {
	return newRigEventIdx(t, mergeable, features, true)
}

func newRigEventIdx(t *testing.T, mergeable bool, features uint64, eventIdx bool) *rig {
	t.Helper()
	return newRigWith(t, mergeable, features, eventIdx, Moderation{})
}

// active returns the device's activation.
// postRx has the driver post one 2 KiB receive buffer and reports whether
// it must kick for it.
func (r *rig) postRx(t *testing.T) bool {
	t.Helper()
	_, err := r.rxD.AddChain(nil, []uint32{2048})
	require.NoError(t, err)
	need, err := r.rxD.NeedsKick()
	require.NoError(t, err)
	return need
}

// receiveRefilling delivers frames one at a time into buffers the model
// holds and reaps each as the driver would, which then refills at once, as
// Linux's NAPI poll does (refill reports whether the driver must kick). It
// returns the kicks.
func (r *rig) receiveRefilling(t *testing.T, frames int, refill func() bool) (kicks int) {
	t.Helper()
	frame := make([]byte, hdrLen+100)
	for i := range frames {
		waitFor(t, fmt.Sprintf("a buffer for frame %d", i), func() bool { return r.model.posted() > 0 })
		r.model.deliver(frame)
		_, ok, err := r.rxD.PopUsed()
		require.NoError(t, err)
		require.True(t, ok, "frame %d delivered", i)
		if refill() {
			kicks++
			kick(r.rxBell)
		}
	}
	return kicks
}

func (r *rig) active() *activeState {
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	return r.dev.pair0()
}

func newRigWith(t *testing.T, mergeable bool, features uint64, eventIdx bool, mod Moderation) *rig {
	t.Helper()
	return newRigQueues(t, mergeable, features, eventIdx, mod, queuetest.Config{Size: 64}, nil, nil)
}

// newRigQueues builds a rig whose two guest queues are laid out as qc says
// (size, chunks, indirect), with rate limits rxl and txl (nil: none).
func newRigQueues(t *testing.T, mergeable bool, features uint64, eventIdx bool, mod Moderation, qc queuetest.Config, rxl, txl *ratelimit.Limiter) *rig {
	t.Helper()
	r := &rig{model: &fakeModel{caps: nic.Capabilities{Csum: true, TSO: true}}}
	var err error
	qc.EventIdx = eventIdx
	rxc, txc := qc, qc
	rxc.GPA, txc.GPA = 0x10000, 0x1000_0000
	r.rxD, err = queuetest.New(rxc)
	require.NoError(t, err)
	r.txD, err = queuetest.New(txc)
	require.NoError(t, err)
	mem, err := guestmem.FromRegions(r.rxD.Mem.Regions()[0], r.txD.Mem.Regions()[0])
	require.NoError(t, err)
	r.rxQ, r.txQ = queue.New(qc.Size), queue.New(qc.Size)
	r.rxQ.SetEventIdx(eventIdx)
	r.txQ.SetEventIdx(eventIdx)
	if eventIdx {
		features |= FeatEventIdx
	}
	if qc.Indirect {
		r.rxQ.SetIndirect(true)
		r.txQ.SetIndirect(true)
		features |= FeatIndirect
	}
	require.NoError(t, r.rxD.Configure(r.rxQ))
	require.NoError(t, r.txD.Configure(r.txQ))
	r.rxBell, _ = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	r.txBell, _ = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	t.Cleanup(func() { unix.Close(r.rxBell); unix.Close(r.txBell) })
	r.dev, err = New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, MTU: 1500, Mergeable: mergeable, Model: r.model, Moderation: mod, RxLimit: rxl, TxLimit: txl})
	require.NoError(t, err)
	if mergeable {
		features |= FeatMrgRxbuf
	}
	require.NoError(t, r.dev.Activate(pcitransport.Activation{
		Features:   features | FeatVersion1,
		Mem:        mem,
		NeedsReset: func() { r.resets.Add(1) },
		Queues: []pcitransport.ActiveQueue{
			{Index: rxIndex(0), Queue: r.rxQ, Interrupt: &r.rxIRQ, Doorbell: r.rxBell},
			{Index: txIndex(0), Queue: r.txQ, Interrupt: &r.txIRQ, Doorbell: r.txBell},
		},
	}))
	t.Cleanup(r.dev.Reset)
	return r
}

func kick(fd int) { signalFD(fd) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFeaturesFollowModelCapabilities(t *testing.T) {
	mk := func(caps nic.Capabilities, mrg bool) uint64 {
		n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Mergeable: mrg, Model: &fakeModel{caps: caps}})
		require.NoError(t, err)
		return n.Features()
	}
	f := mk(nic.Capabilities{}, false)
	require.NotZero(t, f&FeatVersion1)
	require.NotZero(t, f&FeatEventIdx)
	require.Zero(t, f&(FeatCsum|FeatGuestCsum|FeatHostTSO4|FeatGuestTSO4|FeatMrgRxbuf), "offloads are never assumed")
	f = mk(nic.Capabilities{Csum: true, TSO: true}, true)
	require.Equal(t, uint64(FeatCsum|FeatGuestCsum|FeatHostTSO4|FeatGuestTSO4|FeatMrgRxbuf),
		f&(FeatCsum|FeatGuestCsum|FeatHostTSO4|FeatGuestTSO4|FeatMrgRxbuf))

	// A model that takes offloads on transmit only (AF_XDP): the guest may
	// send partial-checksum and TSO frames, is sent none.
	const offloadBits = FeatCsum | FeatGuestCsum | FeatHostTSO4 | FeatHostTSO6 | FeatHostECN | FeatGuestTSO4 | FeatGuestTSO6 | FeatGuestECN
	f = mk(nic.Capabilities{HostCsum: true, HostTSO: true}, true)
	require.Equal(t, uint64(FeatCsum|FeatHostTSO4|FeatHostTSO6), f&offloadBits)
	f = mk(nic.Capabilities{HostTSO: true}, true)
	require.Zero(t, f&offloadBits, "TSO needs a checksum offload to go with it")
	// offloads=off: nothing offered, whatever the model can do.
	n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, NoOffloads: true, Model: &fakeModel{caps: nic.Capabilities{Csum: true, TSO: true}}})
	require.NoError(t, err)
	require.Zero(t, n.Features()&offloadBits)

	_, err = New(Config{MAC: net.HardwareAddr{1, 2}, Model: &fakeModel{}})
	require.Error(t, err)
}

func TestConfigSpace(t *testing.T) {
	n, err := New(Config{MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, MTU: 9000, Model: &fakeModel{}})
	require.NoError(t, err)
	b := make([]byte, 16)
	n.ReadConfig(0, b)
	require.Equal(t, []byte{0x52, 0x54, 0, 1, 2, 3}, b[:6])
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(b[6:]), "link up")
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(b[8:]), "one queue pair")
	require.Equal(t, uint16(9000), binary.LittleEndian.Uint16(b[10:]))
	require.Equal(t, make([]byte, 4), b[12:], "bytes past the end read 0")
	n.ReadConfig(1<<40, b[:2]) // hostile offset: no panic
}

// A frame spanning three mergeable buffers: one used entry per buffer, and
// num_buffers = 3 in the first buffer's header (§5.1.6.4).
func TestReceiveMergeable(t *testing.T) {
	r := newRig(t, true, 0)
	for i := 0; i < 8; i++ {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	waitFor(t, "buffers lent to the model", func() bool { return r.model.posted() == 8 })

	frame := make([]byte, hdrLen+5000)
	for i := hdrLen; i < len(frame); i++ {
		frame[i] = byte(i)
	}
	r.model.deliver(frame)
	var got []byte
	for i := 0; i < 3; i++ {
		u, ok, err := r.rxD.PopUsed()
		require.NoError(t, err)
		require.True(t, ok, "used entry %d", i)
		got = append(got, u.Data[:u.Len]...)
	}
	_, ok, _ := r.rxD.PopUsed()
	require.False(t, ok, "exactly three buffers used")
	require.Equal(t, uint16(3), binary.LittleEndian.Uint16(got[numBuffersOff:]))
	require.Equal(t, frame[hdrLen:], got[hdrLen:])
	require.Positive(t, r.rxIRQ.n.Load())
	require.Equal(t, uint64(1), r.dev.Stats.RxFrames.Load())
	require.Equal(t, uint64(5000), r.dev.Stats.RxBytes.Load())
}

// A model that refuses buffers (its pin cap) gets them offered again as
// frames complete: the driver made them available once and will not kick
// for them again, so the device must not wait for a kick.
func TestRefusedBuffersOfferedAgainAfterFrames(t *testing.T) {
	r := newRig(t, true, 0)
	r.model.mu.Lock()
	r.model.capN = 4
	r.model.mu.Unlock()
	for i := 0; i < 12; i++ {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell) // the only kick
	waitFor(t, "the cap's worth lent", func() bool { return r.model.posted() == 4 })
	frame := make([]byte, hdrLen+100)
	for i := 0; i < 12; i++ {
		waitFor(t, "a buffer to receive into", func() bool { return r.model.posted() > 0 })
		r.model.deliver(frame)
	}
	for i := 0; i < 12; i++ {
		_, ok, err := r.rxD.PopUsed()
		require.NoError(t, err)
		require.True(t, ok, "frame %d delivered", i)
	}
}

// A model whose cap holds fewer buffers than the kick threshold (Linux
// without mergeable buffers posts 72 KiB chains; a 1 MiB pin cap holds 14)
// is offered, per completed frame, about as many chains as it freed, not a
// whole batch it refuses again; and the driver's refills cause no kicks
// while the ring holds chains the model refused.
func TestCappedModelIsNotOfferedWhatItRefuses(t *testing.T) {
	r := newRig(t, true, 0)
	r.model.mu.Lock()
	r.model.capN = 4
	r.model.mu.Unlock()
	post := func() bool { return r.postRx(t) }
	for range 60 {
		post()
	}
	kick(r.rxBell)
	waitFor(t, "the cap's worth lent", func() bool { return r.model.posted() == 4 })
	r.model.mu.Lock()
	r.model.offered = 0
	r.model.mu.Unlock()
	const frames = 200
	kicks := r.receiveRefilling(t, frames, post)
	r.model.mu.Lock()
	offered := r.model.offered
	r.model.mu.Unlock()
	t.Logf("%d chains offered and %d kicks for %d frames", offered, kicks, frames)
	require.LessOrEqual(t, offered, 2*frames, "chains walked per frame")
	require.Less(t, kicks, frames/50, "kicks while the model is at its cap")
}

// While the model holds plenty of receive buffers the driver's refills
// cause no kicks (each would be a VM exit): completed frames pull them
// from the avail ring. When the model runs low, kicks come back on, so it
// is never left waiting for buffers nobody fetches. Both notification
// suppression schemes (§2.7.10): avail_event, and VIRTQ_USED_F_NO_NOTIFY.
func TestRefillNeedsNoKicksWhileModelHoldsPlenty(t *testing.T) {
	for _, eventIdx := range []bool{true, false} {
		t.Run(fmt.Sprintf("event_idx=%v", eventIdx), func(t *testing.T) {
			r := newRigEventIdx(t, true, 0, eventIdx)
			post := func() bool { return r.postRx(t) }
			for range 64 {
				post()
			}
			kick(r.rxBell)
			waitFor(t, "the ring lent", func() bool { return r.model.posted() == 64 })
			const frames = 2000
			kicks := r.receiveRefilling(t, frames, post)
			t.Logf("%d kicks for %d refills", kicks, frames)
			require.Less(t, kicks, frames/50)
		})
	}
}

// The other half of the contract: a model drained below the low-water mark
// with the ring empty has kicks on, and the driver's next refill reaches it.
func TestKicksBackOnWhenModelRunsLow(t *testing.T) {
	r := newRig(t, true, 0)
	for range 40 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	waitFor(t, "40 lent", func() bool { return r.model.posted() == 40 })
	frame := make([]byte, hdrLen+100)
	for range 40 { // the model holds 40 ≥ 32 (half the ring): kicks off; then it drains
		r.model.deliver(frame)
	}
	require.Zero(t, r.model.posted())
	_, err := r.rxD.AddChain(nil, []uint32{2048})
	require.NoError(t, err)
	need, err := r.rxD.NeedsKick()
	require.NoError(t, err)
	require.True(t, need, "an empty model must be kicked for the next buffer")
	kick(r.rxBell)
	waitFor(t, "the refill lent", func() bool { return r.model.posted() == 1 })
}

// A model that cannot fit a frame into what it holds (nic.Sink.RxStarved)
// gets the buffers held back from it while kicks were off, and kicks stay
// on until it completes a frame.
func TestStarvedModelGetsHeldBackBuffers(t *testing.T) {
	r := newRig(t, true, 0) // 64 entries: kicks off while the model holds ≥ 32
	post := func(n int) bool {
		for range n {
			_, err := r.rxD.AddChain(nil, []uint32{2048})
			require.NoError(t, err)
		}
		need, err := r.rxD.NeedsKick()
		require.NoError(t, err)
		return need
	}
	require.True(t, post(40))
	kick(r.rxBell)
	waitFor(t, "40 lent", func() bool { return r.model.posted() == 40 })
	require.False(t, post(5), "the model holds plenty: no kick")
	require.Equal(t, 40, r.model.posted())

	r.model.sink.RxStarved()
	require.Equal(t, 45, r.model.posted(), "the held-back buffers are lent at once")
	require.True(t, post(1), "kicks are on while the model is starved")

	r.model.deliver(make([]byte, hdrLen+60)) // it completed a frame: no longer starved
	require.False(t, post(1), "plenty again: kicks off")
}

// Without MRG_RXBUF num_buffers must still be 1 (§5.1.6.4 with VERSION_1).
func TestReceiveSingleBufferSetsNumBuffers(t *testing.T) {
	r := newRig(t, false, 0)
	_, err := r.rxD.AddChain(nil, []uint32{12, 1518})
	require.NoError(t, err)
	kick(r.rxBell)
	waitFor(t, "buffer lent", func() bool { return r.model.posted() == 1 })
	frame := append(make([]byte, hdrLen), bytes.Repeat([]byte{0xAB}, 100)...)
	frame[numBuffersOff] = 0xEE // whatever the model left there is overwritten
	r.model.deliver(frame)
	u, ok, err := r.rxD.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint32(hdrLen+100), u.Len)
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(u.Data[numBuffersOff:]))
}

// Malformed receive chains go back to the driver with length 0 and are
// counted; good ones around them still reach the model.
func TestReceiveRejectsBadChains(t *testing.T) {
	r := newRig(t, true, 0)
	_, err := r.rxD.AddChain([][]byte{{1, 2, 3}}, []uint32{2048}) // readable part: not a receive buffer
	require.NoError(t, err)
	_, err = r.rxD.AddChain(nil, []uint32{4}) // smaller than the header
	require.NoError(t, err)
	_, err = r.rxD.AddChain(nil, []uint32{2048})
	require.NoError(t, err)
	kick(r.rxBell)
	waitFor(t, "good buffer lent", func() bool { return r.model.posted() == 1 })
	// The bad ones are published after the good one is lent.
	waitFor(t, "bad chains returned", func() bool { i, _ := r.rxD.UsedIdx(); return i == 2 })
	for i := 0; i < 2; i++ {
		u, ok, err := r.rxD.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
		require.Zero(t, u.Len)
	}
	require.Equal(t, uint64(2), r.dev.Stats.RxBadChains.Load())
}

func TestTransmit(t *testing.T) {
	r := newRig(t, true, 0)
	hdr := make([]byte, hdrLen)
	payload := bytes.Repeat([]byte("govmm"), 300)
	_, err := r.txD.AddChain([][]byte{hdr, payload[:700], payload[700:]}, nil)
	require.NoError(t, err)
	_, err = r.txD.AddChain([][]byte{{1, 2}}, nil) // shorter than the header: dropped, returned
	require.NoError(t, err)
	kick(r.txBell)
	waitFor(t, "tx used", func() bool { i, _ := r.txD.UsedIdx(); return i == 2 })
	r.model.mu.Lock()
	require.Len(t, r.model.sent, 1)
	require.Equal(t, append(hdr, payload...), r.model.sent[0])
	r.model.mu.Unlock()
	require.Equal(t, uint64(1), r.dev.Stats.TxFrames.Load())
	require.Equal(t, uint64(len(payload)), r.dev.Stats.TxBytes.Load())
	require.Equal(t, uint64(1), r.dev.Stats.TxBadChains.Load())
	// The completion interrupt is deferred (resolveTxInterrupt), not lost.
	waitFor(t, "tx interrupt", func() bool { return r.txIRQ.n.Load() > 0 })
}

// After draining the transmit ring the device keeps the driver's kicks off
// for txLinger and looks again: frames the guest adds meanwhile go out
// without a kick (a VM exit each). A look that finds nothing turns kicks
// back on, so an idle device is always woken.
func TestTransmitLingersWithKicksOff(t *testing.T) {
	for _, eventIdx := range []bool{true, false} {
		t.Run(fmt.Sprintf("event_idx=%v", eventIdx), func(t *testing.T) {
			r := newRigEventIdx(t, true, 0, eventIdx)
			r.dev.mu.Lock()
			st := r.dev.pair0()
			r.dev.mu.Unlock()
			// The test plays the tx worker: stop the real one (Reset still
			// cleans up after it).
			signalFD(st.stopFD)
			st.wg.Wait()
			send := func() bool { return r.sendFrame(t) }
			require.True(t, send(), "an idle device must be kicked")
			require.Equal(t, txLinger, st.processTx(), "sent, kicks left off")
			require.False(t, send(), "no kick while the device lingers")
			require.False(t, send())
			require.Equal(t, txLinger, st.processTx(), "the frames added meanwhile are sent")
			require.Zero(t, st.processTx(), "nothing new: kicks back on")
			require.True(t, send(), "idle again: the next frame kicks")
			r.model.mu.Lock()
			require.Len(t, r.model.sent, 3)
			r.model.mu.Unlock()
			idx, err := r.txD.UsedIdx()
			require.NoError(t, err)
			require.Equal(t, uint16(3), idx)
		})
	}
}

// A completion interrupt is deferred to the tx worker's next round: if the
// guest reaped the completions meanwhile and re-armed used_event past them
// (Linux's start_xmit does), it is not sent; if not, it is.
func TestTransmitInterruptDeferredAndDropped(t *testing.T) {
	r := newRig(t, true, 0)
	r.dev.mu.Lock()
	st := r.dev.pair0()
	r.dev.mu.Unlock()
	signalFD(st.stopFD) // the test plays the tx worker
	st.wg.Wait()
	send := func() {
		_, err := r.txD.AddChain([][]byte{make([]byte, hdrLen), []byte("frame")}, nil)
		require.NoError(t, err)
	}
	send()
	require.Equal(t, txLinger, st.processTx())
	require.Zero(t, r.txIRQ.n.Load(), "deferred, not sent at once")

	_, ok, err := r.txD.PopUsed() // the guest's next start_xmit reaps it...
	require.NoError(t, err)
	require.True(t, ok)
	idx, err := r.txD.UsedIdx()
	require.NoError(t, err)
	require.NoError(t, r.txD.SetUsedEvent(idx)) // ...re-arms for the next completion...
	send()                                      // ...and sends another frame
	require.Equal(t, txLinger, st.processTx())
	require.Zero(t, r.txIRQ.n.Load(), "the guest reaped the first completion itself")

	// Nobody reaps the second one: its interrupt goes out on the next round.
	require.Zero(t, st.processTx())
	require.Equal(t, int32(1), r.txIRQ.n.Load())
}

func TestResetStopsModelAndWorkers(t *testing.T) {
	r := newRig(t, true, 0)
	r.dev.Reset()
	require.True(t, r.model.stop.Load())
	r.dev.Reset() // idempotent
}

func TestActivateNeedsBothQueues(t *testing.T) {
	n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Model: &fakeModel{}})
	require.NoError(t, err)
	require.Error(t, n.Activate(pcitransport.Activation{Features: FeatVersion1}))
}

func TestFeatureString(t *testing.T) {
	require.Equal(t, "MAC,MRG_RXBUF,VERSION_1", FeatureString(FeatMAC|FeatMrgRxbuf|FeatVersion1))
}

// The state dump shows the device's and the driver's view of the rx ring
// and what is lent to the model, so a stalled network can be told apart
// from a driver that stopped posting.
func TestDebugState(t *testing.T) {
	dev, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Model: &fakeModel{}})
	require.NoError(t, err)
	require.Equal(t, "not active (no driver)", dev.DebugState())

	r := newRig(t, true, 0)
	for i := 0; i < 5; i++ {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	waitFor(t, "buffers lent to the model", func() bool { return r.model.posted() == 5 })
	s := r.dev.DebugState()
	require.Contains(t, s, "rx: next_avail=5 next_used=0 in_flight=5 size=64 avail.idx=5 used.idx=0")
	require.Contains(t, s, "avail_event=5") // re-armed after draining the ring
	require.Contains(t, s, "lent to the model 5")
	require.Contains(t, s, "tx: size=64 avail.idx=0 used.idx=0")
	require.Contains(t, s, "interrupts sent 0")

	r.model.deliver(make([]byte, hdrLen+60)) // used_event is 0: this one interrupts
	require.Contains(t, r.dev.DebugState(), "rx: next_avail=5 next_used=1")
	require.Contains(t, r.dev.DebugState(), "interrupts sent 1")
	require.Equal(t, int32(1), r.rxIRQ.n.Load())
}

// A model that completes transmits later, from its own goroutine, must
// still get the used entries published: only completions reported from
// inside Transmit skip waking the tx worker.
func TestTransmitCompletedAsynchronously(t *testing.T) {
	r := newRig(t, true, 0)
	r.model.mu.Lock()
	r.model.deferTx = true
	r.model.mu.Unlock()
	for i := 0; i < 3; i++ {
		_, err := r.txD.AddChain([][]byte{make([]byte, hdrLen), make([]byte, 100)}, nil)
		require.NoError(t, err)
	}
	kick(r.txBell)
	waitFor(t, "frames handed to the model", func() bool {
		r.model.mu.Lock()
		defer r.model.mu.Unlock()
		return len(r.model.pendingTx) == 3
	})
	time.Sleep(20 * time.Millisecond)
	i, _ := r.txD.UsedIdx()
	require.Zero(t, i, "nothing is used before the model completes")
	r.model.finishTx()
	waitFor(t, "tx used after the asynchronous completion", func() bool { i, _ := r.txD.UsedIdx(); return i == 3 })
}

// pair0 is the first pair's activation, nil when the device is not active
// (call with n.mu held).
func (n *Net) pair0() *activeState {
	if len(n.active) == 0 {
		return nil
	}
	return n.active[0]
}
