package kvm

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// Route types of struct kvm_irq_routing_entry.
const (
	routeIRQChip = 1
	routeMSI     = 2
)

// irqchip ids for routeIRQChip.
const (
	ChipPICMaster = 0
	ChipPICSlave  = 1
	ChipIOAPIC    = 2
)

// Route is one GSI routing entry: either an irqchip pin or an MSI message.
type Route struct {
	GSI uint32
	// IRQChip routes
	Chip, Pin uint32
	// MSI routes (IsMSI set)
	IsMSI   bool
	MSIAddr uint64
	MSIData uint32
}

// DefaultRoutes returns the routing KVM installs with the irqchip: GSI 0-15
// to both PICs and IOAPIC pins 0-15, GSI 16-23 to IOAPIC pins 16-23.
// KVM_SET_GSI_ROUTING replaces the whole table, so callers that add MSI
// routes must resubmit these too.
func DefaultRoutes() []Route {
	var r []Route
	for gsi := uint32(0); gsi < 24; gsi++ {
		if gsi < 16 {
			chip, pin := uint32(ChipPICMaster), gsi
			if gsi >= 8 {
				chip, pin = ChipPICSlave, gsi-8
			}
			r = append(r, Route{GSI: gsi, Chip: chip, Pin: pin})
		}
		r = append(r, Route{GSI: gsi, Chip: ChipIOAPIC, Pin: gsi})
	}
	return r
}

// SetGSIRouting replaces the VM's GSI routing table.
func (vm *VM) SetGSIRouting(routes []Route) error {
	const entrySize = 48 // struct kvm_irq_routing_entry: 16-byte head + 32-byte union
	buf := make([]byte, 8+entrySize*len(routes))
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(routes)))
	for i, r := range routes {
		e := buf[8+i*entrySize:]
		binary.LittleEndian.PutUint32(e[0:], r.GSI)
		if r.IsMSI {
			binary.LittleEndian.PutUint32(e[4:], routeMSI)
			binary.LittleEndian.PutUint32(e[16:], uint32(r.MSIAddr))
			binary.LittleEndian.PutUint32(e[20:], uint32(r.MSIAddr>>32))
			binary.LittleEndian.PutUint32(e[24:], r.MSIData)
		} else {
			binary.LittleEndian.PutUint32(e[4:], routeIRQChip)
			binary.LittleEndian.PutUint32(e[16:], r.Chip)
			binary.LittleEndian.PutUint32(e[20:], r.Pin)
		}
	}
	if _, err := gokvm.Ioctl(vm.fd(), ioctlSetGSIRouting, uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING (%d routes): %w", len(routes), err)
	}
	return nil
}

// irqfd flags.
const (
	irqfdDeassign = 1 << 0
	irqfdResample = 1 << 1
)

// IRQFD binds eventfd efd to gsi: a write to efd injects the GSI without a
// trip through user space on the vCPU side. resampleFD (or -1) is signalled
// when a level-triggered line is EOI'd so the device can re-assert it.
func (vm *VM) IRQFD(efd int, gsi uint32, resampleFD int) error {
	return vm.irqfd(efd, gsi, resampleFD, false)
}

// IRQFDDeassign removes an IRQFD binding.
func (vm *VM) IRQFDDeassign(efd int, gsi uint32) error {
	return vm.irqfd(efd, gsi, -1, true)
}

func (vm *VM) irqfd(efd int, gsi uint32, resampleFD int, deassign bool) error {
	a := struct {
		fd, gsi, flags, resamplefd uint32
		_                          [16]byte
	}{fd: uint32(efd), gsi: gsi}
	if resampleFD >= 0 {
		a.flags |= irqfdResample
		a.resamplefd = uint32(resampleFD)
	}
	if deassign {
		a.flags = irqfdDeassign
	}
	if _, err := gokvm.Ioctl(vm.fd(), ioctlIRQFD, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// ioeventfd flags.
const (
	ioeventfdDataMatch = 1 << 0
	ioeventfdPIO       = 1 << 1
	ioeventfdDeassign  = 1 << 2
)

// IOEventFD describes a doorbell: a guest write of Len bytes to Addr (MMIO,
// or a port when PIO) signals FD in the kernel instead of exiting to the VMM.
type IOEventFD struct {
	Addr      uint64
	Len       uint32 // 0 (any length), 1, 2, 4 or 8
	FD        int
	PIO       bool
	DataMatch *uint64 // only writes of this value, if set
}

// SetIOEventFD registers (or with deassign, removes) an ioeventfd.
func (vm *VM) SetIOEventFD(e IOEventFD, deassign bool) error {
	a := struct {
		datamatch, addr uint64
		len             uint32
		fd              int32
		flags           uint32
		_               [36]byte
	}{addr: e.Addr, len: e.Len, fd: int32(e.FD)}
	if e.PIO {
		a.flags |= ioeventfdPIO
	}
	if e.DataMatch != nil {
		a.flags |= ioeventfdDataMatch
		a.datamatch = *e.DataMatch
	}
	if deassign {
		a.flags |= ioeventfdDeassign
	}
	if _, err := gokvm.Ioctl(vm.fd(), ioctlIOEventFD, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD %#x+%d: %w", e.Addr, e.Len, err)
	}
	return nil
}
