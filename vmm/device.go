package vmm

import (
	"errors"
	"log/slog"

	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/kvm"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// Device is a peripheral added to the platform from above: a NIC, say.
// The platform knows devices only through this interface, so it imports
// no device model; which devices a guest gets is decided by the machine
// assembly (package machine), as Firecracker's builder and rust-vmm's
// device manager decide it over their platform crates.
type Device interface {
	// Attach wires the device into the platform: its PCI function on the
	// bridge, its interrupt vectors, its doorbells. New calls it once,
	// after the platform's own devices exist and before the guest's
	// firmware tables are written and its vCPUs created.
	Attach(p *Platform) error
	// Close stops the device and releases what it holds. The VM calls it
	// once for every device whose Attach it called (also a failed one, so
	// a partial attach is undone), before guest memory goes away.
	Close() error
}

// Platform is what a Device may use of the VM.
type Platform struct {
	Mem *guestmem.Memory // guest RAM: the only memory a device may touch for the guest
	PCI *pci.Bridge      // where PCI functions go
	VM  *kvm.VM          // for ioeventfd doorbells
	Log *slog.Logger
	// AllocMSI routes one new MSI (an irqfd) for a device's interrupt vector.
	AllocMSI func() (msix.Vector, error)
	// DeviceThread, when non-nil, is run by a device worker on its locked OS
	// thread: it keeps the worker off the vCPUs' CPUs (--cpu-pin).
	DeviceThread func()
	// CoalesceMMIO, when non-nil, has KVM queue the guest's writes to
	// [addr, addr+size) instead of exiting for each (on), or stops it.
	// The vCPUs replay queued writes on the MMIO bus, in order, before
	// they handle their next exit: a register may be coalesced when its
	// writes need no action before the guest's next exit to the VMM (a
	// read of any register, for one, comes after them).
	CoalesceMMIO func(addr uint64, size uint32, on bool) error
}

// platform returns the view of m that devices attach to.
func (m *VM) platform() *Platform {
	return &Platform{
		Mem: m.Mem, PCI: m.PCI, VM: m.vm, Log: m.log,
		DeviceThread: m.cfg.Placement.DeviceThread(),
		CoalesceMMIO: m.coalesceMMIO(),
		AllocMSI: func() (msix.Vector, error) {
			vec, err := m.IRQ.AllocMSI()
			if err != nil {
				return nil, err // a plain nil, not a nil *MSIVector in an interface
			}
			return vec, nil
		},
	}
}

// attachDevices attaches cfg.Devices in order.
func (m *VM) attachDevices() error {
	p := m.platform()
	for _, d := range m.cfg.Devices {
		m.devices = append(m.devices, d)
		if err := d.Attach(p); err != nil {
			return err
		}
	}
	return nil
}

// closeDevices closes the attached devices, the last attached first.
func (m *VM) closeDevices() error {
	var errs []error
	for i := len(m.devices) - 1; i >= 0; i-- {
		errs = append(errs, m.devices[i].Close())
	}
	m.devices = nil
	return errors.Join(errs...)
}

// coalesceMMIO is Platform.CoalesceMMIO: nil without KVM's coalesced
// MMIO ring (or with it turned off).
func (m *VM) coalesceMMIO() func(addr uint64, size uint32, on bool) error {
	if m.vm == nil || m.coalescedPage == 0 {
		return nil
	}
	return m.vm.SetCoalescedMMIO
}

// replayCoalesced hands the writes KVM queued to the MMIO bus, oldest
// first; a vCPU calls it after every exit, before handling it, so that a
// read or a write that exits is ordered after them.
func (m *VM) replayCoalesced(r *kvm.CoalescedRing) {
	if r == nil || !r.Pending() {
		return
	}
	m.coalescedMu.Lock()
	defer m.coalescedMu.Unlock()
	r.Drain(func(addr uint64, data []byte) {
		if !m.MMIO.Write(addr, data) {
			m.unclaimed("coalesced mmio write", addr, len(data))
		}
	})
}
