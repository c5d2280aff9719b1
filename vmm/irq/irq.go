// Package irq hands devices interrupt lines they can raise from any
// goroutine without a vCPU exit: MSI vectors backed by an eventfd bound to a
// GSI with KVM_IRQFD, and legacy level lines driven with KVM_IRQ_LINE.
package irq

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/internal/osthread"
	"github.com/govmm/govmm/vmm/kvm"
	"github.com/govmm/govmm/vmm/layout"
)

// VM is the part of *kvm.VM the router needs (a fake in tests).
type VM interface {
	SetGSIRouting([]kvm.Route) error
	IRQFD(efd int, gsi uint32, resampleFD int) error
	IRQFDDeassign(efd int, gsi uint32) error
	SetIRQLine(gsi uint32, high bool) error
}

// maxGSI bounds MSI allocations; KVM's default KVM_MAX_IRQ_ROUTES is 4096.
const maxGSI = 4096

// Router owns the VM's GSI routing table. KVM_SET_GSI_ROUTING replaces the
// whole table, so every change rebuilds it from the legacy routes plus the
// current MSI routes, under one lock.
type Router struct {
	vm      VM
	mu      sync.Mutex
	nextGSI uint32
	msi     map[uint32]*MSIVector
}

// NewRouter installs the default legacy routing.
func NewRouter(vm VM) (*Router, error) {
	r := &Router{vm: vm, nextGSI: layout.NumLegacyGSI, msi: map[uint32]*MSIVector{}}
	if err := vm.SetGSIRouting(kvm.DefaultRoutes()); err != nil {
		return nil, err
	}
	return r, nil
}

// commit must be called with mu held.
func (r *Router) commit() error {
	routes := kvm.DefaultRoutes()
	gsis := make([]uint32, 0, len(r.msi))
	for g := range r.msi {
		gsis = append(gsis, g)
	}
	sort.Slice(gsis, func(i, j int) bool { return gsis[i] < gsis[j] })
	for _, g := range gsis {
		v := r.msi[g]
		if v.enabled {
			routes = append(routes, kvm.Route{GSI: g, IsMSI: true, MSIAddr: v.addr, MSIData: v.data})
		}
	}
	return r.vm.SetGSIRouting(routes)
}

// MSIVector is one MSI/MSI-X message: Trigger writes the eventfd and KVM
// delivers the message programmed with Update.
type MSIVector struct {
	r       *Router
	gsi     uint32
	efd     int
	addr    uint64
	data    uint32
	enabled bool
}

// AllocMSI allocates a GSI and an eventfd bound to it. The vector delivers
// nothing until Update gives it a message.
func (r *Router) AllocMSI() (*MSIVector, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nextGSI >= maxGSI {
		return nil, errors.New("irq: out of GSIs for MSI vectors")
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("irq: eventfd: %w", err)
	}
	v := &MSIVector{r: r, gsi: r.nextGSI, efd: efd}
	// The route must exist before KVM_IRQFD binds the GSI.
	r.msi[v.gsi] = v
	if err := r.commit(); err != nil {
		delete(r.msi, v.gsi)
		unix.Close(efd)
		return nil, err
	}
	if err := r.vm.IRQFD(efd, v.gsi, -1); err != nil {
		delete(r.msi, v.gsi)
		unix.Close(efd)
		return nil, err
	}
	r.nextGSI++
	return v, nil
}

// GSI returns the vector's GSI.
func (v *MSIVector) GSI() uint32 { return v.gsi }

// Update sets the message (address/data as the guest wrote them into the
// MSI capability or MSI-X table) and whether it may be delivered. A masked
// vector keeps its route off so a Trigger is dropped rather than delivered
// with a stale message; the device tracks pending bits itself.
func (v *MSIVector) Update(addr uint64, data uint32, enabled bool) error {
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	if v.addr == addr && v.data == data && v.enabled == enabled {
		return nil
	}
	v.addr, v.data, v.enabled = addr, data, enabled
	return v.r.commit()
}

// Trigger raises the interrupt. It is a single write(2) on the eventfd,
// safe from any goroutine.
func (v *MSIVector) Trigger() error {
	if err := osthread.Signal(v.efd); err != nil {
		return fmt.Errorf("irq: signal gsi %d: %w", v.gsi, err)
	}
	return nil
}

// Close unbinds and frees the vector.
func (v *MSIVector) Close() error {
	v.r.mu.Lock()
	defer v.r.mu.Unlock()
	err := v.r.vm.IRQFDDeassign(v.efd, v.gsi)
	delete(v.r.msi, v.gsi)
	if cerr := v.r.commit(); err == nil {
		err = cerr
	}
	unix.Close(v.efd)
	return err
}

// Line is a legacy level-triggered interrupt input (an IOAPIC pin).
type Line struct {
	vm  VM
	gsi uint32
	mu  sync.Mutex
	hi  bool
}

// LegacyLine returns the line for IOAPIC/PIC input gsi (< 24).
func (r *Router) LegacyLine(gsi uint32) (*Line, error) {
	if gsi >= layout.NumLegacyGSI {
		return nil, fmt.Errorf("irq: legacy GSI %d out of range", gsi)
	}
	return &Line{vm: r.vm, gsi: gsi}, nil
}

// SetLevel drives the line; repeated equal levels cost no ioctl.
func (l *Line) SetLevel(high bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hi == high {
		return nil
	}
	l.hi = high
	return l.vm.SetIRQLine(l.gsi, high)
}
