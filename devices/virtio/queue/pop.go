package queue

import (
	"encoding/binary"
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
)

// maxChainBytes is the largest total buffer length of a chain (§2.7.5.2:
// "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total").
const maxChainBytes = 1 << 32

// desc is a decoded struct virtq_desc (§2.7.5).
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

// Pop returns the next available descriptor chain, or (nil, nil) if the
// driver has not made any available. It allocates a Chain; hot paths should
// use PopInto.
func (q *Queue) Pop(mem *guestmem.Memory) (*Chain, error) {
	c := new(Chain)
	ok, err := q.PopInto(mem, c)
	if err != nil || !ok {
		return nil, err
	}
	return c, nil
}

// PopInto pops the next available chain into c, reusing c's segment storage.
// It reports false if the available ring is empty.
//
// A malformed chain yields a *ChainError (errors.Is ErrInvalidChain): the
// chain was consumed and c.Head names it, so the device should return it with
// AddUsed(head, 0). A ring-level violation yields an error wrapping
// ErrQueueBroken that stays latched until Reset.
func (q *Queue) PopInto(mem *guestmem.Memory, c *Chain) (bool, error) {
	if err := q.usable(); err != nil {
		return false, err
	}
	if q.nextAvail == q.availIdx {
		idx, err := q.loadAvailIdx(mem)
		if err != nil {
			return false, err
		}
		if idx == q.nextAvail {
			return false, nil
		}
	}
	// The ring entry is covered by the avail idx loaded (acquire) above, so
	// the driver's write of it is visible (§2.7.13.3).
	head, err := mem.LoadUint16(q.availEntryAddr(q.nextAvail))
	if err != nil {
		return false, q.fail(ErrRingAccess, "avail ring entry %d: %v", q.nextAvail, err)
	}
	if head >= q.size {
		return false, q.fail(ErrHeadOutOfRange, "avail ring entry %d names descriptor %d, size %d", q.nextAvail, head, q.size)
	}
	q.nextAvail++
	q.inFlight++
	c.reset(head)
	if err := q.walk(mem, c); err != nil {
		return false, &ChainError{Head: head, Err: err}
	}
	return true, nil
}

// loadAvailIdx loads the driver's avail idx, caches it and checks it against
// the device position.
func (q *Queue) loadAvailIdx(mem *guestmem.Memory) (uint16, error) {
	// Acquire: ring entries and descriptors published before this idx are
	// visible after the load (§2.7.13.3, pairs with the driver's wmb()).
	idx, err := mem.LoadUint16(q.availIdxAddr())
	if err != nil {
		return 0, q.fail(ErrRingAccess, "avail idx: %v", err)
	}
	// The driver can have at most size entries outstanding (§2.7.6); a larger
	// distance means a corrupted idx, and trusting it would make the device
	// re-consume stale ring entries.
	if pending := idx - q.nextAvail; pending > q.size {
		return 0, q.fail(ErrAvailIdxJump, "avail idx %d, device at %d, size %d", idx, q.nextAvail, q.size)
	}
	q.availIdx = idx
	return idx, nil
}

// walk follows the chain starting at c.Head and fills c. Direct chains are
// bounded by the queue size, indirect ones by their table length, so a
// looping chain terminates with ErrChainTooLong.
func (q *Queue) walk(mem *guestmem.Memory, c *Chain) error {
	table := q.descTable
	limit := uint32(q.size) // descriptors in the current table
	idx := c.Head
	writable := false
	var total uint64
	walked := uint32(0) // every descriptor of the chain, across both tables
	for count := uint32(0); ; {
		if count == limit {
			return fmt.Errorf("%w: more than %d descriptors", ErrChainTooLong, limit)
		}
		count++
		if walked++; walked > q.maxChain {
			return fmt.Errorf("%w: more than %d", ErrChainTooManyDescs, q.maxChain)
		}
		d, err := readDesc(mem, table, idx)
		if err != nil {
			return fmt.Errorf("%w: descriptor %d: %w", ErrDescOutOfRange, idx, err)
		}
		if d.flags&DescFIndirect != 0 {
			if err := q.checkIndirect(c, d); err != nil {
				return err
			}
			// §2.7.5.3.2: the device handles zero or more direct descriptors
			// followed by one indirect descriptor; the table's chain starts
			// at entry 0 and is bounded by the table length.
			c.Indirect = true
			table, limit, idx, count = d.addr, d.len/DescSize, 0, 0
			walked-- // the pointer to the table carries no buffer
			continue
		}
		if d.len > 0 { // zero-length descriptors carry nothing: skip them
			w := d.flags&DescFWrite != 0
			if !w && writable {
				return fmt.Errorf("%w: descriptor %d", ErrReadableAfterWritable, idx)
			}
			writable = w
			if total += uint64(d.len); total > maxChainBytes {
				return ErrChainTooBig
			}
			if w {
				c.Writable, err = appendSegments(c.Writable, mem, d.addr, d.len)
			} else {
				c.Readable, err = appendSegments(c.Readable, mem, d.addr, d.len)
			}
			if err != nil {
				return fmt.Errorf("descriptor %d: %w", idx, err)
			}
		}
		if d.flags&DescFNext == 0 {
			return nil
		}
		if uint32(d.next) >= limit {
			return fmt.Errorf("%w: descriptor %d -> %d, table has %d", ErrNextOutOfRange, idx, d.next, limit)
		}
		idx = d.next
	}
}

