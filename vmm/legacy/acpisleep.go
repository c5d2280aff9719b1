package legacy

import (
	"log/slog"

	"github.com/govmm/govmm/vmm/layout"
)

// Sleep control register bits (ACPI 6.4 §4.8.3.7, Table 4.20).
const (
	sleepTypShift = 2
	sleepTypMask  = 0x7 << sleepTypShift
	sleepEn       = 1 << 5
)

// ACPISleep is the one-byte HW-reduced sleep control and status register
// (FADT X_SLEEP_CONTROL_REG and X_SLEEP_STATUS_REG, both at
// layout.PortACPISleep). Only S5 is implemented: a write with SLP_EN set
// and SLP_TYP = layout.ACPIS5SlpTyp (the \_S5 value in our DSDT) calls
// poweroff. Linux first writes WAK_STS (bit 7) to the status register to
// clear it; that and any other write is ignored.
type ACPISleep struct {
	poweroff func()
}

// NewACPISleep returns the register; poweroff (which may be nil) runs on
// the vCPU thread and should only signal the VMM. It may be called more
// than once if the guest repeats the write.
func NewACPISleep(poweroff func()) *ACPISleep { return &ACPISleep{poweroff: poweroff} }

// Read implements bus.Device. The status register reads 0: WAK_STS clear,
// the machine never wakes from a sleep state.
func (a *ACPISleep) Read(offset uint64, data []byte) {
	clear(data)
}

// Write implements bus.Device.
func (a *ACPISleep) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	v := data[0]
	if v&sleepEn == 0 {
		return
	}
	if typ := (v & sleepTypMask) >> sleepTypShift; typ != layout.ACPIS5SlpTyp {
		slog.Warn("acpi: unsupported sleep state requested", "slp_typ", typ)
		return
	}
	slog.Info("acpi: guest requested S5 power-off")
	if a.poweroff != nil {
		a.poweroff()
	}
}
