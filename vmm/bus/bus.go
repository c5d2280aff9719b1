// Package bus maps guest port-I/O and MMIO addresses to device handlers.
//
// A Bus is an ordered set of non-overlapping [base, base+size) ranges. vCPU
// threads look ranges up on every exit, so lookups take a read lock only and
// a binary search; inserts and removals (BAR moves) take the write lock.
package bus

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Device handles accesses to one range. offset is relative to the range base
// and data holds 1, 2, 4 or 8 bytes (little-endian). Read fills data.
// Implementations must treat offset, len(data) and written values as
// guest-controlled.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// ErrOverlap is returned when a new range intersects an existing one.
var ErrOverlap = errors.New("bus: range overlaps an existing range")

type entry struct {
	base, size uint64
	name       string
	dev        Device
}

func (e entry) end() uint64 { return e.base + e.size } // exclusive

// Bus is safe for concurrent use.
type Bus struct {
	name    string
	mu      sync.RWMutex
	entries []entry // sorted by base, non-overlapping
}

// New returns an empty bus; name appears in errors ("pio", "mmio").
func New(name string) *Bus { return &Bus{name: name} }

// Insert maps [base, base+size) to dev.
func (b *Bus) Insert(base, size uint64, name string, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("%s bus: %s: invalid range %#x+%#x", b.name, name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base >= base })
	if i > 0 && b.entries[i-1].end() > base {
		p := b.entries[i-1]
		return fmt.Errorf("%s bus: %s at %#x+%#x overlaps %s at %#x+%#x: %w", b.name, name, base, size, p.name, p.base, p.size, ErrOverlap)
	}
	if i < len(b.entries) && b.entries[i].base < base+size {
		n := b.entries[i]
		return fmt.Errorf("%s bus: %s at %#x+%#x overlaps %s at %#x+%#x: %w", b.name, name, base, size, n.name, n.base, n.size, ErrOverlap)
	}
	b.entries = append(b.entries, entry{})
	copy(b.entries[i+1:], b.entries[i:])
	b.entries[i] = entry{base: base, size: size, name: name, dev: dev}
	return nil
}

// Remove unmaps the range that starts exactly at base.
func (b *Bus) Remove(base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range b.entries {
		if e.base == base {
			b.entries = append(b.entries[:i], b.entries[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%s bus: no range at %#x", b.name, base)
}

// lookup returns the device whose range holds the whole access.
func (b *Bus) lookup(addr uint64, n int) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].end() > addr })
	if i == len(b.entries) {
		return nil, 0, false
	}
	e := b.entries[i]
	if addr < e.base || addr+uint64(n) > e.end() || addr+uint64(n) < addr {
		return nil, 0, false
	}
	return e.dev, addr - e.base, true
}

// Read dispatches a guest read. It reports false when no device claims the
// whole access; the caller then returns all-ones, as an unclaimed bus does.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr, len(data))
	if !ok {
		return false
	}
	dev.Read(off, data)
	return true
}

// Write dispatches a guest write; false when no device claims it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.lookup(addr, len(data))
	if !ok {
		return false
	}
	dev.Write(off, data)
	return true
}
