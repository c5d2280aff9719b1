package legacy

import (
	"log/slog"
	"sync"

	"github.com/govmm/govmm/vmm/bus"
)

// i8042 status register bits (IBM PS/2 Technical Reference, 8042 keyboard
// controller; Linux drivers/input/serio/i8042.h).
const (
	i8042StrOBF     = 1 << 0 // output buffer full: a byte waits at port 0x60
	i8042StrSys     = 1 << 2 // system flag, mirrors CTR bit 2
	i8042StrCmdData = 1 << 3 // last write was to the command port
	i8042StrUnlock  = 1 << 4 // keyboard not inhibited ("keylock" off)
	// Input buffer full (bit 1) is never set: writes are consumed at once,
	// so Linux's kb_wait() before a reset succeeds immediately.
)

// Controller commands (port 0x64) handled here.
const (
	i8042CmdReadCTR   = 0x20
	i8042CmdWriteCTR  = 0x60
	i8042CmdAuxDis    = 0xA7
	i8042CmdAuxEn     = 0xA8
	i8042CmdAuxTest   = 0xA9
	i8042CmdSelfTest  = 0xAA
	i8042CmdKbdTest   = 0xAB
	i8042CmdKbdDis    = 0xAD
	i8042CmdKbdEn     = 0xAE
	i8042CmdReadOutP  = 0xD0
	i8042CmdWriteOutP = 0xD1
	i8042CmdWriteKbd  = 0xD2
	i8042CmdWriteAux  = 0xD3
	i8042CmdToAux     = 0xD4
	i8042CmdPulseBase = 0xF0 // 0xF0-0xFF pulse output port bits 3:0 low
	i8042CmdReset     = 0xFE // pulse bit 0 only: CPU reset

	i8042CTRSys    = 1 << 2
	i8042CTRKbdDis = 1 << 4
	i8042CTRAuxDis = 1 << 5
	i8042CTRXlate  = 1 << 6

	i8042SelfTestOK = 0x55
	i8042PortOK     = 0x00
	i8042AuxAbsent  = 0x01 // AUX interface test: "clock line stuck low"
)

// I8042 is a keyboard controller with no keyboard or mouse behind it. It
// exists so the guest can reset the machine: command 0xFE on port 0x64
// pulses the CPU reset line, which calls the reset callback. Linux reboots
// this way once ACPI reset is unavailable (our FADT has no RESET_REG).
//
// Controller commands answer immediately so that Linux's i8042 probe never
// waits for a timeout: the CTR reads back, the self-test passes, and the
// AUX port is reported absent (AUX loopback answers on the keyboard
// channel, which Linux treats as a failed loop test; the AUX interface test
// then answers "clock line stuck low"). Bytes written for the keyboard
// itself go nowhere and the controller drives no IRQ, so no keyboard is
// ever found. (On our HW-reduced platform ISA IRQ 1 has no MADT override,
// so Linux should not even get that far.) To skip the probe entirely, boot
// the guest with i8042.nokbd i8042.noaux.
//
// The controller owns two one-byte ports, registered separately on the port
// bus: DataPort (0x60) and CommandPort (0x64).
type I8042 struct {
	mu      sync.Mutex
	reset   func()
	ctr     byte
	status  byte
	out     byte // output buffer, valid while status has OBF
	pending byte // command waiting for its data byte, 0 if none
}

// NewI8042 returns a controller that calls reset (which may be nil) when
// the guest pulses the reset line. reset runs on the vCPU thread without
// the device lock held; it should only signal the VMM. Linux repeats the
// pulse up to ten times, so reset may run more than once.
func NewI8042(reset func()) *I8042 {
	return &I8042{
		reset:  reset,
		ctr:    i8042CTRSys | i8042CTRXlate,
		status: i8042StrSys | i8042StrUnlock,
	}
}

// DataPort is the bus.Device for port 0x60 (layout.PortI8042Data, 1 byte).
func (k *I8042) DataPort() bus.Device { return i8042Port{k, false} }

// CommandPort is the bus.Device for port 0x64 (layout.PortI8042Cmd, 1
// byte): status on read, controller command on write.
func (k *I8042) CommandPort() bus.Device { return i8042Port{k, true} }

type i8042Port struct {
	k   *I8042
	cmd bool
}

// Read implements bus.Device. Only a byte at offset 0 is meaningful;
// anything else reads as an unclaimed ISA port (0xFF).
func (p i8042Port) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
	if offset != 0 || len(data) == 0 {
		return
	}
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if p.cmd {
		data[0] = k.status
		return
	}
	data[0] = k.out
	k.status &^= i8042StrOBF
}

// Write implements bus.Device; only data[0] at offset 0 is used.
func (p i8042Port) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	var reset bool
	if p.cmd {
		reset = p.k.command(data[0])
	} else {
		p.k.data(data[0])
	}
	if reset {
		slog.Info("i8042: guest pulsed the reset line")
		if p.k.reset != nil {
			p.k.reset()
		}
	}
}

// command handles a controller command and reports whether it pulsed the
// CPU reset line.
func (k *I8042) command(c byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status |= i8042StrCmdData
	k.pending = 0
	switch c {
	case i8042CmdReadCTR:
		k.respond(k.ctr)
	case i8042CmdWriteCTR, i8042CmdWriteOutP, i8042CmdWriteKbd, i8042CmdWriteAux, i8042CmdToAux:
		k.pending = c
	case i8042CmdAuxDis:
		k.ctr |= i8042CTRAuxDis
	case i8042CmdAuxEn:
		k.ctr &^= i8042CTRAuxDis
	case i8042CmdAuxTest:
		k.respond(i8042AuxAbsent)
	case i8042CmdSelfTest:
		k.respond(i8042SelfTestOK)
	case i8042CmdKbdTest:
		k.respond(i8042PortOK)
	case i8042CmdKbdDis:
		k.ctr |= i8042CTRKbdDis
	case i8042CmdKbdEn:
		k.ctr &^= i8042CTRKbdDis
	case i8042CmdReadOutP:
		k.respond(0x01) // bit 0: reset line inactive (high)
	default:
		// 0xF0-0xFF pulse the output port bits whose command bit is
		// 0; bit 0 is the CPU reset line (0xFE pulses only it).
		if c >= i8042CmdPulseBase && c&1 == 0 {
			return true
		}
		slog.Debug("i8042: ignoring command", "cmd", c)
	}
	return false
}

// data handles a byte written to port 0x60: the argument of a pending
// command, or else a byte for the (absent) keyboard.
func (k *I8042) data(v byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status &^= i8042StrCmdData
	c := k.pending
	k.pending = 0
	switch c {
	case i8042CmdWriteCTR:
		k.ctr = v
		// The status SYS flag mirrors CTR bit 2 (same bit position).
		k.status = k.status&^i8042StrSys | v&i8042CTRSys
	case i8042CmdWriteKbd, i8042CmdWriteAux:
		// Echo as if received from the keyboard port. For 0xD3 this
		// lacks the AUX-data status bit, which is how the absent AUX
		// port shows (see I8042).
		k.respond(v)
	case i8042CmdWriteOutP:
		// Output port bit 0 low would hold the CPU in reset; Linux
		// does not reset this way, and a level-held reset has no
		// clean meaning for a VMM, so it is only logged.
		if v&1 == 0 {
			slog.Warn("i8042: output port write with reset bit low ignored", "value", v)
		}
	case i8042CmdToAux:
		// No AUX device: dropped.
	default:
		slog.Debug("i8042: dropping byte for absent keyboard", "value", v)
	}
}

func (k *I8042) respond(v byte) {
	k.out = v
	k.status |= i8042StrOBF
}
