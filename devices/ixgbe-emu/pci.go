package ixgbeemu

// PCI identity and layout of the guest-visible function (82599 datasheet
// §9, "PCIe Programming Interface"). Wiring these into a config space is
// done by the PCI layer; the model only exports the numbers.
const (
	PCIVendorID          = 0x8086
	PCIDeviceID          = 0x10F7 // 82599 KX4 backplane (IXGBE_DEV_ID_82599_KX4): no SFP probing
	PCISubsystemVendorID = 0x8086
	PCISubsystemID       = 0x000C
	PCIRevisionID        = 0x01
	PCIClassCode         = 0x020000 // network, Ethernet

	// BAR0: 64-bit memory BAR holding the CSR space (§9.3.6.1).
	PCIBAR0Size = BAR0Size
	// BAR4: 64-bit memory BAR holding the MSI-X table and PBA (§9.3.6.1).
	PCIBAR4Size        = 16 << 10
	MSIXVectors        = 64 // Table Size field reads 63 (§9.3.8)
	MSIXTableBAR       = 4
	MSIXTableOffset    = 0x0000
	MSIXPBABAR         = 4
	MSIXPBAOffset      = 0x2000
	PCICapPMOffset     = 0x40 // power management (§9.3.7)
	PCICapMSIOffset    = 0x50 // MSI (§9.3.8.1)
	PCICapMSIXOffset   = 0x70 // MSI-X; the driver reads the table size at 0x72
	PCICapPCIeOffset   = 0xA0 // PCI Express capability (§9.3.10)
	PCIeLinkSpeed5GTs  = 2    // Link Status.Current Link Speed (5 GT/s)
	PCIeLinkWidthX8    = 8    // Link Status.Negotiated Link Width
	PCIeLinkStatusWord = PCIeLinkSpeed5GTs | PCIeLinkWidthX8<<4
)
