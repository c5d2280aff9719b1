// Package guestmem owns guest RAM: the anonymous mappings KVM runs the guest
// on, and the only code in govmm that turns a guest-physical address into
// host memory.
//
// Every guest physical address (GPA) and length that reaches this package may
// come from a hostile guest (descriptor tables, ring indices, register
// writes). Every accessor therefore checks that the whole access lies inside
// one region and reports ErrOutOfRange instead of panicking. Callers get
// slices that alias guest RAM (no copy) so devices can DMA in place; such a
// slice is only valid while the Memory is open.
package guestmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for an access that is not wholly inside one RAM
// region.
var ErrOutOfRange = errors.New("guest memory access out of range")

// ErrUnaligned is returned by the atomic accessors for a misaligned GPA.
var ErrUnaligned = errors.New("unaligned atomic guest memory access")

// Region is one contiguous range of guest RAM.
type Region struct {
	GPA  uint64 // first guest-physical address
	Host []byte // host mapping, len = region size
}

// End returns the exclusive end GPA.
func (r Region) End() uint64 { return r.GPA + uint64(len(r.Host)) }

// Memory is a fixed set of non-overlapping RAM regions. Its layout never
// changes after New, so lookups need no lock.
type Memory struct {
	regions []Region // sorted by GPA
	// span is the one host mapping New made: the regions back to back, in
	// GPA order, then scratch (nil for FromRegions). A NIC that registers
	// host memory with the kernel (an AF_XDP UMEM) registers span: one
	// contiguous range whatever holes the guest-physical map has.
	span    []byte
	scratch []byte
	starts  []uint64 // starts[i]: region i's offset in span
	mapping []byte   // what was mmapped (span, and a hugepage tail)
	huge    bool
}

// Layout describes one region to create: [GPA, GPA+Size).
type Layout struct {
	GPA, Size uint64
}

// New mmaps anonymous, private, page-aligned memory for the regions.
// Regions must be page-aligned, non-empty, in order and must not overlap.
func New(layout []Layout) (*Memory, error) { return NewWithScratch(layout, 0) }

// NewWithScratch is New with scratch bytes of host-only memory (never
// mapped into the guest) in the same mapping, after the last region: a
// device that must hand the kernel one range holding both guest buffers
// and its own bounce buffers gets it from Span.
func NewWithScratch(layout []Layout, scratch uint64) (*Memory, error) {
	return Map(layout, Options{Scratch: scratch})
}

// Options are how Map backs guest RAM.
type Options struct {
	Scratch uint64 // host-only bytes after the regions (NewWithScratch)
	// HugePages backs the mapping with 2 MiB hugetlb pages from the host's
	// pool (/proc/sys/vm/nr_hugepages): fewer TLB misses for the guest,
	// and memory a zero-copy NIC can DMA into across 4 KiB boundaries.
	HugePages bool
	// THP places the mapping on a 2 MiB boundary and advises transparent
	// hugepages (MADV_HUGEPAGE), as QEMU does for its guest RAM: a guest
	// 2 MiB page then sits on one host huge page, which KVM maps with one
	// nested page-table entry (fewer nested page faults, far fewer
	// mmu-notifier updates under a running guest). Advice only: a host with
	// THP off keeps 4 KiB pages. Off by default until its effect on the
	// nested test host is measured (README, Known problems).
	THP bool
}

// HugePageSize is the page size of Options.HugePages.
const HugePageSize = 2 << 20

// Map mmaps the regions back to back in one mapping, then the scratch.
func Map(layout []Layout, o Options) (*Memory, error) {
	page := uint64(unix.Getpagesize())
	total := uint64(0)
	var prevEnd uint64
	for i, l := range layout {
		if l.Size == 0 || l.GPA%page != 0 || l.Size%page != 0 || l.GPA+l.Size < l.GPA {
			return nil, fmt.Errorf("guestmem: bad region %#x+%#x", l.GPA, l.Size)
		}
		if i > 0 && prevEnd > l.GPA {
			return nil, fmt.Errorf("guestmem: region %#x+%#x overlaps or is out of order", l.GPA, l.Size)
		}
		prevEnd = l.GPA + l.Size
		total += l.Size
	}
	scratch := (o.Scratch + page - 1) / page * page
	size := total + scratch
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE
	if o.HugePages {
		// The mapping is whole hugepages (its tail past the scratch unused),
		// reserved up front: a pool too small fails here, not later in
		// the guest with SIGBUS.
		size = (size + HugePageSize - 1) / HugePageSize * HugePageSize
		flags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_HUGETLB
	}
	if total == 0 || size < total || size > uint64(^uint(0)>>1)-HugePageSize {
		return nil, fmt.Errorf("guestmem: %d bytes of RAM and %d of scratch cannot be mapped", total, scratch)
	}
	var b []byte
	var err error
	if o.THP || o.HugePages {
		b, err = mapAligned(uintptr(size), flags)
	} else {
		b, err = mapAnywhere(uintptr(size), flags)
	}
	if err != nil {
		if o.HugePages {
			return nil, fmt.Errorf("guestmem: %d MiB of 2 MiB hugepages: %w (reserve them: /proc/sys/vm/nr_hugepages)", size>>20, err)
		}
		return nil, fmt.Errorf("guestmem: mmap %d bytes: %w", size, err)
	}
	if o.THP && !o.HugePages {
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	}
	m := &Memory{span: b, huge: o.HugePages}
	off := uint64(0)
	for _, l := range layout {
		// Full slice expressions: no append can grow a region into the next.
		m.regions = append(m.regions, Region{GPA: l.GPA, Host: b[off : off+l.Size : off+l.Size]})
		m.starts = append(m.starts, off)
		off += l.Size
	}
	m.scratch = b[total : total+scratch : total+scratch]
	m.span = b[:total+scratch]
	m.mapping = b
	return m, nil
}

