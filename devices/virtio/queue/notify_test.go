package queue_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

func TestNeedEvent(t *testing.T) {
	// Reference: notify iff event is one of old, old+1, ..., new-1 (mod 2^16).
	ref := func(event, newIdx, old uint16) bool {
		for i := old; i != newIdx; i++ {
			if i == event {
				return true
			}
		}
		return false
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		old := uint16(r.Uint32())
		n := uint16(r.IntN(40))
		event := old + uint16(r.IntN(80)) - 20
		require.Equal(t, ref(event, old+n, old), queue.NeedEvent(event, old+n, old), "event %d old %d new %d", event, old, old+n)
	}
	require.True(t, queue.NeedEvent(0xffff, 0, 0xffff), "across the wrap")
	require.False(t, queue.NeedEvent(5, 5, 5), "empty batch")
}

// cycle makes n chains available, pops them and returns them, publishing
// in one batch.
func cycle(t *testing.T, q *queue.Queue, d *queuetest.Driver, n int) {
	t.Helper()
	for range n {
		_, err := d.AddChain(nil, []uint32{1})
		require.NoError(t, err)
	}
	var c queue.Chain
	for range n {
		ok, err := q.PopInto(d.Mem, &c)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, q.PutUsed(d.Mem, c.Head, 0))
	}
	require.NoError(t, q.PublishUsed(d.Mem))
	for range n {
		_, ok, err := d.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
	}
}

func needs(t *testing.T, q *queue.Queue, d *queuetest.Driver) bool {
	t.Helper()
	ok, err := q.NeedsNotification(d.Mem)
	require.NoError(t, err)
	return ok
}

func TestUsedNotificationNoInterruptFlag(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8})
	require.False(t, needs(t, q, d), "nothing published")
	cycle(t, q, d, 1)
	require.True(t, needs(t, q, d))
	require.False(t, needs(t, q, d), "already reported")

	require.NoError(t, d.SetAvailFlags(queue.AvailFNoInterrupt))
	cycle(t, q, d, 3)
	require.False(t, needs(t, q, d))
	require.NoError(t, d.SetAvailFlags(0))
	cycle(t, q, d, 1)
	require.True(t, needs(t, q, d))

	// used_event is ignored without EVENT_IDX.
	require.NoError(t, d.SetUsedEvent(1000))
	cycle(t, q, d, 1)
	require.True(t, needs(t, q, d))
}

// TestUsedEventIdx checks suppression exactly per vring_need_event over
// more than 2^16 used entries in batches of varying size, so that both the
// used idx and used_event wrap.
func TestUsedEventIdx(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8, EventIdx: true})
	// The flag is ignored with EVENT_IDX (§2.7.7).
	require.NoError(t, d.SetAvailFlags(queue.AvailFNoInterrupt))
	r := rand.New(rand.NewPCG(3, 4))
	var used uint16
	notified := 0
	for total := 0; total < 1<<16+100; {
		n := 1 + r.IntN(8)
		event := used + uint16(r.IntN(12)) - 2
		require.NoError(t, d.SetUsedEvent(event))
		cycle(t, q, d, n)
		want := uint16(event-used) < uint16(n) // event in [used, used+n)
		require.Equal(t, want, needs(t, q, d), "used %d->%d, used_event %d", used, used+uint16(n), event)
		if want {
			notified++
		}
		used += uint16(n)
		total += n
	}
	require.Equal(t, used, q.NextUsed())
	require.Positive(t, notified)
}

func TestUsedEventIdxSaturation(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 2^16 entries")
	}
	q, d := setup(t, queuetest.Config{Size: 8, EventIdx: true})
	require.NoError(t, d.SetUsedEvent(0xffff))
	// Publish 2^16+1 entries without consulting NeedsNotification: the
	// window covers every index, so the answer must be true whatever
	// used_event is (vring_need_event alone would wrap and say false).
	for range 1<<16/8 + 1 {
		cycle(t, q, d, 8)
	}
	require.NoError(t, d.SetUsedEvent(q.NextUsed()+100))
	require.True(t, needs(t, q, d))
}

