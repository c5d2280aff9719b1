package virtionet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// Transmit over the limit: the frames past the bucket stay in the guest's
// ring (not in the host) until it refills, then all go.
func TestTransmitRateLimit(t *testing.T) {
	txl := &ratelimit.Limiter{Ops: ratelimit.Bucket{Size: 4, RefillTime: 200 * time.Millisecond}}
	r := newRigQueues(t, true, 0, true, Moderation{}, queuetest.Config{Size: 64}, nil, txl)
	for range 12 {
		_, err := r.txD.AddChain([][]byte{make([]byte, hdrLen), []byte("frame")}, nil)
		require.NoError(t, err)
	}
	kick(r.txBell)
	waitFor(t, "the bucket's worth sent", func() bool { return r.dev.Stats.TxFrames.Load() >= 4 })
	require.Less(t, r.dev.Stats.TxFrames.Load(), uint64(12), "the rest wait for the bucket")
	waitFor(t, "every frame sent once the bucket refilled", func() bool { return r.dev.Stats.TxFrames.Load() == 12 })
	require.Len(t, r.model.sentFrames(), 12)
}

// Receive over the limit: once what landed puts the bucket in debt, no
// buffer is lent (kicks or not) until it refills; then lending resumes.
func TestReceiveRateLimit(t *testing.T) {
	rxl := &ratelimit.Limiter{Bytes: ratelimit.Bucket{Size: 1000, RefillTime: 200 * time.Millisecond}}
	r := newRigQueues(t, true, 0, true, Moderation{}, queuetest.Config{Size: 64}, rxl, nil)
	for range 4 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	waitFor(t, "buffers lent", func() bool { return r.model.posted() == 4 })
	r.model.deliver(make([]byte, hdrLen+1500)) // 500 bytes of debt
	for range 8 {
		_, err := r.rxD.AddChain(nil, []uint32{2048})
		require.NoError(t, err)
	}
	kick(r.rxBell)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 3, r.model.posted(), "nothing lent while in debt")
	waitFor(t, "lending resumed after the refill", func() bool { return r.model.posted() == 11 })
}

func (f *fakeModel) sentFrames() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.sent...)
}