// PageSize returns the host page size backing the mapping: what a chunk
// a NIC DMAs into must not cross.
func (m *Memory) PageSize() uint64 {
	if m.huge {
		return HugePageSize
	}
	return uint64(unix.Getpagesize())
}

// Span returns New's whole mapping (regions in GPA order, then scratch),
// nil for memory made by FromRegions.
func (m *Memory) Span() []byte { return m.span }

// Scratch returns the host-only memory after the regions in Span.
func (m *Memory) Scratch() []byte { return m.scratch }

// SpanOffset returns the offset in Span of the n bytes at gpa, which must
// lie inside one region.
func (m *Memory) SpanOffset(gpa, n uint64) (uint64, error) {
	if m.span == nil {
		return 0, errors.New("guestmem: memory has no span (not made by New)")
	}
	for i := range m.regions {
		r := &m.regions[i]
		if gpa >= r.GPA && gpa < r.End() && n <= r.End()-gpa {
			return m.starts[i] + gpa - r.GPA, nil
		}
	}
	return 0, fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
}

// FromRegions wraps caller-owned buffers (tests and in-process device
// drivers use plain Go slices as "guest RAM").
func FromRegions(regions ...Region) (*Memory, error) {
	m := &Memory{}
	for _, r := range regions {
		if len(r.Host) == 0 || r.End() < r.GPA {
			return nil, fmt.Errorf("guestmem: bad region %#x+%#x", r.GPA, len(r.Host))
		}
		if n := len(m.regions); n > 0 && m.regions[n-1].End() > r.GPA {
			return nil, fmt.Errorf("guestmem: region %#x overlaps or is out of order", r.GPA)
		}
		m.regions = append(m.regions, r)
	}
	return m, nil
}

// mapAnywhere maps size bytes where the kernel likes; Close unmaps it by
// address, as it does mapAligned's.
func mapAnywhere(size uintptr, flags int) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), size), nil
}

// mapAligned maps size bytes at a 2 MiB-aligned address: guest-physical
// 2 MiB pages (and regions, whose GPAs and sizes are 2 MiB multiples in
// practice) then line up with host huge pages. It reserves size plus one
// huge page of address space, maps the aligned part over it and returns
// the slack on both sides.
func mapAligned(size uintptr, flags int) ([]byte, error) {
	const align = HugePageSize
	res, err := unix.MmapPtr(-1, 0, nil, size+align, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	base := uintptr(res)
	head := (base+align-1)&^(align-1) - base
	start := unsafe.Add(res, head)
	p, err := unix.MmapPtr(-1, 0, start, size, unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_FIXED)
	if err != nil {
		_ = unix.MunmapPtr(res, size+align)
		return nil, err
	}
	if head > 0 {
		_ = unix.MunmapPtr(res, head)
	}
	if tail := align - head; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(start, size), tail)
	}
	// The kernel owns this range until Close unmaps it; the slice is its
	// only handle.
	return unsafe.Slice((*byte)(p), size), nil
}

// Close unmaps memory created by New. Slices handed out earlier become invalid.
func (m *Memory) Close() error {
	var err error
	if m.mapping != nil {
		if e := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m.mapping)), uintptr(len(m.mapping))); e != nil {
			err = fmt.Errorf("guestmem: munmap: %w", e)
		}
	}
	m.regions, m.span, m.scratch, m.starts, m.mapping = nil, nil, nil, nil, nil
	return err
}

// Regions returns the RAM regions (for KVM slot registration and e820).
func (m *Memory) Regions() []Region { return m.regions }

// Size returns the total RAM in bytes.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += uint64(len(r.Host))
	}
	return n
}

// End returns the exclusive end of the highest region.
func (m *Memory) End() uint64 {
	if len(m.regions) == 0 {
		return 0
	}
	return m.regions[len(m.regions)-1].End()
}

// Slice returns the n bytes at gpa as a slice aliasing guest RAM. The range
// must not cross a region boundary. n == 0 is valid for any gpa inside RAM.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for i := range m.regions {
		r := &m.regions[i]
		if gpa < r.GPA || gpa >= r.End() {
			continue
		}
		off := gpa - r.GPA
		if n > uint64(len(r.Host))-off {
			break
		}
		return r.Host[off : off+n : off+n], nil
	}
	return nil, fmt.Errorf("%w: %#x+%#x", ErrOutOfRange, gpa, n)
}

