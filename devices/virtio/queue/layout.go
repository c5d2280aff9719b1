package queue

// Split virtqueue layout (virtio 1.2 §2.7, "Virtqueue Part / Alignment /
// Size" table and §2.7.5, §2.7.6, §2.7.8).
//
//	Descriptor Table  align 16  16 * size      {addr u64, len u32, flags u16, next u16}
//	Available Ring    align 2   6 + 2 * size   {flags u16, idx u16, ring[size] u16, used_event u16}
//	Used Ring         align 4   6 + 8 * size   {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16}
//
// All fields are little-endian (§2.4, VIRTIO_F_VERSION_1).
const (
	// MaxQueueSize is the largest split queue size (§2.7: "Queue Size ...
	// maximum of 32768").
	MaxQueueSize = 32768

	// DescSize is the size of one descriptor (struct virtq_desc).
	DescSize = 16
	// UsedElemSize is the size of one used ring element (struct virtq_used_elem).
	UsedElemSize = 8

	DescTableAlign = 16
	AvailRingAlign = 2
	UsedRingAlign  = 4

	// MaxIndirectDescs bounds an indirect table. §2.7.5.3.1 asks drivers not
	// to exceed the queue size, but Linux does with indirect descriptors (as
	// QEMU and rust-vmm tolerate); the 16-bit next field can address at most
	// 65536 entries, so that is the hard bound.
	MaxIndirectDescs = 1 << 16

	// DefaultMaxChainDescs bounds the descriptors of one chain, direct and
	// indirect together, zero-length ones included: Linux's UIO_MAXIOV,
	// which vhost and QEMU (VIRTQUEUE_MAX_SIZE) also use. Without it a
	// driver could make the device walk, and hold segments for, 65,536
	// descriptors per head. A device that knows its driver posts fewer
	// lowers it with SetMaxChainDescs.
	DefaultMaxChainDescs = 1024
)

// Descriptor flags (§2.7.5).
const (
	DescFNext     = 1 // VIRTQ_DESC_F_NEXT: the chain continues via next
	DescFWrite    = 2 // VIRTQ_DESC_F_WRITE: buffer is device write-only
	DescFIndirect = 4 // VIRTQ_DESC_F_INDIRECT: buffer is an indirect table (§2.7.5.3)
)

// Ring flags.
const (
	AvailFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7)
	UsedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY (§2.7.10)
)

// DescTableSize returns the size in bytes of a descriptor table of n entries.
func DescTableSize(n uint16) uint64 { return DescSize * uint64(n) }

// AvailRingSize returns the size in bytes of an available ring of n entries,
// including used_event.
func AvailRingSize(n uint16) uint64 { return 6 + 2*uint64(n) }

// UsedRingSize returns the size in bytes of a used ring of n entries,
// including avail_event.
func UsedRingSize(n uint16) uint64 { return 6 + UsedElemSize*uint64(n) }

// Field offsets inside the rings.
const (
	availFlagsOff = 0
	availIdxOff   = 2
	availRingOff  = 4
	usedFlagsOff  = 0
	usedIdxOff    = 2
	usedRingOff   = 4
)

func (q *Queue) availFlagsAddr() uint64 { return q.availRing + availFlagsOff }
func (q *Queue) availIdxAddr() uint64   { return q.availRing + availIdxOff }
func (q *Queue) availEntryAddr(i uint16) uint64 {
	return q.availRing + availRingOff + 2*uint64(i&(q.size-1))
}
func (q *Queue) usedEventAddr() uint64 { return q.availRing + availRingOff + 2*uint64(q.size) }
func (q *Queue) usedFlagsAddr() uint64 { return q.usedRing + usedFlagsOff }
func (q *Queue) usedIdxAddr() uint64   { return q.usedRing + usedIdxOff }
func (q *Queue) usedElemAddr(i uint16) uint64 {
	return q.usedRing + usedRingOff + UsedElemSize*uint64(i&(q.size-1))
}
func (q *Queue) availEventAddr() uint64 {
	return q.usedRing + usedRingOff + UsedElemSize*uint64(q.size)
}

// isPowerOfTwo reports whether n is a nonzero power of two.
func isPowerOfTwo(n uint16) bool { return n != 0 && n&(n-1) == 0 }
