package queue_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// TestMalformedChains builds each per-chain violation with raw descriptors
// and checks that Pop reports it as a *ChainError naming the head, that the
// queue stays usable, and that the chain can be returned with length 0.
func TestMalformedChains(t *testing.T) {
	const (
		N = queue.DescFNext
		W = queue.DescFWrite
		I = queue.DescFIndirect
	)
	type D = queuetest.Desc
	// buf and tbl are filled in per test from the driver's chunks.
	cases := []struct {
		name     string
		indirect bool
		descs    func(buf, tbl uint64) []D // ring descriptors 0..
		table    func(buf uint64) []D      // indirect table at tbl
		want     error
	}{
		{"next out of range", false, func(b, _ uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: N, Next: 8}}
		}, nil, queue.ErrNextOutOfRange},
		{"self loop", false, func(b, _ uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: N, Next: 0}}
		}, nil, queue.ErrChainTooLong},
		{"two-descriptor loop", false, func(b, _ uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: N, Next: 1}, {Addr: b, Len: 1, Flags: N, Next: 0}}
		}, nil, queue.ErrChainTooLong},
		{"loop of zero-length descriptors", false, func(b, _ uint64) []D {
			return []D{{Flags: N, Next: 1}, {Flags: N, Next: 0}}
		}, nil, queue.ErrChainTooLong},
		{"longer than queue", false, func(b, _ uint64) []D {
			ds := make([]D, 8)
			for i := range ds {
				ds[i] = D{Addr: b, Len: 1, Flags: N, Next: uint16(i + 1)}
			}
			ds[7].Next = 0 // revisits the head: 9th descriptor
			return ds
		}, nil, queue.ErrChainTooLong},
		{"addr below RAM", false, func(b, _ uint64) []D {
			return []D{{Addr: 0x100, Len: 1}}
		}, nil, queue.ErrDescOutOfRange},
		{"len past end of RAM", false, func(b, _ uint64) []D {
			return []D{{Addr: b, Len: 0xffffffff}}
		}, nil, queue.ErrDescOutOfRange},
		{"addr+len wraps", false, func(b, _ uint64) []D {
			return []D{{Addr: ^uint64(0) - 4, Len: 16, Flags: W}}
		}, nil, queue.ErrDescOutOfRange},
		{"readable after writable", false, func(b, _ uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: N | W, Next: 1}, {Addr: b, Len: 1}}
		}, nil, queue.ErrReadableAfterWritable},
		{"indirect not negotiated", false, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 16, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 1}} }, queue.ErrIndirectNotNegotiated},
		{"indirect with next", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 16, Flags: I | N, Next: 1}, {Addr: b, Len: 1}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 1}} }, queue.ErrIndirectWithNext},
		{"indirect zero length", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 0, Flags: I}}
		}, nil, queue.ErrIndirectTable},
		{"indirect length not multiple of 16", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 24, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 1}, {Addr: b, Len: 1}} }, queue.ErrIndirectTable},
		{"indirect table too large", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: (queue.MaxIndirectDescs + 1) * 16, Flags: I}}
		}, nil, queue.ErrIndirectTable},
		{"indirect table wraps", true, func(b, tbl uint64) []D {
			return []D{{Addr: ^uint64(0) - 15, Len: 32, Flags: I}}
		}, nil, queue.ErrIndirectTable},
		{"indirect table outside RAM", true, func(b, tbl uint64) []D {
			return []D{{Addr: 0x100, Len: 32, Flags: I}}
		}, nil, queue.ErrDescOutOfRange},
		{"nested indirect", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 16, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 16, Flags: I}} }, queue.ErrNestedIndirect},
		{"indirect next out of table", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 32, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 1, Flags: N, Next: 2}, {Addr: b, Len: 1}} }, queue.ErrNextOutOfRange},
		{"indirect loop", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 32, Flags: I}}
		}, func(b uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: N, Next: 1}, {Addr: b, Len: 1, Flags: N, Next: 0}}
		}, queue.ErrChainTooLong},
		{"indirect readable after writable", true, func(b, tbl uint64) []D {
			return []D{{Addr: b, Len: 1, Flags: W | N, Next: 1}, {Addr: tbl, Len: 16, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: b, Len: 1}} }, queue.ErrReadableAfterWritable},
		{"indirect buffer outside RAM", true, func(b, tbl uint64) []D {
			return []D{{Addr: tbl, Len: 16, Flags: I}}
		}, func(b uint64) []D { return []D{{Addr: 1 << 40, Len: 1, Flags: W}} }, queue.ErrDescOutOfRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, d := setup(t, queuetest.Config{Size: 8, Indirect: tc.indirect})
			buf, err := d.Alloc()
			require.NoError(t, err)
			tbl, err := d.Alloc()
			require.NoError(t, err)
			if tc.table != nil {
				require.NoError(t, d.WriteTable(tbl, tc.table(buf)))
			}
			for i, desc := range tc.descs(buf, tbl) {
				require.NoError(t, d.WriteDesc(uint16(i), desc))
			}
			require.NoError(t, d.PushAvail(0))

			c, err := q.Pop(d.Mem)
			require.Nil(t, c)
			require.ErrorIs(t, err, queue.ErrInvalidChain)
			require.NotErrorIs(t, err, queue.ErrQueueBroken)
			require.ErrorIs(t, err, tc.want)
			var ce *queue.ChainError
			require.ErrorAs(t, err, &ce)
			require.Zero(t, ce.Head)

			// The chain was consumed and can be returned; the queue works on.
			require.EqualValues(t, 1, q.InFlight())
			require.NoError(t, q.AddUsed(d.Mem, ce.Head, 0))
			u, ok, err := d.PopUsed()
			require.NoError(t, err)
			require.True(t, ok)
			require.Zero(t, u.ID)
			require.Zero(t, u.Len)
			require.NoError(t, d.WriteDesc(0, queuetest.Desc{Addr: buf, Len: 3}))
			require.NoError(t, d.PushAvail(0))
			c, err = q.Pop(d.Mem)
			require.NoError(t, err)
			require.EqualValues(t, 3, c.ReadableLen())
		})
	}
}

