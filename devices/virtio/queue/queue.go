package queue

import (
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
)

// Queue is the device side of one split virtqueue (virtio 1.2 §2.7).
//
// The zero value is not usable; create queues with New. A Queue is safe
// against a concurrently running guest but not against concurrent use by two
// host goroutines (see the package documentation).
type Queue struct {
	// Driver-programmed configuration (§4.1.4.3 common config).
	maxSize   uint16
	maxChain  uint32 // descriptors per chain (SetMaxChainDescs); kept across Reset
	size      uint16
	descTable uint64
	availRing uint64
	usedRing  uint64
	ready     bool

	// Negotiated features.
	eventIdx bool // VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10)
	indirect bool // VIRTIO_F_INDIRECT_DESC (§2.7.5.3)

	// Device-private ring state. All indices are free-running mod 2^16.
	nextAvail uint16 // next avail ring entry to consume
	availIdx  uint16 // last avail idx loaded from the driver (cache)
	nextUsed  uint16 // next used ring entry to fill
	usedIdx   uint16 // last used idx published to the driver
	numAdded  uint32 // used entries published since the last NeedsNotification (saturates)
	inFlight  uint32 // chains popped and not yet returned
	broken    error  // latched fatal error (wraps ErrQueueBroken)
}

// New returns a queue offering maxSize entries to the driver. maxSize must
// be a power of two no larger than MaxQueueSize; anything else is a VMM bug
// and is clamped to the largest power of two not above it (at least 1).
func New(maxSize uint16) *Queue {
	if maxSize > MaxQueueSize {
		maxSize = MaxQueueSize
	}
	for maxSize > 1 && !isPowerOfTwo(maxSize) {
		maxSize &= maxSize - 1 // clear lowest set bit until one remains
	}
	if maxSize == 0 {
		maxSize = 1
	}
	q := &Queue{maxSize: maxSize, maxChain: DefaultMaxChainDescs}
	q.Reset()
	return q
}

// Reset returns the queue to its post-reset state (§2.1 device reset and
// §2.6.1 queue reset): not ready, size = max size, ring addresses 0, features
// off, cursors 0, no latched error.
func (q *Queue) Reset() {
	*q = Queue{maxSize: q.maxSize, maxChain: q.maxChain, size: q.maxSize}
}

// SetMaxChainDescs sets how many descriptors one chain may have, direct
// and indirect together (at least 1; DefaultMaxChainDescs unless set). A
// longer chain is a *ChainError (ErrChainTooManyDescs), walked no further:
// the device holds at most this many segments per popped chain (plus one
// per RAM region boundary a buffer crosses).
func (q *Queue) SetMaxChainDescs(n int) {
	q.maxChain = uint32(max(1, min(n, MaxIndirectDescs)))
}

// MaxSize returns the maximum queue size offered to the driver (queue_size
// as first read by the driver).
func (q *Queue) MaxSize() uint16 { return q.maxSize }

// Size returns the queue size programmed by the driver.
func (q *Queue) Size() uint16 { return q.size }

// Ready reports whether the driver enabled the queue (queue_enable).
func (q *Queue) Ready() bool { return q.ready }

// SetSize sets queue_size. Like the ring address setters it is ignored while
// the queue is ready: §4.1.4.3.2 has the driver configure a queue before
// enabling it, and the device must not see the layout change under it.
// Range checks happen in Validate.
func (q *Queue) SetSize(n uint16) {
	if !q.ready {
		q.size = n
	}
}

// SetDescTable sets the descriptor table GPA (queue_desc).
func (q *Queue) SetDescTable(gpa uint64) {
	if !q.ready {
		q.descTable = gpa
	}
}

// SetAvailRing sets the available ring GPA (queue_driver).
func (q *Queue) SetAvailRing(gpa uint64) {
	if !q.ready {
		q.availRing = gpa
	}
}

// SetUsedRing sets the used ring GPA (queue_device).
func (q *Queue) SetUsedRing(gpa uint64) {
	if !q.ready {
		q.usedRing = gpa
	}
}

