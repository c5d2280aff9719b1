package queue

import (
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
)

// Debug describes the queue for a state dump: the device's private
// indices next to the driver-visible ones. The caller must own the queue
// (as for Pop and PutUsed). It never fails: unreadable fields show as "?".
func (q *Queue) Debug(mem *guestmem.Memory) string {
	if !q.ready {
		return "not ready"
	}
	s := fmt.Sprintf("next_avail=%d next_used=%d in_flight=%d %s", q.nextAvail, q.nextUsed, q.inFlight, q.DriverView(mem))
	if q.broken != nil {
		s += fmt.Sprintf(" broken=%q", q.broken.Error())
	}
	return s
}

// DriverView describes only what the rings in guest memory say, each
// field read atomically. Unlike Debug it may be called by any goroutine
// while the queue is in use: it reads only the ring addresses and size,
// fixed while the queue is ready.
func (q *Queue) DriverView(mem *guestmem.Memory) string {
	rd := func(addr uint64) string {
		v, err := mem.LoadUint16(addr)
		if err != nil {
			return "?"
		}
		return fmt.Sprint(v)
	}
	s := fmt.Sprintf("size=%d avail.idx=%s used.idx=%s avail.flags=%s used.flags=%s",
		q.size, rd(q.availIdxAddr()), rd(q.usedIdxAddr()), rd(q.availFlagsAddr()), rd(q.usedFlagsAddr()))
	if q.eventIdx {
		s += fmt.Sprintf(" used_event=%s avail_event=%s", rd(q.usedEventAddr()), rd(q.availEventAddr()))
	}
	return s
}