func TestAvailNotificationNoNotifyFlag(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8})
	kick := func() bool {
		k, err := d.NeedsKick()
		require.NoError(t, err)
		return k
	}
	_, err := d.AddChain(nil, []uint32{1})
	require.NoError(t, err)
	require.True(t, kick(), "notifications enabled after reset")

	require.NoError(t, q.DisableNotification(d.Mem))
	f, err := d.UsedFlags()
	require.NoError(t, err)
	require.EqualValues(t, queue.UsedFNoNotify, f)
	_, err = d.AddChain(nil, []uint32{1})
	require.NoError(t, err)
	require.False(t, kick())

	// Buffers arrived while disabled: EnableNotification must say so.
	pending, err := q.EnableNotification(d.Mem)
	require.NoError(t, err)
	require.True(t, pending)
	f, err = d.UsedFlags()
	require.NoError(t, err)
	require.Zero(t, f)
	for range 2 {
		c, err := q.Pop(d.Mem)
		require.NoError(t, err)
		require.NotNil(t, c)
	}
	pending, err = q.EnableNotification(d.Mem)
	require.NoError(t, err)
	require.False(t, pending)
	_, err = d.AddChain(nil, []uint32{1})
	require.NoError(t, err)
	require.True(t, kick())
}

func TestAvailEventIdx(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8, EventIdx: true})
	kick := func() bool {
		k, err := d.NeedsKick()
		require.NoError(t, err)
		return k
	}
	enable := func() bool {
		p, err := q.EnableNotification(d.Mem)
		require.NoError(t, err)
		return p
	}
	add := func() {
		_, err := d.AddChain(nil, []uint32{1})
		require.NoError(t, err)
	}
	pop := func() {
		c, err := q.Pop(d.Mem)
		require.NoError(t, err)
		require.NotNil(t, c)
		require.NoError(t, q.AddUsed(d.Mem, c.Head, 0))
		_, _, err = d.PopUsed()
		require.NoError(t, err)
	}

	require.False(t, enable())
	ev, err := d.AvailEvent()
	require.NoError(t, err)
	require.Zero(t, ev)
	add()
	require.True(t, kick(), "avail idx 0->1 crosses avail_event 0")
	add()
	require.False(t, kick(), "1->2 does not: the device is already awake")

	// Disable is a no-op with EVENT_IDX; used flags stay 0 (§2.7.10).
	require.NoError(t, q.DisableNotification(d.Mem))
	f, err := d.UsedFlags()
	require.NoError(t, err)
	require.Zero(t, f)

	pop()
	require.True(t, enable(), "one chain still pending")
	ev, err = d.AvailEvent()
	require.NoError(t, err)
	require.EqualValues(t, 1, ev, "avail_event = device position")
	pop()
	require.False(t, enable())
	ev, err = d.AvailEvent()
	require.NoError(t, err)
	require.EqualValues(t, 2, ev)
	add()
	add()
	require.True(t, kick(), "batch 2->4 covers avail_event 2")
}

// A deferred notification is re-evaluated against the driver's current
// used_event: one the driver made unnecessary by consuming the entries and
// re-arming further on is dropped; one it still waits for stays due.
func TestStillNeedsNotification(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8, EventIdx: true})
	require.NoError(t, d.SetUsedEvent(0))
	since := q.UsedIdx()
	cycle(t, q, d, 2) // used idx 0 → 2 crosses used_event 0
	require.True(t, needs(t, q, d))
	due, err := q.StillNeedsNotification(d.Mem, since)
	require.NoError(t, err)
	require.True(t, due, "the driver still waits at used_event 0")

	require.NoError(t, d.SetUsedEvent(q.UsedIdx())) // it reaped both and re-armed for the next one
	due, err = q.StillNeedsNotification(d.Mem, since)
	require.NoError(t, err)
	require.False(t, due)

	// Without EVENT_IDX the flag decides, whenever it is read.
	q, d = setup(t, queuetest.Config{Size: 8})
	since = q.UsedIdx()
	cycle(t, q, d, 1)
	due, err = q.StillNeedsNotification(d.Mem, since)
	require.NoError(t, err)
	require.True(t, due)
	require.NoError(t, d.SetAvailFlags(queue.AvailFNoInterrupt))
	due, err = q.StillNeedsNotification(d.Mem, since)
	require.NoError(t, err)
	require.False(t, due)
}