// Contains reports whether [gpa, gpa+n) lies inside one region.
func (m *Memory) Contains(gpa, n uint64) bool {
	_, err := m.Slice(gpa, n)
	return err == nil
}

// ReadAt copies len(p) bytes at gpa into p.
func (m *Memory) ReadAt(p []byte, gpa uint64) error {
	s, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WriteAt copies p into guest RAM at gpa.
func (m *Memory) WriteAt(p []byte, gpa uint64) error {
	s, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// Uint16 reads a little-endian uint16.
func (m *Memory) Uint16(gpa uint64) (uint16, error) {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian uint32.
func (m *Memory) Uint32(gpa uint64) (uint32, error) {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian uint64.
func (m *Memory) Uint64(gpa uint64) (uint64, error) {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes a little-endian uint16.
func (m *Memory) PutUint16(gpa uint64, v uint16) error {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian uint32.
func (m *Memory) PutUint32(gpa uint64, v uint32) error {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian uint64.
func (m *Memory) PutUint64(gpa uint64, v uint64) error {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}

// The atomic accessors are for values shared with a running guest (virtqueue
// indices, descriptor status words). x86-64 is little-endian, so a native
// atomic load of an aligned word is the little-endian value the guest wrote.
// sync/atomic gives sequentially consistent ordering, which is at least the
// acquire/release the virtio spec requires around ring index updates.

func (m *Memory) atomicPtr(gpa, size uint64) (unsafe.Pointer, error) {
	if gpa%size != 0 {
		return nil, fmt.Errorf("%w: %#x", ErrUnaligned, gpa)
	}
	s, err := m.Slice(gpa, size)
	if err != nil {
		return nil, err
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	// Host mappings are page-aligned and gpa is size-aligned, so p is too;
	// check anyway since FromRegions accepts arbitrary Go slices.
	if uintptr(p)%uintptr(size) != 0 {
		return nil, fmt.Errorf("%w: host address of %#x", ErrUnaligned, gpa)
	}
	return p, nil
}

// LoadUint16 atomically loads the aligned uint16 at gpa. sync/atomic has
// no 16-bit operations, so it loads the enclosing aligned 32-bit word.
func (m *Memory) LoadUint16(gpa uint64) (uint16, error) {
	if gpa%2 != 0 {
		return 0, fmt.Errorf("%w: %#x", ErrUnaligned, gpa)
	}
	p, err := m.atomicPtr(gpa&^3, 4)
	if err != nil {
		return 0, err
	}
	return uint16(atomic.LoadUint32((*uint32)(p)) >> (8 * (gpa & 2))), nil
}

// StoreUint16 atomically stores v at the aligned gpa. It uses a 32-bit
// compare-and-swap on the enclosing word so that the other half-word, which
// the guest may be writing concurrently, is never clobbered.
func (m *Memory) StoreUint16(gpa uint64, v uint16) error {
	if gpa%2 != 0 {
		return fmt.Errorf("%w: %#x", ErrUnaligned, gpa)
	}
	p, err := m.atomicPtr(gpa&^3, 4)
	if err != nil {
		return err
	}
	shift := 8 * (gpa & 2)
	mask := uint32(0xFFFF) << shift
	for {
		old := atomic.LoadUint32((*uint32)(p))
		nw := old&^mask | uint32(v)<<shift
		if atomic.CompareAndSwapUint32((*uint32)(p), old, nw) {
			return nil
		}
	}
}

// LoadUint32 atomically loads the aligned uint32 at gpa.
func (m *Memory) LoadUint32(gpa uint64) (uint32, error) {
	p, err := m.atomicPtr(gpa, 4)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint32((*uint32)(p)), nil
}

// StoreUint32 atomically stores the aligned uint32 at gpa.
func (m *Memory) StoreUint32(gpa uint64, v uint32) error {
	p, err := m.atomicPtr(gpa, 4)
	if err != nil {
		return err
	}
	atomic.StoreUint32((*uint32)(p), v)
	return nil
}

// LoadUint64 atomically loads the aligned uint64 at gpa.
func (m *Memory) LoadUint64(gpa uint64) (uint64, error) {
	p, err := m.atomicPtr(gpa, 8)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint64((*uint64)(p)), nil
}

// StoreUint64 atomically stores the aligned uint64 at gpa.
func (m *Memory) StoreUint64(gpa uint64, v uint64) error {
	p, err := m.atomicPtr(gpa, 8)
	if err != nil {
		return err
	}
	atomic.StoreUint64((*uint64)(p), v)
	return nil
}

// Fence is a full memory barrier between the VMM's plain accesses to guest
// RAM and a following index load/store (virtio's "mb()"), for the places
// where the spec asks for one between two plain accesses.
func Fence() {
	var x atomic.Uint32
	x.Add(0) // LOCK XADD: a full barrier on x86
}
