// Package pcitest drives a PCI function's configuration space the way a
// guest does, through configuration mechanism #1 (ports 0xCF8/0xCFC), for
// device tests.
package pcitest

import (
	"encoding/binary"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
)

// ConfigIO addresses function 0 of Slot on bus 0 through the port bus PIO
// (where a pci.Bridge is attached).
type ConfigIO struct {
	PIO  *bus.Bus
	Slot int
}

func (c ConfigIO) address(reg int) bool {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(c.Slot)<<11|uint32(reg)&0xFC)
	return c.PIO.Write(layout.PortPCIConfig, a[:])
}

// Read reads size (1, 2 or 4) bytes at config register reg; ok is false
// if a port access went unclaimed.
func (c ConfigIO) Read(reg, size int) (v uint32, ok bool) {
	if !c.address(reg) {
		return 0, false
	}
	var b [4]byte
	ok = c.PIO.Read(layout.PortPCIConfig+4+uint64(reg&3), b[:size])
	return binary.LittleEndian.Uint32(b[:]), ok
}

// Write writes the low size bytes of v at config register reg.
func (c ConfigIO) Write(reg, size int, v uint32) bool {
	if !c.address(reg) {
		return false
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return c.PIO.Write(layout.PortPCIConfig+4+uint64(reg&3), b[:size])
}
