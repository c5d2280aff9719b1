package virtionet

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// heapBound is the most host heap a guest may make virtio-net hold by
// filling both rings with the largest chains it can build (the threat
// model's "host memory stays flat").
const heapBound = 4 << 20

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fillHostile makes every head of d's ring an indirect chain of n
// descriptors, all sharing one table (as a hostile driver may), writable
// for a receive ring, readable for a transmit ring. Each descriptor is one
// byte: the chain is as long as it can be for the memory it names.
func fillHostile(t *testing.T, d *queuetest.Driver, n int, writable bool) {
	t.Helper()
	buf, err := d.Alloc()
	require.NoError(t, err)
	tbl, err := d.Alloc()
	require.NoError(t, err)
	flags := uint16(queue.DescFNext)
	if writable {
		flags |= queue.DescFWrite
	}
	descs := make([]queuetest.Desc, n)
	for i := range descs {
		descs[i] = queuetest.Desc{Addr: buf + uint64(i%int(d.ChunkSize)), Len: 1, Flags: flags, Next: uint16(i + 1)}
	}
	descs[0].Len = hdrLen // a receive buffer holds the header; a frame starts with it
	descs[n-1].Flags &^= queue.DescFNext
	require.NoError(t, d.WriteTable(tbl, descs))
	for head := range d.Size {
		require.NoError(t, d.WriteDesc(head, queuetest.Desc{Addr: tbl, Len: uint32(n) * queue.DescSize, Flags: queue.DescFIndirect}))
		require.NoError(t, d.PushAvail(head))
	}
}

// TestHostileChainsKeepHostMemoryFlat fills both 256-entry rings with
// indirect chains, first of the largest size the queue format allows
// (65,536 descriptors), then of the largest virtio-net accepts
// (maxChainDescs), under a model that holds only 8 receive buffers (a pin
// cap), and checks that the host heap stays within heapBound while the
// device walks, refuses, lends and re-pulls them, and that traffic still
// flows afterwards.
func TestHostileChainsKeepHostMemoryFlat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		descs int
		bad   bool // the device returns them as bad chains
	}{
		{"65536-descriptor chains", queue.MaxIndirectDescs, true},
		{"chains at virtio-net's cap", maxChainDescs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigQueues(t, true, 0, true, Moderation{}, queuetest.Config{
				Size: 256, Indirect: true, ChunkSize: queue.MaxIndirectDescs * queue.DescSize, Chunks: 6}, nil, nil)
			r.model.mu.Lock()
			r.model.capN = 8
			r.model.mu.Unlock()
			before := heapInUse()

			fillHostile(t, r.rxD, tc.descs, true)
			fillHostile(t, r.txD, tc.descs, false)
			kick(r.rxBell)
			kick(r.txBell)
			if tc.bad {
				waitFor(t, "every hostile chain returned as bad", func() bool {
					return r.dev.Stats.RxBadChains.Load() == 256 && r.dev.Stats.TxBadChains.Load() == 256
				})
			} else {
				waitFor(t, "every transmit chain sent", func() bool { return r.dev.Stats.TxFrames.Load() == 256 })
				waitFor(t, "the model's cap lent", func() bool { return r.model.posted() == 8 })
				// Frames complete buffers; each completion re-pulls from the
				// ring, which holds 248 chains the model refused.
				frame := make([]byte, hdrLen+maxChainDescs-1)
				for range 64 {
					waitFor(t, "a buffer to receive into", func() bool { return r.model.posted() > 0 })
					r.model.deliver(frame)
				}
			}
			grew := int64(heapInUse()) - int64(before)
			t.Logf("host heap grew by %d KiB", grew>>10)
			require.Less(t, grew, int64(heapBound), "host heap grew by %d KiB", grew>>10)

			// Traffic still flows: an ordinary buffer and frame after them.
			rxBuf, err := r.rxD.Alloc()
			require.NoError(t, err)
			require.NoError(t, r.rxD.WriteDesc(0, queuetest.Desc{Addr: rxBuf, Len: 2048, Flags: queue.DescFWrite}))
			require.NoError(t, r.rxD.PushAvail(0))
			kick(r.rxBell)
			rxBefore := r.dev.Stats.RxFrames.Load()
			waitFor(t, "the ordinary buffer lent", func() bool { return r.model.posted() > 0 })
			r.model.deliver(make([]byte, hdrLen+60))
			require.Equal(t, rxBefore+1, r.dev.Stats.RxFrames.Load())
			txBuf, err := r.txD.Alloc()
			require.NoError(t, err)
			require.NoError(t, r.txD.WriteDesc(0, queuetest.Desc{Addr: txBuf, Len: hdrLen + 60}))
			require.NoError(t, r.txD.PushAvail(0))
			txBefore := r.dev.Stats.TxFrames.Load()
			kick(r.txBell)
			waitFor(t, "the ordinary frame sent", func() bool { return r.dev.Stats.TxFrames.Load() == txBefore+1 })
		})
	}
}

