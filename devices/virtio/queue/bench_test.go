package queue_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// BenchmarkPopAddUsed measures the device side per chain in steady state:
// the avail ring and descriptors are written once (two-descriptor chains,
// 64-byte readable header + 1500-byte writable buffer, or the same through
// an indirect table) and the "driver" only advances the avail idx. One op =
// one chain popped and returned; batch=N publishes the used idx and decides
// on notification once per N chains.
func BenchmarkPopAddUsed(b *testing.B) {
	for _, indirect := range []bool{false, true} {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("indirect=%v/batch=%d", indirect, batch), func(b *testing.B) {
				benchPop(b, indirect, batch)
			})
		}
	}
}

func benchPop(b *testing.B, indirect bool, batch int) {
	const size = 256
	d, err := queuetest.New(queuetest.Config{Size: size, ChunkSize: 2048, EventIdx: true, Indirect: indirect})
	require.NoError(b, err)
	q := queue.New(size)
	require.NoError(b, d.Configure(q))
	hdr, _ := d.Alloc()
	data, _ := d.Alloc()
	chain := []queuetest.Desc{
		{Addr: hdr, Len: 64, Flags: queue.DescFNext, Next: 1},
		{Addr: data, Len: 1500, Flags: queue.DescFWrite},
	}
	// Chains with heads 0, 2, 4, ... (or single indirect descriptors).
	var heads []uint16
	for h := uint16(0); h < size; h += 2 {
		if indirect {
			tbl, err := d.Alloc()
			require.NoError(b, err)
			require.NoError(b, d.WriteTable(tbl, chain))
			require.NoError(b, d.WriteDesc(h, queuetest.Desc{Addr: tbl, Len: 32, Flags: queue.DescFIndirect}))
		} else {
			c0, c1 := chain[0], chain[1]
			c0.Next = h + 1
			require.NoError(b, d.WriteDesc(h, c0))
			require.NoError(b, d.WriteDesc(h+1, c1))
		}
		heads = append(heads, h)
	}
	for i := range size { // fill every avail slot once; only idx moves later
		require.NoError(b, d.PushAvail(heads[i%len(heads)]))
	}
	require.NoError(b, d.SetAvailIdx(0))
	require.NoError(b, d.SetUsedEvent(0xffff))

	var c queue.Chain
	idx := uint16(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		idx += uint16(batch)
		if err := d.Mem.StoreUint16(d.Avail+2, idx); err != nil {
			b.Fatal(err)
		}
		for range batch {
			ok, err := q.PopInto(d.Mem, &c)
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
			if err := q.PutUsed(d.Mem, c.Head, 1500); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.PublishUsed(d.Mem); err != nil {
			b.Fatal(err)
		}
		if _, err := q.NeedsNotification(d.Mem); err != nil {
			b.Fatal(err)
		}
	}
}