// TestChainTooBig: §2.7.5.2 limits a chain to 2^32 bytes in total. Needs a
// RAM region large enough that each descriptor is individually valid.
func TestChainTooBig(t *testing.T) {
	// 17 descriptors of 256 MiB each, all naming the same (never touched)
	// buffer: each is valid on its own, the total is 4.25 GiB.
	const chunk = 1 << 28
	d, err := queuetest.New(queuetest.Config{Size: 32, ChunkSize: chunk, Chunks: 1})
	require.NoError(t, err)
	q := queue.New(32)
	require.NoError(t, d.Configure(q))
	big, err := d.Alloc()
	require.NoError(t, err)
	for i := range 16 {
		require.NoError(t, d.WriteDesc(uint16(i), queuetest.Desc{Addr: big, Len: chunk, Flags: queue.DescFNext, Next: uint16(i + 1)}))
	}
	require.NoError(t, d.WriteDesc(16, queuetest.Desc{Addr: big, Len: chunk}))
	require.NoError(t, d.PushAvail(0))
	_, err = q.Pop(d.Mem)
	require.ErrorIs(t, err, queue.ErrChainTooBig)
}

// TestFatalRingErrors: ring-level violations are latched until Reset.
func TestFatalRingErrors(t *testing.T) {
	t.Run("avail idx jump", func(t *testing.T) {
		q, d := setup(t, queuetest.Config{Size: 8})
		require.NoError(t, d.SetAvailIdx(9))
		_, err := q.Pop(d.Mem)
		require.ErrorIs(t, err, queue.ErrQueueBroken)
		require.ErrorIs(t, err, queue.ErrAvailIdxJump)
		require.NotErrorIs(t, err, queue.ErrInvalidChain)

		// Latched, even after the driver "fixes" the idx.
		require.NoError(t, d.SetAvailIdx(0))
		_, err = q.Pop(d.Mem)
		require.ErrorIs(t, err, queue.ErrQueueBroken)
		_, err = q.NeedsNotification(d.Mem)
		require.ErrorIs(t, err, queue.ErrQueueBroken)
		require.ErrorIs(t, q.AddUsed(d.Mem, 0, 0), queue.ErrQueueBroken)

		q.Reset()
		require.NoError(t, d.Configure(q))
		c, err := q.Pop(d.Mem)
		require.NoError(t, err)
		require.Nil(t, c)
	})
	t.Run("avail idx exactly size ahead is fine", func(t *testing.T) {
		q, d := setup(t, queuetest.Config{Size: 8})
		for i := range 8 {
			require.NoError(t, d.WriteDesc(uint16(i), queuetest.Desc{}))
		}
		require.NoError(t, d.SetAvailIdx(8))
		for range 8 {
			_, err := q.Pop(d.Mem)
			require.NoError(t, err)
		}
	})
	t.Run("avail idx moves backwards", func(t *testing.T) {
		q, d := setup(t, queuetest.Config{Size: 8})
		require.NoError(t, d.SetAvailIdx(0xffff))
		_, err := q.Pop(d.Mem)
		require.ErrorIs(t, err, queue.ErrAvailIdxJump)
	})
	t.Run("head out of range", func(t *testing.T) {
		q, d := setup(t, queuetest.Config{Size: 8})
		require.NoError(t, d.PushAvail(8))
		_, err := q.Pop(d.Mem)
		require.ErrorIs(t, err, queue.ErrQueueBroken)
		require.ErrorIs(t, err, queue.ErrHeadOutOfRange)
		require.Zero(t, q.InFlight())
	})
	t.Run("jump detected by EnableNotification", func(t *testing.T) {
		q, d := setup(t, queuetest.Config{Size: 8, EventIdx: true})
		require.NoError(t, d.SetAvailIdx(100))
		_, err := q.EnableNotification(d.Mem)
		require.ErrorIs(t, err, queue.ErrAvailIdxJump)
	})
}
