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
}

// platform returns the view of m that devices attach to.
func (m *VM) platform() *Platform {
	return &Platform{
		Mem: m.Mem, PCI: m.PCI, VM: m.vm, Log: m.log,
		DeviceThread: m.cfg.Placement.DeviceThread(),
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
