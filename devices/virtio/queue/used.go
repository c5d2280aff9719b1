package queue

import (
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
)

// AddUsed returns one chain to the driver and publishes it immediately:
// PutUsed followed by PublishUsed. written is the number of bytes the device
// wrote into the chain's writable buffers (§2.7.8: len).
func (q *Queue) AddUsed(mem *guestmem.Memory, head uint16, written uint32) error {
	if err := q.PutUsed(mem, head, written); err != nil {
		return err
	}
	return q.PublishUsed(mem)
}

// PutUsed writes a used ring element for head without making it visible to
// the driver. Call PublishUsed once after a batch so N elements cost a single
// used idx store (and at most one interrupt decision).
func (q *Queue) PutUsed(mem *guestmem.Memory, head uint16, written uint32) error {
	if err := q.usable(); err != nil {
		return err
	}
	if head >= q.size {
		return fmt.Errorf("%w: used head %d >= size %d", ErrDeviceMisuse, head, q.size)
	}
	if q.inFlight == 0 {
		// More used than popped would overrun the driver's used ring.
		return fmt.Errorf("%w: used head %d with no chain in flight", ErrDeviceMisuse, head)
	}
	// Plain stores: the driver reads the element only after it observes the
	// used idx released by PublishUsed.
	addr := q.usedElemAddr(q.nextUsed)
	if err := mem.PutUint32(addr, uint32(head)); err != nil {
		return q.fail(ErrRingAccess, "used element %d: %v", q.nextUsed, err)
	}
	if err := mem.PutUint32(addr+4, written); err != nil {
		return q.fail(ErrRingAccess, "used element %d: %v", q.nextUsed, err)
	}
	q.nextUsed++
	q.inFlight--
	return nil
}

// PublishUsed makes every element written by PutUsed visible to the driver
// by storing the used idx. It is a no-op if nothing is pending.
func (q *Queue) PublishUsed(mem *guestmem.Memory) error {
	if err := q.usable(); err != nil {
		return err
	}
	if q.nextUsed == q.usedIdx {
		return nil
	}
	// Release: the used elements written above become visible no later than
	// the new idx (§2.7.8.2 "the device MUST ... before updating idx", wmb()).
	if err := mem.StoreUint16(q.usedIdxAddr(), q.nextUsed); err != nil {
		return q.fail(ErrRingAccess, "used idx: %v", err)
	}
	if q.numAdded += uint32(q.nextUsed - q.usedIdx); q.numAdded > 1<<16 {
		q.numAdded = 1 << 16 // saturate: every event index is then covered
	}
	q.usedIdx = q.nextUsed
	return nil
}
