package acpi

import "github.com/govmm/govmm/vmm/layout"

// DSDT (ACPI 6.4 §5.2.11.1). Revision 2 makes AML integers 64-bit.
const dsdtRevision = 2

// buildDSDT returns the DSDT: the \_S5 sleep package that lets the guest
// power off and, optionally, the PCI host bridge.
func buildDSDT(pci *PCIConfig) ([]byte, error) {
	var e amlEncoder
	// Name(\_S5, Package(){SLP_TYPa, SLP_TYPb, 0, 0}) (§7.4.2): OSPM writes
	// SLP_TYPa into the sleep control register's SLP_TYP field.
	aml := e.name(`\_S5`, e.pkgOf(integer(layout.ACPIS5SlpTyp), integer(0), integer(0), integer(0)))
	sb := [][]byte{com1(&e)}
	if pci != nil {
		sb = append(sb, pciHostBridge(&e, pci))
	}
	aml = append(aml, e.scope(`\_SB`, sb...)...)
	if e.err != nil {
		return nil, e.err
	}
	b := newSDT("DSDT", dsdtRevision, "GOVMMDSD", headerLen+len(aml))
	copy(b[headerLen:], aml)
	return finishSDT(b), nil
}

// com1 declares the console UART (PNP0501) with its ports and IRQ. In
// HW-reduced mode Linux has no legacy PIC, so ISA IRQs are not
// pre-allocated: without this device the 8250 driver's request_irq(4)
// fails, the console tty gets an I/O error and user-space output is lost.
// Declaring it lets 8250_pnp map GSI 4 through the IOAPIC.
func com1(e *amlEncoder) []byte {
	crs := append(ioPort(layout.PortCOM1, 8), extendedIRQ(layout.SerialIRQ, irqConsumer|irqEdge)...)
	crs = append(crs, endTag...)
	return e.device("COM1",
		e.name("_HID", e.eisaID("PNP0501")),
		e.name("_UID", integer(0)),
		e.name("_CRS", e.buffer(crs)),
	)
}

// Extended Interrupt Descriptor flags (§6.4.3.6).
const (
	irqConsumer = 1 << 0
	irqEdge     = 1 << 1 // active-high unless bit 2 is set
)

// extendedIRQ is an Extended Interrupt Descriptor for one GSI (§6.4.3.6).
func extendedIRQ(gsi uint32, flags byte) []byte {
	return le.AppendUint32([]byte{0x89, 6, 0, flags, 1}, gsi)
}

// pciHostBridge describes PCI segment 0, bus 0, as a PNP0A03 root bridge
// (PCI Firmware Spec 3.2 §4.1; ACPI 6.4 §6.1.5 _HID, §6.2.2 _CRS). Its _CRS
// lists the windows PCI BARs may be placed in; Linux's ACPI PCI root driver
// uses them as the root bus resources. There is no _PRT: INTx is not
// routed, devices are expected to use MSI/MSI-X.
func pciHostBridge(e *amlEncoder, pci *PCIConfig) []byte {
	var crs []byte
	crs = append(crs, wordAddrSpace(rsBusNumber, 0, 0x00, 0xFF)...)
	// I/O windows around the configuration mechanism's ports, which the
	// bridge itself consumes (as QEMU's i440FX DSDT does).
	crs = append(crs, ioPort(layout.PortPCIConfig, 8)...)
	crs = append(crs, wordAddrSpace(rsIO, rsIOEntireRange, 0x0000, layout.PortPCIConfig-1)...)
	crs = append(crs, wordAddrSpace(rsIO, rsIOEntireRange, layout.PortPCIConfig+8, 0xFFFF)...)
	crs = append(crs, dwordMemory(uint32(pci.MMIO32Base), uint32(pci.MMIO32Base+pci.MMIO32Size-1))...)
	if pci.MMIO64Size != 0 {
		crs = append(crs, qwordMemory(pci.MMIO64Base, pci.MMIO64Base+pci.MMIO64Size-1)...)
	}
	crs = append(crs, endTag...)

	return e.device("PCI0",
		e.name("_HID", e.eisaID("PNP0A03")),
		e.name("_UID", integer(0)),
		e.name("_SEG", integer(0)),
		e.name("_BBN", integer(0)),
		e.name("_CRS", e.buffer(crs)),
	)
}

// Resource descriptors (ACPI 6.4 §6.4).
const (
	rsIO        = 1 // Resource Type: I/O range
	rsBusNumber = 2 // Resource Type: bus number range

	// General Flags for a bridge window: producer, positive decode,
	// fixed minimum and maximum (§6.4.3.5.3, Table 6.47).
	rsWindowFlags = 1<<3 | 1<<2
	// I/O type-specific flags: _RNG = entire range (ISA and non-ISA).
	rsIOEntireRange = 0b11
	// Memory type-specific flags: read/write, cacheable, not prefetchable.
	// Non-prefetchable so that Linux may put any BAR in the window.
	rsMemCacheableRW = 1<<1 | 1
)

// endTag ends a resource template; checksum 0 means "not checked"
// (§6.4.2.9).
var endTag = []byte{0x79, 0x00}

// ioPort is an I/O Port Descriptor with 16-bit decode (§6.4.2.5).
func ioPort(base uint16, length uint8) []byte {
	b := []byte{0x47, 0x01}
	b = le.AppendUint16(b, base)
	b = le.AppendUint16(b, base)
	return append(b, 0x01, length)
}

// wordAddrSpace is a Word Address Space Descriptor (§6.4.3.5.3) for a
// window [lo, hi] with no translation.
func wordAddrSpace(typ, typeFlags byte, lo, hi uint16) []byte {
	b := []byte{0x88, 13, 0, typ, rsWindowFlags, typeFlags}
	for _, v := range []uint16{0, lo, hi, 0, hi - lo + 1} { // granularity, min, max, translation, length
		b = le.AppendUint16(b, v)
	}
	return b
}

// dwordMemory is a DWord Address Space Descriptor (§6.4.3.5.2) for a
// memory window [lo, hi].
func dwordMemory(lo, hi uint32) []byte {
	b := []byte{0x87, 23, 0, 0, rsWindowFlags, rsMemCacheableRW}
	for _, v := range []uint32{0, lo, hi, 0, hi - lo + 1} {
		b = le.AppendUint32(b, v)
	}
	return b
}

// qwordMemory is a QWord Address Space Descriptor (§6.4.3.5.1) for a
// memory window [lo, hi].
func qwordMemory(lo, hi uint64) []byte {
	b := []byte{0x8A, 43, 0, 0, rsWindowFlags, rsMemCacheableRW}
	for _, v := range []uint64{0, lo, hi, 0, hi - lo + 1} {
		b = le.AppendUint64(b, v)
	}
	return b
}
