// Package kvm is govmm's handle on /dev/kvm: the system, a VM and its vCPUs.
//
// It reuses github.com/bobuhiro11/gokvm/kvm for the ioctls that package
// wraps correctly (VM/vCPU creation, KVM_RUN, registers, irqchip, PIT,
// memory slots, CPUID) and adds what gokvm lacks or gets wrong: KVM_IRQFD,
// KVM_IOEVENTFD, KVM_SET_GSI_ROUTING (gokvm's entry is 24 bytes, the
// kernel's is 48) and a decoded kvm_run page. Every file
// descriptor is held as an *os.File so the garbage collector cannot close
// it while its number is in use.
package kvm

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// ioctl numbers gokvm does not define (include/uapi/linux/kvm.h).
var (
	ioctlIRQLine       = gokvm.IIOW(0x61, 8)  // KVM_IRQ_LINE, struct kvm_irq_level
	ioctlSetGSIRouting = gokvm.IIOW(0x6a, 8)  // KVM_SET_GSI_ROUTING, struct kvm_irq_routing
	ioctlIRQFD         = gokvm.IIOW(0x76, 32) // KVM_IRQFD, struct kvm_irqfd
	ioctlIOEventFD     = gokvm.IIOW(0x79, 64) // KVM_IOEVENTFD, struct kvm_ioeventfd
)

// Capabilities govmm requires (KVM_CHECK_EXTENSION numbers).
const (
	capIRQChip     = 0
	capUserMemory  = 3
	capSetTSSAddr  = 4
	capIRQRouting  = 25
	capIRQFD       = 32
	capPIT2        = 33
	capIOEventFD   = 36
	capImmediateEx = 136

	capTSCDeadline = 72 // optional: KVM_CAP_TSC_DEADLINE_TIMER
)

// System is an open /dev/kvm.
type System struct {
	f        *os.File
	runSize  int
	cpuidMax int
}

// Open opens /dev/kvm and checks the API version and the capabilities
// govmm depends on, so a missing feature is one clear error at start-up.
func Open(path string) (*System, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &System{f: f}
	v, err := gokvm.GetAPIVersion(f.Fd())
	if err != nil || v != 12 {
		f.Close()
		return nil, fmt.Errorf("%s: KVM API version %d (want 12): %v", path, v, err)
	}
	for _, c := range []struct {
		n    uintptr
		name string
	}{
		{capIRQChip, "KVM_CAP_IRQCHIP"}, {capUserMemory, "KVM_CAP_USER_MEMORY"},
		{capSetTSSAddr, "KVM_CAP_SET_TSS_ADDR"}, {capIRQRouting, "KVM_CAP_IRQ_ROUTING"},
		{capIRQFD, "KVM_CAP_IRQFD"}, {capPIT2, "KVM_CAP_PIT2"}, {capIOEventFD, "KVM_CAP_IOEVENTFD"},
		{capImmediateEx, "KVM_CAP_IMMEDIATE_EXIT"},
	} {
		if r, err := s.checkExtension(c.n); err != nil || r == 0 {
			f.Close()
			return nil, fmt.Errorf("%s lacks %s", path, c.name)
		}
	}
	n, err := gokvm.GetVCPUMMmapSize(f.Fd())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.runSize = int(n)
	return s, nil
}

func (s *System) checkExtension(c uintptr) (uintptr, error) {
	return gokvm.Ioctl(s.f.Fd(), gokvm.IIO(0x03), c)
}

// TSCDeadlineTimer reports KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC
// emulates IA32_TSC_DEADLINE. KVM_GET_SUPPORTED_CPUID leaves its CPUID bit
// clear even then; the VMM sets it.
func (s *System) TSCDeadlineTimer() bool {
	r, err := s.checkExtension(capTSCDeadline)
	return err == nil && r != 0
}

// Close closes /dev/kvm (VMs keep their own descriptors).
func (s *System) Close() error { return s.f.Close() }

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID. The kernel reports E2BIG
// when the buffer is too small, so grow it until the answer fits instead of
// guessing a fixed entry count.
func (s *System) SupportedCPUID() ([]gokvm.CPUIDEntry2, error) {
	for n := 64; n <= 4096; n *= 2 {
		c := &gokvm.CPUID{Nent: uint32(n), Entries: make([]gokvm.CPUIDEntry2, n)}
		err := gokvm.GetSupportedCPUID(s.f.Fd(), c)
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return c.Entries[:c.Nent], nil
	}
	return nil, errors.New("KVM_GET_SUPPORTED_CPUID: more than 4096 entries")
}

// VM is one KVM virtual machine.
type VM struct {
	sys *System
	f   *os.File
}

// CreateVM creates an empty VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := gokvm.CreateVM(s.f.Fd())
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	return &VM{sys: s, f: os.NewFile(fd, "kvm-vm")}, nil
}

// Close closes the VM descriptor.
func (vm *VM) Close() error { return vm.f.Close() }

func (vm *VM) fd() uintptr { return vm.f.Fd() }

// SetMemory registers host memory as guest RAM in slot.
func (vm *VM) SetMemory(slot uint32, gpa uint64, host []byte) error {
	if len(host) == 0 {
		return errors.New("SetMemory: empty region")
	}
	r := gokvm.UserspaceMemoryRegion{
		Slot:          slot,
		GuestPhysAddr: gpa,
		MemorySize:    uint64(len(host)),
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(host)))),
	}
	if err := gokvm.SetUserMemoryRegion(vm.fd(), &r); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x: %w", slot, gpa, err)
	}
	return nil
}

// SetupX86 sets the private pages KVM needs on Intel (TSS, identity map),
// creates the in-kernel irqchip (PIC, IOAPIC, LAPICs) and the PIT.
func (vm *VM) SetupX86(tssAddr, identityMap uint32) error {
	if err := gokvm.SetIdentityMapAddr(vm.fd(), identityMap); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}
	if err := gokvm.SetTSSAddr(vm.fd(), tssAddr); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
	}
	if err := gokvm.CreateIRQChip(vm.fd()); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	if err := gokvm.CreatePIT2(vm.fd()); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// SetIRQLine sets the level of an irqchip input (GSI). Safe from any
// goroutine: the kernel serialises irqchip updates.
func (vm *VM) SetIRQLine(gsi uint32, high bool) error {
	lvl := struct{ irq, level uint32 }{irq: gsi}
	if high {
		lvl.level = 1
	}
	if _, err := gokvm.Ioctl(vm.fd(), ioctlIRQLine, uintptr(unsafe.Pointer(&lvl))); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d: %w", gsi, err)
	}
	return nil
}
