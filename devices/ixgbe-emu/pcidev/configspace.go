// PCI config space: header, BARs and the PM, MSI, MSI-X and PCIe capabilities.

package pcidev

import (
	"encoding/binary"
	"fmt"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
	"github.com/govmm/govmm/vmm/pci"
)

// buildConfigSpace lays out the config space the package comment lists.
func (d *Device) buildConfigSpace() error {
	d.cs = pci.NewConfigSpace(pci.Header{
		VendorID:          ixgbeemu.PCIVendorID,
		DeviceID:          ixgbeemu.PCIDeviceID,
		Revision:          ixgbeemu.PCIRevisionID,
		ClassCode:         ixgbeemu.PCIClassCode,
		SubsystemVendorID: ixgbeemu.PCISubsystemVendorID,
		SubsystemID:       ixgbeemu.PCISubsystemID,
	})
	if err := d.cs.SetBAR(BARRegs, pci.BAR{Kind: pci.BARMem64, Size: ixgbeemu.PCIBAR0Size, Handler: d.nic, OnMove: d.regsMoved}); err != nil {
		return fmt.Errorf("ixgbe pcidev: BAR0: %w", err)
	}
	if err := d.cs.SetBAR(BARMSIX, pci.BAR{Kind: pci.BARMem64, Size: ixgbeemu.PCIBAR4Size, Handler: d.msix}); err != nil {
		return fmt.Errorf("ixgbe pcidev: BAR4: %w", err)
	}
	pm, pmMask := pmCap()
	if _, err := d.cs.AddCapability(pci.CapIDPowerManagement, pm, pci.CapAt(CapPMOffset), pci.CapWriteMask(pmMask)); err != nil {
		return fmt.Errorf("ixgbe pcidev: PM capability: %w", err)
	}
	msi, msiMask := msiCap()
	if _, err := d.cs.AddCapability(pci.CapIDMSI, msi, pci.CapAt(CapMSIOffset), pci.CapWriteMask(msiMask), pci.CapOnWrite(d.msiWritten)); err != nil {
		return fmt.Errorf("ixgbe pcidev: MSI capability: %w", err)
	}
	if _, err := d.msix.AddCapability(d.cs, pci.CapAt(CapMSIXOff)); err != nil {
		return fmt.Errorf("ixgbe pcidev: %w", err)
	}
	pcie, pcieMask := pcieCap()
	if _, err := d.cs.AddCapability(pci.CapIDPCIe, pcie, pci.CapAt(CapPCIeOff), pci.CapWriteMask(pcieMask)); err != nil {
		return fmt.Errorf("ixgbe pcidev: PCIe capability: %w", err)
	}
	return nil
}

// Capability bodies start after the 2-byte ID/next header, so a register at
// capability offset o is at body[o-2].

// pmCap: PCI Power Management 1.2 (§9.3.7): PMC version 3, no PME; PMCSR
// PowerState (bits 1:0) writable, No_Soft_Reset (bit 3) set so Linux
// does not expect a reset on D3hot→D0.
func pmCap() (body, mask []byte) {
	body = make([]byte, 6)
	mask = make([]byte, 6)
	binary.LittleEndian.PutUint16(body[0:], 0x0003) // PMC
	binary.LittleEndian.PutUint16(body[2:], 0x0008) // PMCSR
	mask[2] = 0x03
	return body, mask
}

// MSI capability registers (capability offsets).
const (
	msiCtl     = 2
	msiAddrLo  = 4
	msiAddrHi  = 8
	msiData    = 12
	msiCapSize = 16
	msiEnable  = 1 << 0
	msi64Bit   = 1 << 7
)

// msiCap: MSI with a 64-bit address and one message (§9.3.8.1; PCI 3.0
// §6.8.1). Enable and the Multiple Message Enable field (only 1 message
// is ever used) are writable.
func msiCap() (body, mask []byte) {
	body = make([]byte, msiCapSize-2)
	mask = make([]byte, msiCapSize-2)
	binary.LittleEndian.PutUint16(body[msiCtl-2:], msi64Bit)
	mask[msiCtl-2] = msiEnable | 0x70
	binary.LittleEndian.PutUint32(mask[msiAddrLo-2:], 0xFFFF_FFFC)
	binary.LittleEndian.PutUint32(mask[msiAddrHi-2:], 0xFFFF_FFFF)
	binary.LittleEndian.PutUint16(mask[msiData-2:], 0xFFFF)
	return body, mask
}

