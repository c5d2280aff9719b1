package queue

import (
	"github.com/govmm/govmm/vmm/guestmem"
)

// NeedsNotification reports whether the device must send a used buffer
// notification (interrupt) for the elements published since the previous
// call (§2.7.7 Used Buffer Notification Suppression). Call it after
// PublishUsed; it returns false if nothing was published in between.
//
// With VIRTIO_F_EVENT_IDX the driver's used_event (the last avail ring
// entry) is compared like Linux's vring_need_event: notify iff the used idx
// moved past used_event during this batch, i.e. used_event lies in
// [old, new). Without it, VIRTQ_AVAIL_F_NO_INTERRUPT in the avail flags
// suppresses the notification.
func (q *Queue) NeedsNotification(mem *guestmem.Memory) (bool, error) {
	if err := q.usable(); err != nil {
		return false, err
	}
	added := q.numAdded
	q.numAdded = 0
	if added == 0 {
		return false, nil
	}
	// A batch of 2^16 or more spans every possible event index.
	return q.notifyDue(mem, q.usedIdx-uint16(added), added >= 1<<16)
}

// notifyDue applies the driver's suppression to the used entries from idx
// old up to the published used idx: with EVENT_IDX, used_event in [old,
// new) (or all set: the entries span every event index); without it, the
// NO_INTERRUPT flag.
func (q *Queue) notifyDue(mem *guestmem.Memory, old uint16, all bool) (bool, error) {
	// mb(): the used idx store must be globally visible before reading
	// used_event/flags, or we can miss the driver re-enabling interrupts
	// (§2.7.7, pairs with the driver's mb() after writing used_event).
	guestmem.Fence()
	if q.eventIdx {
		event, err := mem.LoadUint16(q.usedEventAddr())
		if err != nil {
			return false, q.fail(ErrRingAccess, "used_event: %v", err)
		}
		return all || NeedEvent(event, q.usedIdx, old), nil
	}
	flags, err := mem.LoadUint16(q.availFlagsAddr())
	if err != nil {
		return false, q.fail(ErrRingAccess, "avail flags: %v", err)
	}
	return flags&AvailFNoInterrupt == 0, nil
}

// UsedIdx returns the used idx last published to the driver.
func (q *Queue) UsedIdx() uint16 { return q.usedIdx }

// StillNeedsNotification re-evaluates, some time later, a notification
// NeedsNotification reported due for the entries published since used idx
// since, against the driver's current used_event (or flags). A driver that
// meanwhile consumed them may have moved used_event past them (Linux's
// virtio_net does while transmitting: virtqueue_enable_cb_delayed), and
// then no interrupt is owed any more. A device that defers interrupts this
// way coalesces them without delaying one the driver still waits for
// beyond the deferral.
func (q *Queue) StillNeedsNotification(mem *guestmem.Memory, since uint16) (bool, error) {
	if err := q.usable(); err != nil {
		return false, err
	}
	return q.notifyDue(mem, since, false)
}

// NeedEvent is vring_need_event from the virtio spec (§2.7.7 and §2.7.10):
// having moved an index from old to newIdx, the other side asked to be
// notified when entry event is processed, so notify iff event lies in
// [old, newIdx) modulo 2^16.
func NeedEvent(event, newIdx, old uint16) bool {
	return newIdx-event-1 < newIdx-old
}

// EnableNotification asks the driver to notify (kick) the device when it
// makes new buffers available (§2.7.10 Available Buffer Notification
// Suppression). With VIRTIO_F_EVENT_IDX it writes avail_event = the device's
// avail position, otherwise it clears VIRTQ_USED_F_NO_NOTIFY.
//
// It then re-reads the avail idx and reports true if buffers arrived before
// the driver could see the change; the caller must process them instead of
// sleeping, or a kick is lost (as rust-vmm's enable_notification).
func (q *Queue) EnableNotification(mem *guestmem.Memory) (bool, error) {
	if err := q.usable(); err != nil {
		return false, err
	}
	var err error
	if q.eventIdx {
		// next_avail, not the current avail idx: anything past it is already
		// pending and reported below.
		err = mem.StoreUint16(q.availEventAddr(), q.nextAvail)
	} else {
		err = mem.StoreUint16(q.usedFlagsAddr(), 0)
	}
	if err != nil {
		return false, q.fail(ErrRingAccess, "enable notification: %v", err)
	}
	// mb(): avail_event/flags must be visible before re-reading avail idx,
	// pairing with the driver's mb() between its idx update and its read of
	// avail_event/flags (§2.7.13.4).
	guestmem.Fence()
	idx, err := q.loadAvailIdx(mem)
	if err != nil {
		return false, err
	}
	return idx != q.nextAvail, nil
}

// DisableNotification asks the driver not to kick the device, for use while
// the device is busy draining the ring (§2.7.10). Without
// VIRTIO_F_EVENT_IDX it sets VIRTQ_USED_F_NO_NOTIFY. With it, it does
// nothing: the driver kicks at most once more, when it passes the last
// avail_event written by EnableNotification, and the spec requires used
// flags to stay 0.
func (q *Queue) DisableNotification(mem *guestmem.Memory) error {
	if err := q.usable(); err != nil {
		return err
	}
	if q.eventIdx {
		return nil
	}
	if err := mem.StoreUint16(q.usedFlagsAddr(), UsedFNoNotify); err != nil {
		return q.fail(ErrRingAccess, "disable notification: %v", err)
	}
	return nil
}
