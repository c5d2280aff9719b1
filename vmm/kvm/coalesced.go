// Coalesced MMIO (KVM_REGISTER_COALESCED_MMIO): guest writes to a
// registered range are queued by the kernel in a ring shared with user
// space instead of each exiting to the VMM; the VMM replays them, in
// order, before it handles its next exit. QEMU uses it for device
// registers whose writes need no immediate action (e1000's).

package kvm

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

const (
	capCoalescedMMIO = 15

	ioctlRegisterCoalescedMMIO   = 0x4010AE67 // _IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)
	ioctlUnregisterCoalescedMMIO = 0x4010AE68 // _IOW(KVMIO, 0x68, struct kvm_coalesced_mmio_zone)

	// struct kvm_coalesced_mmio_ring: u32 first, u32 last, then entries of
	// struct kvm_coalesced_mmio: u64 phys_addr, u32 len, u32 pad/pio,
	// u8 data[8].
	coalescedHeader = 8
	coalescedEntry  = 24
)

// coalescedZone is struct kvm_coalesced_mmio_zone.
type coalescedZone struct {
	Addr uint64
	Size uint32
	Pad  uint32 // pio: 0 for MMIO
}

// CoalescedMMIOPage returns the page of a vCPU's mapping that holds the
// coalesced MMIO ring (KVM_CAP_COALESCED_MMIO), or 0 if KVM has none or
// the mapping does not reach it.
func (s *System) CoalescedMMIOPage() int {
	r, err := s.checkExtension(capCoalescedMMIO)
	if err != nil || r == 0 || (int(r)+1)*unix.Getpagesize() > s.runSize {
		return 0
	}
	return int(r)
}

// SetCoalescedMMIO registers (on) or removes a coalesced MMIO range.
func (vm *VM) SetCoalescedMMIO(addr uint64, size uint32, on bool) error {
	z := coalescedZone{Addr: addr, Size: size}
	req, name := uintptr(ioctlRegisterCoalescedMMIO), "KVM_REGISTER_COALESCED_MMIO"
	if !on {
		req, name = ioctlUnregisterCoalescedMMIO, "KVM_UNREGISTER_COALESCED_MMIO"
	}
	if _, err := gokvm.Ioctl(vm.fd(), req, uintptr(unsafe.Pointer(&z))); err != nil {
		return fmt.Errorf("%s %#x+%d: %w", name, addr, size, err)
	}
	return nil
}

// CoalescedRing is the coalesced MMIO ring as one vCPU's mapping shows
// it. Every vCPU maps the same ring: its users must drain it under one
// lock.
type CoalescedRing struct {
	page []byte
	max  uint32 // entries in the ring
}

// CoalescedRing returns the ring in c's mapping at page (from
// System.CoalescedMMIOPage), nil for page 0.
func (c *VCPU) CoalescedRing(page int) *CoalescedRing {
	ps := unix.Getpagesize()
	if page <= 0 || (page+1)*ps > len(c.run) {
		return nil
	}
	return &CoalescedRing{page: c.run[page*ps : (page+1)*ps], max: uint32((ps - coalescedHeader) / coalescedEntry)}
}

// Pending reports whether writes are queued (a hint: read without the
// drainers' lock).
func (r *CoalescedRing) Pending() bool {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.page[0]))) != atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.page[4])))
}

// Drain hands every queued write to write, oldest first, and frees its
// entry; it returns how many there were. The kernel writes an entry and
// then moves last (smp_wmb); the entry is read after last, and first
// moves on only once the entry has been used.
func (r *CoalescedRing) Drain(write func(addr uint64, data []byte)) int {
	first := (*uint32)(unsafe.Pointer(&r.page[0]))
	last := (*uint32)(unsafe.Pointer(&r.page[4]))
	n := 0
	for {
		f, l := atomic.LoadUint32(first), atomic.LoadUint32(last)
		if f == l || f >= r.max || l >= r.max {
			return n
		}
		e := r.page[coalescedHeader+int(f)*coalescedEntry:][:coalescedEntry]
		addr := binary.LittleEndian.Uint64(e[0:])
		ln := min(binary.LittleEndian.Uint32(e[8:]), 8)
		write(addr, e[16:16+ln])
		atomic.StoreUint32(first, (f+1)%r.max)
		n++
	}
}
