// Package legacy emulates the few PC platform devices a Linux guest needs to
// boot, talk and stop: a 16550A UART (console), the i8042 keyboard
// controller (reset) and the ACPI sleep control register (power-off).
//
// Every device is a bus.Device. Accesses come from vCPU threads with
// guest-controlled offsets, sizes and values; devices never panic on them.
package legacy

// IRQLine is an interrupt line a device drives. SetLevel(true) asserts it;
// an edge-triggered GSI sees the rising edge. *irq.Line satisfies it.
type IRQLine interface {
	SetLevel(high bool) error
}
