package queue_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// indirectChain makes head 0 an indirect chain of n one-byte writable
// descriptors (every seventh of zero length: they count too).
func indirectChain(t *testing.T, n int) (*queuetest.Driver, *queue.Queue) {
	t.Helper()
	d, err := queuetest.New(queuetest.Config{Size: 16, Indirect: true, ChunkSize: queue.MaxIndirectDescs * queue.DescSize, Chunks: 3})
	require.NoError(t, err)
	q := queue.New(16)
	q.SetIndirect(true)
	require.NoError(t, d.Configure(q))
	buf, err := d.Alloc()
	require.NoError(t, err)
	tbl, err := d.Alloc()
	require.NoError(t, err)
	descs := make([]queuetest.Desc, n)
	for i := range descs {
		descs[i] = queuetest.Desc{Addr: buf + uint64(i), Len: 1, Flags: queue.DescFWrite | queue.DescFNext, Next: uint16(i + 1)}
		if i%7 == 6 {
			descs[i].Len = 0
		}
	}
	descs[n-1].Flags &^= queue.DescFNext
	require.NoError(t, d.WriteTable(tbl, descs))
	require.NoError(t, d.WriteDesc(0, queuetest.Desc{Addr: tbl, Len: uint32(n) * queue.DescSize, Flags: queue.DescFIndirect}))
	require.NoError(t, d.PushAvail(0))
	return d, q
}

func TestChainDescriptorCap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		descs int
		cap   int // 0: the default
		ok    bool
	}{
		{"at the default cap", queue.DefaultMaxChainDescs, 0, true},
		{"one past the default cap", queue.DefaultMaxChainDescs + 1, 0, false},
		{"a maximal indirect table", queue.MaxIndirectDescs, 0, false},
		{"at a device's cap", 64, 64, true},
		{"past a device's cap", 65, 64, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, q := indirectChain(t, tc.descs)
			if tc.cap > 0 {
				q.SetMaxChainDescs(tc.cap)
				q.Reset() // the cap is the device's, not the driver's: it survives a reset
				require.NoError(t, d.Configure(q))
				q.SetIndirect(true)
			}
			var c queue.Chain
			ok, err := q.PopInto(d.Mem, &c)
			if tc.ok {
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, tc.descs-tc.descs/7, len(c.Writable), "zero-length descriptors carry no segment")
				return
			}
			var ce *queue.ChainError
			require.True(t, errors.As(err, &ce), "err = %v", err)
			require.ErrorIs(t, err, queue.ErrChainTooManyDescs)
			require.Equal(t, uint16(0), ce.Head)
			require.LessOrEqual(t, cap(c.Writable), max(tc.cap, queue.DefaultMaxChainDescs)*2, "the walk stopped at the cap")
			require.NoError(t, q.PutUsed(d.Mem, ce.Head, 0), "the chain goes back to the driver")
		})
	}
}

// A reused Chain does not keep a large segment array past the next pop.
func TestChainDropsLargeSegmentArrays(t *testing.T) {
	d, q := indirectChain(t, 1000)
	var c queue.Chain
	ok, err := q.PopInto(d.Mem, &c)
	require.NoError(t, err)
	require.True(t, ok)
	require.GreaterOrEqual(t, cap(c.Writable), 800)
	require.NoError(t, q.PutUsed(d.Mem, c.Head, 0))
	buf, err := d.Alloc()
	require.NoError(t, err)
	require.NoError(t, d.WriteDesc(1, queuetest.Desc{Addr: buf, Len: 8, Flags: queue.DescFWrite}))
	require.NoError(t, d.PushAvail(1))
	ok, err = q.PopInto(d.Mem, &c)
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, c.Writable, 1)
	require.LessOrEqual(t, cap(c.Writable), 64)
}