// PCIe capability register offsets (PCIe Base 2.1 §7.8).
const (
	pcieCaps     = 0x02
	pcieDevCap   = 0x04
	pcieDevCtl   = 0x08
	pcieLinkCap  = 0x0C
	pcieLinkCtl  = 0x10
	pcieLinkSta  = 0x12
	pcieDevCap2  = 0x24
	pcieDevCtl2  = 0x28
	pcieLinkCap2 = 0x2C
	pcieLinkCtl2 = 0x30
	pcieCapSize  = 0x3C
)

// pcieCap: a PCI Express capability v2 of an endpoint, as the 82599's
// (§9.3.10): Max_Payload_Size supported 512 B, role-based error reporting;
// Device Control defaults MRRS 512 B, relaxed ordering and no-snoop
// enabled; link 5 GT/s x8 capable and negotiated (Link Status also has
// Slot Clock Configuration); Device Capabilities 2 completion timeout
// ranges A-D and disable. ASPM and FLR are not offered.
func pcieCap() (body, mask []byte) {
	body = make([]byte, pcieCapSize-2)
	mask = make([]byte, pcieCapSize-2)
	le := binary.LittleEndian
	put16 := func(off int, v uint16) { le.PutUint16(body[off-2:], v) }
	put32 := func(off int, v uint32) { le.PutUint32(body[off-2:], v) }
	m16 := func(off int, v uint16) { le.PutUint16(mask[off-2:], v) }
	const speed5GT, widthX8 = ixgbeemu.PCIeLinkSpeed5GTs, ixgbeemu.PCIeLinkWidthX8
	put16(pcieCaps, 0x0002)                       // version 2, PCI Express Endpoint
	put32(pcieDevCap, 0x0000_8002)                // MPS 512 B, role-based error reporting
	put16(pcieDevCtl, 0x2810)                     // MRRS 512 B, no snoop, relaxed ordering
	m16(pcieDevCtl, 0x7FFF)                       // all but Initiate FLR (no FLR)
	put32(pcieLinkCap, speed5GT|widthX8<<4)       // 5 GT/s x8, no ASPM, port 0
	m16(pcieLinkCtl, 0x0FC3)                      // ASPM ctl, CCC, ext sync, clock PM, ...
	put16(pcieLinkSta, 1<<12|speed5GT|widthX8<<4) // slot clock, 5 GT/s, x8
	put32(pcieDevCap2, 0x1F)                      // completion timeout ranges A-D, disable
	m16(pcieDevCtl2, 0x001F)
	put32(pcieLinkCap2, 0x6) // supported speeds 2.5 and 5 GT/s
	put16(pcieLinkCtl2, speed5GT)
	m16(pcieLinkCtl2, 0x003F)
	return body, mask
}

// regsMoved is BAR0's OnMove: the coalesced tail registers follow the BAR.
// If KVM refuses one, coalescing stops for good (every write then exits,
// as without it).
func (d *Device) regsMoved(oldBase, newBase uint64) {
	if d.coalesce == nil {
		return
	}
	for q := range d.coalescedTails {
		if oldBase != pci.Unmapped {
			_ = d.coalesce(oldBase+ixgbeemu.RxTailOffset(q), 4, false)
		}
	}
	if newBase == pci.Unmapped {
		return
	}
	for q := range d.coalescedTails {
		if err := d.coalesce(newBase+ixgbeemu.RxTailOffset(q), 4, true); err != nil {
			d.log.Warn("receive tail writes not coalesced: each one exits", "err", err)
			for i := range q {
				_ = d.coalesce(newBase+ixgbeemu.RxTailOffset(i), 4, false)
			}
			d.coalesce = nil
			return
		}
	}
}
