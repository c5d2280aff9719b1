package queue

import (
	"errors"
	"fmt"
)

// Error classes. Match with errors.Is; the specific causes below are wrapped
// alongside the class.
var (
	// ErrInvalidConfig is returned by Validate when the driver-programmed
	// configuration cannot be used; the transport should refuse queue_enable
	// and set DEVICE_NEEDS_RESET.
	ErrInvalidConfig = errors.New("virtqueue: invalid configuration")

	// ErrQueueBroken marks a fatal, latched error: the driver violated the
	// ring protocol itself. Only Reset clears it.
	ErrQueueBroken = errors.New("virtqueue: ring broken by driver")

	// ErrInvalidChain marks a malformed descriptor chain. It is carried by a
	// *ChainError that names the head to return to the driver.
	ErrInvalidChain = errors.New("virtqueue: invalid descriptor chain")

	// ErrNotReady is returned when the queue is used before SetReady(true).
	ErrNotReady = errors.New("virtqueue: queue not ready")

	// ErrDeviceMisuse reports a device-side programming error (returning a
	// head that was never popped, undoing more chains than are in flight).
	ErrDeviceMisuse = errors.New("virtqueue: device misuse")
)

// Fatal causes (wrapped together with ErrQueueBroken).
var (
	// ErrAvailIdxJump: the avail idx moved more than the queue size past the
	// device's position (§2.7.6: the driver can offer at most Queue Size
	// buffers).
	ErrAvailIdxJump = errors.New("avail idx advanced by more than the queue size")
	// ErrHeadOutOfRange: an avail ring entry names a descriptor >= size. The
	// head cannot even be returned in the used ring, so the ring is broken.
	ErrHeadOutOfRange = errors.New("avail ring head index out of range")
	// ErrRingAccess: a ring header, entry or event field is not accessible
	// (only possible if Validate was skipped).
	ErrRingAccess = errors.New("ring memory not accessible")
)

// Per-chain causes (wrapped together with ErrInvalidChain).
var (
	ErrChainTooLong          = errors.New("chain longer than its descriptor table (loop?)")
	ErrChainTooManyDescs     = errors.New("chain has more descriptors than the device accepts")
	ErrChainTooBig           = errors.New("chain buffers exceed 2^32 bytes in total")
	ErrNextOutOfRange        = errors.New("next index outside descriptor table")
	ErrDescOutOfRange        = errors.New("descriptor buffer outside guest RAM")
	ErrReadableAfterWritable = errors.New("device-readable descriptor after a device-writable one")
	ErrIndirectNotNegotiated = errors.New("VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC")
	ErrNestedIndirect        = errors.New("indirect descriptor inside an indirect table")
	ErrIndirectWithNext      = errors.New("indirect descriptor has VIRTQ_DESC_F_NEXT")
	ErrIndirectTable         = errors.New("bad indirect table length or address")
)

// ChainError reports a malformed descriptor chain. The chain has been taken
// off the avail ring and counts as in flight: the device should complete it
// with AddUsed(Head, 0) (or PutUsed) so the driver can reclaim it.
type ChainError struct {
	Head uint16 // head descriptor index, valid for the used ring
	Err  error  // specific cause, e.g. ErrNextOutOfRange
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("%v (head %d): %v", ErrInvalidChain, e.Head, e.Err)
}

// Unwrap makes errors.Is match both ErrInvalidChain and the cause.
func (e *ChainError) Unwrap() []error { return []error{ErrInvalidChain, e.Err} }
