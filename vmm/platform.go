package vmm

import (
	"fmt"

	"github.com/govmm/govmm/vmm/acpi"
	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
	"github.com/govmm/govmm/vmm/legacy"
	"github.com/govmm/govmm/vmm/pci"
)

// serialPort is the console UART as the machine uses it.
type serialPort interface {
	Input([]byte) int
}

// addPlatformDevices puts the boot-and-stop devices on the port bus: COM1
// for the console, the i8042 whose reset line is the guest's `reboot`, the
// ACPI sleep register that is its `poweroff`, and the PCI host bridge.
func (m *VM) addPlatformDevices() error {
	line, err := m.IRQ.LegacyLine(layout.SerialIRQ)
	if err != nil {
		return err
	}
	serial := legacy.NewSerial(m.cfg.Console, line)
	m.serial = serial
	i8042 := legacy.NewI8042(func() { m.Stop(Outcome{Kind: Reset, Reason: "i8042 reset"}) })
	sleep := legacy.NewACPISleep(func() { m.Stop(Outcome{Kind: PowerOff, Reason: "ACPI S5"}) })
	for _, d := range []struct {
		port, size uint64
		name       string
		dev        bus.Device
	}{
		{layout.PortCOM1, 8, "com1", serial},
		{layout.PortI8042Data, 1, "i8042-data", i8042.DataPort()},
		{layout.PortI8042Cmd, 1, "i8042-cmd", i8042.CommandPort()},
		{layout.PortACPISleep, 1, "acpi-sleep", sleep},
	} {
		if err := m.PIO.Insert(d.port, d.size, d.name, d.dev); err != nil {
			return err
		}
	}
	m.PCI, err = pci.NewBridge(pci.Config{PIO: m.PIO, MMIO: m.MMIO, RAMEnd: m.Mem.End(), Logger: m.log})
	if err != nil {
		return fmt.Errorf("pci: %w", err)
	}
	return nil
}

// writeACPI builds the ACPI tables and copies them to their fixed place
// below 1 MiB; it returns the RSDP address for the zero page.
func (m *VM) writeACPI() (uint64, error) {
	t, err := acpi.Build(acpi.Config{
		CPUs: m.cfg.CPUs,
		Base: layout.ACPIStart,
		PCI: &acpi.PCIConfig{
			MMIO32Base: layout.PCIMMIO32Start,
			MMIO32Size: layout.PCIMMIO32End - layout.PCIMMIO32Start,
			MMIO64Base: layout.PCIMMIO64Start(m.Mem.End()),
			MMIO64Size: layout.PCIMMIO64Size,
		},
	})
	if err != nil {
		return 0, err
	}
	if err := m.Mem.WriteAt(t.Image, t.Base); err != nil {
		return 0, fmt.Errorf("acpi tables: %w", err)
	}
	return t.RSDP, nil
}

// ConsoleInput feeds bytes to the guest console (COM1 receive); bytes
// beyond the UART's input buffer are dropped, as a real line would.
func (m *VM) ConsoleInput(b []byte) { m.serial.Input(b) }