// DescTable, AvailRing and UsedRing return the programmed ring addresses
// (for transport register reads and snapshots).
func (q *Queue) DescTable() uint64 { return q.descTable }

// AvailRing returns the available ring GPA.
func (q *Queue) AvailRing() uint64 { return q.availRing }

// UsedRing returns the used ring GPA.
func (q *Queue) UsedRing() uint64 { return q.usedRing }

// SetEventIdx records whether VIRTIO_F_EVENT_IDX was negotiated.
func (q *Queue) SetEventIdx(on bool) { q.eventIdx = on }

// SetIndirect records whether VIRTIO_F_INDIRECT_DESC was negotiated.
func (q *Queue) SetIndirect(on bool) { q.indirect = on }

// SetReady sets queue_enable. The transport should call Validate first and
// refuse to enable an invalid queue. Enabling does not move the ring cursors;
// they start at 0 after New or Reset.
func (q *Queue) SetReady(on bool) { q.ready = on }

// Validate checks the configuration against guest memory, as the transport
// must do when the driver writes queue_enable = 1: the size is a power of two
// no larger than MaxSize (§2.7: "Queue Size ... power of 2"), and each ring
// is aligned as §2.7 requires (descriptor table 16, available ring 2, used
// ring 4) and lies wholly inside one guest RAM region.
//
// It also probes the fields the device accesses atomically: guestmem
// implements 16-bit atomics on the enclosing aligned 32-bit word, which must
// be in RAM too (always true for regions with 4-byte aligned bounds).
func (q *Queue) Validate(mem *guestmem.Memory) error {
	if !isPowerOfTwo(q.size) || q.size > q.maxSize {
		return fmt.Errorf("%w: size %d (max %d) is not a power of two <= max", ErrInvalidConfig, q.size, q.maxSize)
	}
	rings := [...]struct {
		name        string
		gpa, n, aln uint64
	}{
		{"descriptor table", q.descTable, DescTableSize(q.size), DescTableAlign},
		{"available ring", q.availRing, AvailRingSize(q.size), AvailRingAlign},
		{"used ring", q.usedRing, UsedRingSize(q.size), UsedRingAlign},
	}
	for _, r := range rings {
		if r.gpa%r.aln != 0 {
			return fmt.Errorf("%w: %s at %#x not %d-byte aligned", ErrInvalidConfig, r.name, r.gpa, r.aln)
		}
		if r.gpa+r.n < r.gpa || !mem.Contains(r.gpa, r.n) {
			return fmt.Errorf("%w: %s %#x+%#x not inside guest RAM", ErrInvalidConfig, r.name, r.gpa, r.n)
		}
	}
	for _, gpa := range [...]uint64{q.availIdxAddr(), q.usedEventAddr(), q.usedIdxAddr(), q.availEventAddr()} {
		if _, err := mem.LoadUint16(gpa); err != nil {
			return fmt.Errorf("%w: ring field at %#x: %w", ErrInvalidConfig, gpa, err)
		}
	}
	return nil
}

// InFlight returns the number of chains popped and not yet returned with
// PutUsed (or undone).
func (q *Queue) InFlight() uint32 { return q.inFlight }

// NextAvail returns the device's position in the available ring (for
// snapshots; the value is free-running mod 2^16).
func (q *Queue) NextAvail() uint16 { return q.nextAvail }

// NextUsed returns the device's position in the used ring.
func (q *Queue) NextUsed() uint16 { return q.nextUsed }

// usable returns nil if the ring may be accessed.
func (q *Queue) usable() error {
	if q.broken != nil {
		return q.broken
	}
	if !q.ready {
		return ErrNotReady
	}
	// Cheap re-check so a transport that skipped Validate cannot make the
	// index masks below meaningless; memory safety never depends on it.
	if !isPowerOfTwo(q.size) || q.size > q.maxSize {
		return fmt.Errorf("%w: size %d", ErrInvalidConfig, q.size)
	}
	return nil
}

// fail latches a fatal error.
func (q *Queue) fail(cause error, format string, args ...any) error {
	q.broken = fmt.Errorf("%w: %w: "+format, append([]any{ErrQueueBroken, cause}, args...)...)
	return q.broken
}
