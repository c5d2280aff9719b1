// Package queue implements the device side of a virtio 1.x split virtqueue
// (virtio 1.2 §2.7), modelled on rust-vmm's virtio-queue crate.
//
// A Queue holds the state the transport programs from the driver's common
// configuration (size, ring addresses, queue_enable) plus the device's private
// ring cursors. Devices pop descriptor chains with Pop or PopInto, return them
// with AddUsed (or PutUsed + PublishUsed for batches), and ask
// NeedsNotification whether to raise the queue's interrupt.
//
// Every value read from guest memory is treated as hostile: ring indices,
// descriptor addresses, lengths, flags and next links are bounds checked, all
// walks are bounded by a descriptor count, and every access goes through
// guestmem, which reports out-of-range accesses instead of faulting. Nothing
// in this package panics on guest input.
//
// Errors come in three classes, distinguishable with errors.Is:
//
//   - ErrInvalidChain (carried by a *ChainError with the chain's head): one
//     descriptor chain is malformed. The chain has been consumed; the device
//     should return it with AddUsed(head, 0) and carry on.
//   - ErrQueueBroken: the driver broke the ring itself (avail idx jumped, head
//     index out of range, ring memory inaccessible). The error is latched until
//     Reset; the transport should set DEVICE_NEEDS_RESET (§2.1.2).
//   - ErrInvalidConfig from Validate, and ErrNotReady / ErrDeviceMisuse for
//     device-side programming errors.
//
// # Memory ordering
//
// The rings are shared with a guest running concurrently on other CPUs. The
// device side follows §2.7.13 and §2.7.14: the avail idx is loaded with an
// atomic (acquire) load before the ring entries and descriptors it covers are
// read; used elements are written with plain stores and then published with
// an atomic (release) store of the used idx; a full fence separates the used
// idx store from the reads of used_event / avail flags that decide whether to
// interrupt, and the avail_event / flags store from the re-read of the avail
// idx when re-enabling notifications. All ring header and event fields are
// accessed with guestmem's atomic accessors so that a concurrent in-process
// driver (see package queuetest) is race-detector clean.
//
// # Concurrency
//
// A Queue is not safe for concurrent use by several device goroutines; the
// owner (normally one device worker goroutine) serialises calls. The
// transport must hand the queue over to the worker (e.g. on DRIVER_OK) with a
// happens-before edge and must not call setters while the worker runs.
package queue
