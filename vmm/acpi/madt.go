package acpi

import "github.com/govmm/govmm/vmm/layout"

// MADT (ACPI 6.4 §5.2.12, Table 5.19), revision 5.
const (
	madtRevision = 5
	madtOffLAPIC = 36 // Local Interrupt Controller Address
	madtOffFlags = 40 // bit 0 PCAT_COMPAT
	madtHdrLen   = 44
)

// Interrupt controller structure types and lengths (§5.2.12, Table 5.21).
const (
	madtTypeLAPIC  = 0 // Processor Local APIC, §5.2.12.2
	madtTypeIOAPIC = 1 // I/O APIC, §5.2.12.3
	madtTypeISO    = 2 // Interrupt Source Override, §5.2.12.5
	madtLAPICLen   = 8
	madtIOAPICLen  = 12
	madtISOLen     = 10

	lapicEnabled = 1 << 0 // Online Capable (bit 1) must be 0 when Enabled is set

	// MPS INTI flags (§5.2.12.5, Table 5.26).
	intiActiveHigh = 0b01
	intiEdge       = 0b01 << 2

	ioapicID = 0 // IOAPIC IDs are their own namespace; matches KVM's reset value
)

// isaOverride maps an ISA IRQ to an IOAPIC GSI.
type isaOverride struct {
	irq   uint8
	gsi   uint32
	flags uint16
}

// isaOverrides lists the Interrupt Source Overrides.
//
// On a HW-reduced platform Linux installs no legacy PIC (null_legacy_pic has
// zero legacy IRQs), so mp_config_acpi_legacy_irqs fabricates no identity
// ISA mappings: an ISA IRQ the guest uses without a DSDT device is only
// routed if the MADT has an override for it. Hence the identity entry for
// COM1, which the 8250 driver finds at its hard-coded port/IRQ. IRQ0→GSI2 is
// the customary PC timer wiring (KVM's in-kernel PIT drives pin 2).
var isaOverrides = []isaOverride{
	{irq: 0, gsi: 2, flags: intiActiveHigh | intiEdge},
	{irq: layout.SerialIRQ, gsi: layout.SerialIRQ, flags: intiActiveHigh | intiEdge},
}

// buildMADT describes one xAPIC per vCPU and the single IOAPIC.
//
// PCAT_COMPAT is clear, as in Firecracker and Cloud Hypervisor: a
// HW-reduced guest runs without 8259 PICs. There are no Local APIC NMI
// entries; Linux programs LINT1 as NMI on the boot CPU by default.
func buildMADT(cpus int) []byte {
	size := madtHdrLen + cpus*madtLAPICLen + madtIOAPICLen + len(isaOverrides)*madtISOLen
	b := newSDT("APIC", madtRevision, "GOVMMMAD", size)
	le.PutUint32(b[madtOffLAPIC:], layout.LAPICAddr)
	le.PutUint32(b[madtOffFlags:], 0)

	off := madtHdrLen
	for i := range cpus {
		e := b[off : off+madtLAPICLen]
		e[0], e[1] = madtTypeLAPIC, madtLAPICLen
		e[2] = byte(i) // ACPI Processor UID
		e[3] = byte(i) // APIC ID
		le.PutUint32(e[4:], lapicEnabled)
		off += madtLAPICLen
	}

	e := b[off : off+madtIOAPICLen]
	e[0], e[1] = madtTypeIOAPIC, madtIOAPICLen
	e[2] = ioapicID
	le.PutUint32(e[4:], layout.IOAPICAddr)
	le.PutUint32(e[8:], 0) // Global System Interrupt Base
	off += madtIOAPICLen

	for _, o := range isaOverrides {
		e := b[off : off+madtISOLen]
		e[0], e[1] = madtTypeISO, madtISOLen
		e[2] = 0 // Bus: ISA
		e[3] = o.irq
		le.PutUint32(e[4:], o.gsi)
		le.PutUint16(e[8:], o.flags)
		off += madtISOLen
	}
	return finishSDT(b)
}
