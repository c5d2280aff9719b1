package acpi

import "github.com/govmm/govmm/vmm/layout"

// FADT (ACPI 6.4 §5.2.9, Table 5.9), revision 6: the layout is fixed, so
// fields are written at their spec byte offsets rather than through a
// struct, which keeps the offsets checkable against the table.
const (
	fadtLen           = 276
	fadtRevision      = 6
	fadtMinorVersion  = 4 // ACPI 6.4 (bits 3:0 minor, 7:4 errata)
	fadtOffDSDT       = 40
	fadtOffSCIInt     = 46
	fadtOffIAPCBoot   = 109
	fadtOffFlags      = 112
	fadtOffMinorVer   = 131
	fadtOffXDSDT      = 140
	fadtOffSleepCtl   = 244
	fadtOffSleepSts   = 256
	fadtOffHypervisor = 268
)

// IA-PC Boot Architecture Flags (ACPI 6.4 §5.2.9.3, Table 5.11).
const (
	iapc8042          = 1 << 1 // an i8042 is present: we emulate one for reset
	iapcVGANotPresent = 1 << 2
	iapcCMOSRTCAbsent = 1 << 5 // no RTC at 0x70/0x71: wall time comes from kvm-clock
	// MSI Not Supported (bit 3) stays clear: PCI devices use MSI/MSI-X.
	// CMOS RTC Not Present (bit 5) is the VMM's call; it is left clear.
)

// Fixed Feature Flags (ACPI 6.4 §5.2.9, Table 5.10).
const (
	fadtPwrButton     = 1 << 4  // 1: no fixed-feature power button
	fadtSlpButton     = 1 << 5  // 1: no fixed-feature sleep button
	fadtHWReducedACPI = 1 << 20 // no PM1/GPE blocks, no SCI_EN, no FACS needed
)

// buildFADT returns a HW-reduced FADT. In HW-reduced mode OSPM ignores the
// legacy block fields from SMI_CMD through CENTURY and X_PM1a_EVT_BLK through
// X_GPE1_BLK (§5.2.9), so they stay zero.
//
// RESET_REG is deliberately absent (and RESET_REG_SUP clear): Linux's
// default reboot path then falls through from ACPI to the keyboard
// controller (0xFE to port 0x64), which is the reset path the VMM emulates.
func buildFADT(dsdt uint64) []byte {
	b := newSDT("FACP", fadtRevision, "GOVMMFAC", fadtLen)
	// Both DSDT pointers are set to the same value; ACPICA prefers X_DSDT
	// and only warns when the two differ.
	le.PutUint32(b[fadtOffDSDT:], uint32(dsdt))
	le.PutUint64(b[fadtOffXDSDT:], dsdt)
	// SCI_INT is informational here: HW-reduced platforms have no SCI
	// sources and Linux does not install an SCI override for them.
	le.PutUint16(b[fadtOffSCIInt:], layout.ACPISCIIRQ)
	le.PutUint16(b[fadtOffIAPCBoot:], iapc8042|iapcVGANotPresent|iapcCMOSRTCAbsent)
	le.PutUint32(b[fadtOffFlags:], fadtHWReducedACPI|fadtPwrButton|fadtSlpButton)
	b[fadtOffMinorVer] = fadtMinorVersion
	// Sleep control and status registers (§4.8.3.7). Linux only reports
	// S5 as supported on a HW-reduced platform when both are non-zero
	// (acpi_sleep_state_supported), and then powers off by writing
	// SLP_TYP<<2|SLP_EN to the control register. One port serves both.
	putGAS(b[fadtOffSleepCtl:fadtOffSleepCtl+gasLen], layout.PortACPISleep)
	putGAS(b[fadtOffSleepSts:fadtOffSleepSts+gasLen], layout.PortACPISleep)
	copy(b[fadtOffHypervisor:fadtOffHypervisor+8], hypervisorID)
	return finishSDT(b)
}
