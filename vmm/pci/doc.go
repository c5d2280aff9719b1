// Package pci emulates PCI bus 0 of a govmm machine: a host bridge
// reached through configuration mechanism #1 (ports 0xCF8-0xCFF) and the
// config spaces of the functions plugged into it.
//
// The guest kernel boots without firmware, so nobody else assigns BAR
// addresses: Bridge.Add does what a BIOS would, allocating every BAR from
// the windows in vmm/layout, mapping it on the port or MMIO bus and
// enabling decode. The guest may still size and move BARs afterwards
// (Linux does both during enumeration); the bridge follows every write
// to COMMAND and the BARs, keeping the bus mappings identical to what the
// registers say and telling the device through BAR.OnMove.
//
// Writing a device:
//
//	cs := pci.NewConfigSpace(pci.Header{VendorID: 0x8086, DeviceID: 0x10FB, ClassCode: 0x020000})
//	cs.SetBAR(0, pci.BAR{Kind: pci.BARMem64, Size: 0x20000, Handler: regs, OnMove: d.barMoved})
//	cs.AddCapability(pci.CapIDMSIX, msixBody, pci.CapAt(0x70), pci.CapWriteMask(mask), pci.CapOnWrite(d.msixCtl))
//	slot, err := bridge.Add(cs) // or a struct embedding *pci.ConfigSpace
//
// Only conventional 256-byte config space, bus 0 and function 0 of each
// slot exist; there is no ECAM (MMCONFIG), no expansion ROM and no reset
// control register at 0xCF9 (which falls inside the bridge's port range).
package pci