// TestBrokenQueueAsksForReset: a driver that breaks a ring (an avail idx
// further ahead than the ring holds) gets DEVICE_NEEDS_RESET once per
// queue, however many kicks and frames follow, and the device counts it.
func TestBrokenQueueAsksForReset(t *testing.T) {
	r := newRig(t, true, 0)
	for range 4 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	waitFor(t, "buffers lent", func() bool { return r.model.posted() == 4 })
	require.NoError(t, r.txD.SetAvailIdx(r.txD.AvailIdx()+1000))
	for range 5 {
		kick(r.txBell)
	}
	waitFor(t, "the transmit queue reported broken", func() bool { return r.resets.Load() == 1 })
	require.NoError(t, r.rxD.SetAvailIdx(r.rxD.AvailIdx()+1000))
	for range 3 { // frames complete buffers on a broken ring; pulls hit the bad idx
		r.model.deliver(make([]byte, hdrLen+60))
		kick(r.rxBell)
	}
	waitFor(t, "the receive queue reported broken", func() bool { return r.resets.Load() == 2 })
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, int32(2), r.resets.Load(), "once per queue")
	require.Equal(t, uint64(2), r.dev.Stats.BrokenQueues.Load())
}

// TestDoorbellStormCostsBoundedLooks: a guest ringing the transmit
// doorbell in a loop with nothing behind it gets at most spuriousBudget
// looks per spuriousWindow (without the guard: one per kick, as fast as
// the kicks come), and a frame it adds afterwards still goes out.
func TestDoorbellStormCostsBoundedLooks(t *testing.T) {
	r := newRig(t, true, 0)
	const storm = 300 * time.Millisecond
	start := time.Now()
	kicks := 0
	for time.Since(start) < storm {
		for range 100 {
			kick(r.txBell)
		}
		kicks += 100
		time.Sleep(10 * time.Microsecond) // let the worker run: kicks must not just pile up in the counter
	}
	elapsed := time.Since(start)
	time.Sleep(2 * spuriousWindow)
	looks := r.dev.Stats.SpuriousKicks.Load()
	bound := uint64(spuriousBudget * (int(elapsed/spuriousWindow) + 3))
	t.Logf("%d kicks in %v: %d spurious looks (bound %d), %d throttles", kicks, elapsed.Round(time.Millisecond), looks, bound, r.dev.Stats.KickThrottles.Load())
	require.LessOrEqual(t, looks, bound)
	require.Positive(t, r.dev.Stats.KickThrottles.Load(), "the storm met the guard")

	_, err := r.txD.AddChain([][]byte{make([]byte, hdrLen), []byte("after the storm")}, nil)
	require.NoError(t, err)
	kick(r.txBell)
	waitFor(t, "a real frame after the storm", func() bool { return r.dev.Stats.TxFrames.Load() == 1 })
}