// checkIndirect validates a descriptor with VIRTQ_DESC_F_INDIRECT
// (§2.7.5.3.1).
func (q *Queue) checkIndirect(c *Chain, d desc) error {
	switch {
	case !q.indirect:
		return ErrIndirectNotNegotiated
	case c.Indirect:
		return ErrNestedIndirect
	case d.flags&DescFNext != 0:
		return ErrIndirectWithNext
	case d.len == 0 || d.len%DescSize != 0 || d.len/DescSize > MaxIndirectDescs:
		return fmt.Errorf("%w: length %d", ErrIndirectTable, d.len)
	case d.addr+uint64(d.len) < d.addr:
		return fmt.Errorf("%w: %#x+%#x wraps", ErrIndirectTable, d.addr, d.len)
	}
	// The table's entries are read, and bounds checked, one at a time; the
	// §2.7.5.3 write flag on this descriptor is ignored as required.
	return nil
}

// readDesc reads descriptor idx of the table at gpa. Descriptor tables have
// no ordering requirement beyond the avail idx acquire, so plain loads do.
func readDesc(mem *guestmem.Memory, table uint64, idx uint16) (desc, error) {
	b, err := mem.Slice(table+DescSize*uint64(idx), DescSize)
	if err != nil {
		return desc{}, err
	}
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}, nil
}

// appendSegments appends the buffer [gpa, gpa+n) as one segment per RAM
// region it touches. It fails if the range wraps or leaves RAM.
func appendSegments(dst []Segment, mem *guestmem.Memory, gpa uint64, n uint32) ([]Segment, error) {
	if gpa+uint64(n) < gpa {
		return dst, fmt.Errorf("%w: %#x+%#x wraps", ErrDescOutOfRange, gpa, n)
	}
	for n > 0 {
		if b, err := mem.Slice(gpa, uint64(n)); err == nil {
			return append(dst, Segment{GPA: gpa, Len: n, Buf: b}), nil
		}
		// Not inside one region: take the part up to the end of the region
		// holding gpa and continue in the next (adjacent) region, if any.
		part := regionTail(mem, gpa)
		if part == 0 || part >= uint64(n) {
			return dst, fmt.Errorf("%w: %#x+%#x", ErrDescOutOfRange, gpa, n)
		}
		b, err := mem.Slice(gpa, part)
		if err != nil {
			return dst, fmt.Errorf("%w: %w", ErrDescOutOfRange, err)
		}
		dst = append(dst, Segment{GPA: gpa, Len: uint32(part), Buf: b})
		gpa += part
		n -= uint32(part)
	}
	return dst, nil
}

// regionTail returns the number of bytes from gpa to the end of the RAM
// region containing it, or 0 if gpa is not in RAM.
func regionTail(mem *guestmem.Memory, gpa uint64) uint64 {
	for _, r := range mem.Regions() {
		if gpa >= r.GPA && gpa < r.End() {
			return r.End() - gpa
		}
	}
	return 0
}

// Undo puts the last n popped chains back on the available ring, so that the
// next Pop returns them again in the same order (rust-vmm's
// go_to_previous_position). Use it when a chain cannot be processed yet, for
// example because a resource limit was reached. The chains must not have
// been returned with PutUsed. n larger than InFlight is an error.
func (q *Queue) Undo(n uint16) error {
	if uint32(n) > q.inFlight {
		return fmt.Errorf("%w: undo %d chains, %d in flight", ErrDeviceMisuse, n, q.inFlight)
	}
	q.nextAvail -= n
	q.inFlight -= uint32(n)
	return nil
}
