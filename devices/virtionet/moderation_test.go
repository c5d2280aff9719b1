package virtionet

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

// The polling window follows the guest's gaps: a steady sender (a batch
// every 1 ms) is caught by looks from its second gap on, never waiting
// more than txLookMax; an idle guest costs a few looks and then kicks are
// back on.
func TestTxPollerFollowsGaps(t *testing.T) {
	p := newTxPoller(2*time.Millisecond, txLinger)
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	poll := func(from time.Duration, until time.Duration) (time.Duration, int) {
		now, looks := from, 0
		for {
			next := p.idle(at(now))
			if next == 0 || now+next > until {
				return now + next, looks
			}
			now += next
			looks++
			require.LessOrEqual(t, next, txLookMax)
		}
	}
	require.Equal(t, txLinger, p.sent(at(0)))
	// First gap of 1 ms: the initial window (200 µs) runs out, kicks on.
	_, looks := poll(txLinger, time.Second)
	require.LessOrEqual(t, looks, 4)
	// The kick brings the next batch at 1 ms: the window widens to 2 ms.
	p.sent(at(time.Millisecond))
	require.Equal(t, 2*time.Millisecond, p.window)
	// Now the next batch, 1 ms later, is found by a look while kicks are off.
	last, _ := poll(time.Millisecond+txLinger, 2*time.Millisecond)
	require.NotZero(t, p.idle(at(last)), "still inside the window at 2 ms")
	// An idle guest: the window runs out after a bounded number of looks.
	end, looks := poll(2*time.Millisecond, time.Hour)
	require.Less(t, end, time.Hour, "kicks come back on")
	require.LessOrEqual(t, looks, 12, "looks before kicks come back on")
	require.Equal(t, time.Millisecond, p.window, "an empty window halves it")

	off := newTxPoller(0, txLinger)
	off.sent(at(0))
	require.Zero(t, off.idle(at(txLinger)), "TxPoll 0: one look, then kicks")
}

// With TxPoll the worker leaves kicks off while it polls: frames the guest
// adds within the window need no kick, and once the window passes with
// nothing found kicks are on again.
func TestTransmitPollsWithKicksOff(t *testing.T) {
	r := newRigWith(t, true, 0, true, Moderation{TxPoll: 5 * time.Millisecond})
	st := r.active()
	signalFD(st.stopFD) // the test plays the tx worker
	st.wg.Wait()
	send := func() bool { return r.sendFrame(t) }
	require.True(t, send(), "an idle device must be kicked")
	require.Equal(t, txLinger, st.processTx())
	require.False(t, send(), "no kick while polling")
	require.Equal(t, txLinger, st.processTx(), "found by the look")
	start, looks := time.Now(), 0
	for st.processTx() != 0 {
		looks++
		require.Less(t, time.Since(start), time.Second, "polling never ends")
	}
	require.Positive(t, looks)
	require.True(t, send(), "idle: kicks are back on")
}

// A batch of frames is one used-ring publish and at most one interrupt.
func TestReceiveBatchOneInterrupt(t *testing.T) {
	r := newRig(t, true, 0)
	for range 8 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	_, err := r.rxD.EnableInterrupts()
	require.NoError(t, err)
	kick(r.rxBell)
	waitFor(t, "buffers lent", func() bool { return r.model.posted() == 8 })
	frame := make([]byte, hdrLen+100)
	r.model.deliverBatch(frame, frame, frame, frame, frame)
	require.Equal(t, int32(1), r.rxIRQ.n.Load())
	for i := range 5 {
		u, ok, err := r.rxD.PopUsed()
		require.NoError(t, err)
		require.True(t, ok, "frame %d", i)
		require.Equal(t, uint16(1), binary.LittleEndian.Uint16(u.Data[numBuffersOff:]))
	}
	require.Equal(t, uint64(5), r.dev.Stats.RxFrames.Load())
	require.Equal(t, uint64(1), r.dev.Stats.RxBatches.Load())
	require.Equal(t, uint64(500), r.dev.Stats.RxBytes.Load())
}

// With RxCoalesce an interrupt that would follow the previous one within
// the gap is deferred to its end and then sent once for every frame
// published meanwhile; if the driver reaped them and re-armed used_event
// past them by then, it is not sent at all. The first interrupt after a
// quiet gap is never delayed.
func TestReceiveInterruptCoalesced(t *testing.T) {
	const gap = 50 * time.Millisecond
	r := newRigWith(t, true, 0, true, Moderation{RxCoalesce: gap})
	for range 16 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	_, err := r.rxD.EnableInterrupts()
	require.NoError(t, err)
	kick(r.rxBell)
	waitFor(t, "buffers lent", func() bool { return r.model.posted() == 16 })
	frame := make([]byte, hdrLen+100)
	rearm := func() { // the driver's NAPI poll: reap, then re-arm used_event
		for {
			_, ok, err := r.rxD.PopUsed()
			require.NoError(t, err)
			if !ok {
				break
			}
		}
		_, err := r.rxD.EnableInterrupts()
		require.NoError(t, err)
	}

	start := time.Now()
	r.model.deliver(frame)
	require.Equal(t, int32(1), r.rxIRQ.n.Load(), "the first interrupt goes at once")
	rearm()
	r.model.deliver(frame)
	r.model.deliver(frame)
	if time.Since(start) < gap/2 {
		require.Equal(t, int32(1), r.rxIRQ.n.Load(), "within the gap: deferred")
	}
	waitFor(t, "the deferred interrupt", func() bool { return r.rxIRQ.n.Load() == 2 })
	require.GreaterOrEqual(t, time.Since(start), gap)
	rearm()

	// Deferred again, but the driver reaps the frame (busy polling) before
	// the gap ends: no interrupt is owed any more.
	r.model.deliver(frame)
	rearm()
	time.Sleep(2 * gap)
	require.Equal(t, int32(2), r.rxIRQ.n.Load(), "reaped before the deferral ended")

	// After a quiet gap the next interrupt is immediate again.
	r.model.deliver(frame)
	require.Equal(t, int32(3), r.rxIRQ.n.Load())
}

func TestModerationDefaults(t *testing.T) {
	n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Model: &fakeModel{caps: nic.Capabilities{}}, Moderation: DefaultModeration})
	require.NoError(t, err)
	require.LessOrEqual(t, n.cfg.Moderation.TxPoll, MaxModeration)
}

// With NoTxLinger the worker neither waits nor defers: a round sends the
// frames, publishes their completions with their interrupt, and turns
// kicks back on, as QEMU's transmit does.
func TestTransmitWithoutLinger(t *testing.T) {
	r := newRigWith(t, true, 0, true, Moderation{TxLinger: NoTxLinger})
	st := r.active()
	signalFD(st.stopFD) // the test plays the tx worker
	st.wg.Wait()
	send := func() bool { return r.sendFrame(t) }
	require.True(t, send())
	require.Zero(t, st.processTx(), "no look to come back for")
	require.Equal(t, int32(1), r.txIRQ.n.Load(), "the completion interrupt went out with it")
	require.True(t, send(), "kicks are back on")
	require.Zero(t, st.processTx())
	idx, err := r.txD.UsedIdx()
	require.NoError(t, err)
	require.Equal(t, uint16(2), idx)
}

// sendFrame is the driver adding one transmit frame; it reports whether
// the driver must kick the device for it.
func (r *rig) sendFrame(t *testing.T) bool {
	t.Helper()
	_, err := r.txD.AddChain([][]byte{make([]byte, hdrLen), []byte("frame")}, nil)
	require.NoError(t, err)
	need, err := r.txD.NeedsKick()
	require.NoError(t, err)
	return need
}
