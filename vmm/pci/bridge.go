package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
)

// Device is a PCI function. A device author builds a ConfigSpace, declares
// BARs (with sizes and bus.Device handlers) and capabilities on it, and
// passes the device to Bridge.Add. *ConfigSpace implements Device, so a
// device struct can simply embed it.
type Device interface {
	Config() *ConfigSpace
}

// Host bridge identity (slot 0). 8086:0d57 is the ID cloud-hypervisor and
// Firecracker use for their virtual host bridge; Linux needs a host
// bridge (or VGA) class device on bus 0 for its conf1 sanity check.
const (
	HostBridgeVendorID  = 0x8086
	HostBridgeDeviceID  = 0x0d57
	ClassHostBridge     = 0x060000
	NumSlots            = 32
	ConfigPortSize      = 8 // 0xCF8 address, 0xCFC-0xCFF data
	PIOWindowStart      = 0xC000
	PIOWindowEnd        = 0x10000 // exclusive
	configAddressEnable = 1 << 31
	// configAddressMask keeps enable, bus, device, function and the dword
	// register number; reserved bits 30:24 and 1:0 read as zero.
	configAddressMask = configAddressEnable | 0x00FF_FFFC
)

// DefaultIRQs is the INTx GSI pool used when Config.IRQs is empty: the
// ISA IRQs free on a govmm machine (COM1 is 4, the ACPI SCI 9).
var DefaultIRQs = []uint8{5, 10, 11}

// Errors returned by Bridge.
var (
	ErrNoSlot  = errors.New("pci: no free slot on bus 0")
	ErrNoSpace = errors.New("pci: BAR window exhausted")
)

// Config configures a Bridge.
type Config struct {
	PIO  *bus.Bus // port bus: the bridge maps 0xCF8-0xCFF and I/O BARs here
	MMIO *bus.Bus // memory bus: memory BARs are mapped here
	// RAMEnd is the exclusive end of guest RAM; the 64-bit BAR window
	// starts at layout.PCIMMIO64Start(RAMEnd).
	RAMEnd uint64
	// IRQs is the pool of GSIs for INTx; device in slot s gets
	// IRQs[(s-1)%len(IRQs)], so devices share lines once the pool is
	// exhausted (INTx is level-triggered and shareable). Empty means
	// DefaultIRQs. Whoever builds the ACPI/MP tables must declare these
	// GSIs level-triggered, active-low (read them back with
	// ConfigSpace.IRQ).
	IRQs   []uint8
	Logger *slog.Logger // nil means slog.Default()
}

// window is a bump allocator over [next, end). Firmware-style allocation
// happens once per device at boot, so fragmentation from alignment is
// acceptable.
type window struct {
	name      string
	next, end uint64
}

func (w *window) alloc(size uint64) (uint64, error) {
	base := (w.next + size - 1) &^ (size - 1)
	if base < w.next || base+size < base || base+size > w.end {
		return 0, fmt.Errorf("pci: %s window [%#x, %#x): no room for %#x bytes: %w", w.name, w.next, w.end, size, ErrNoSpace)
	}
	w.next = base + size
	return base, nil
}

type barMapping struct {
	mapped   bool
	base     uint64
	failedAt uint64 // last address that failed to map (suppresses repeated logs)
}

type slotState struct {
	dev  Device
	cs   *ConfigSpace
	maps [NumBARs]barMapping
}

// Bridge is the host bridge of PCI bus 0 and the config-mechanism-#1
// port device for 0xCF8-0xCFF. Only function 0 of each of the 32 slots
// exists; slot 0 is the host bridge itself.
//
// It owns BAR mappings: a BAR is on the bus exactly while its COMMAND
// decode bit is set and it holds a valid address. Guest config writes to
// COMMAND or a BAR remap immediately.
//
// One mutex serialises all config cycles: the CONFIG_ADDRESS latch is a
// single per-machine register, shared by all vCPUs as on real chipsets
// (the guest kernel serialises its own config accesses).
type Bridge struct {
	mu    sync.Mutex
	latch uint32
	slots [NumSlots]*slotState
	pio   *bus.Bus
	mmio  *bus.Bus
	log   *slog.Logger
	irqs  []uint8
	win32 window
	win64 window
	winIO window
}

// NewBridge creates the host bridge in slot 0 and inserts the bridge on
// cfg.PIO at layout.PortPCIConfig.
func NewBridge(cfg Config) (*Bridge, error) {
	if cfg.PIO == nil || cfg.MMIO == nil {
		return nil, errors.New("pci: NewBridge: PIO and MMIO buses are required")
	}
	irqs := cfg.IRQs
	if len(irqs) == 0 {
		irqs = DefaultIRQs
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	start64 := layout.PCIMMIO64Start(cfg.RAMEnd)
	b := &Bridge{
		pio:   cfg.PIO,
		mmio:  cfg.MMIO,
		log:   logger,
		irqs:  append([]uint8(nil), irqs...),
		win32: window{name: "mem32", next: layout.PCIMMIO32Start, end: layout.PCIMMIO32End},
		win64: window{name: "mem64", next: start64, end: start64 + layout.PCIMMIO64Size},
		winIO: window{name: "io", next: PIOWindowStart, end: PIOWindowEnd},
	}
	host := NewConfigSpace(Header{VendorID: HostBridgeVendorID, DeviceID: HostBridgeDeviceID, ClassCode: ClassHostBridge})
	host.regs[RegCommand] = CommandMemory | CommandIO
	host.attached = true
	b.slots[0] = &slotState{dev: host, cs: host}
	if err := cfg.PIO.Insert(layout.PortPCIConfig, ConfigPortSize, "pci config", b); err != nil {
		return nil, fmt.Errorf("pci: mapping config ports: %w", err)
	}
	return b, nil
}

// Add registers dev in the next free slot, doing what firmware would:
// allocates each BAR naturally aligned from its window (mem32 from
// [PCIMMIO32Start, PCIMMIO32End), mem64 from the 64-bit window above RAM,
// I/O from [PIOWindowStart, PIOWindowEnd)), maps the BARs, sets COMMAND
// memory+io+bus-master, sets INTERRUPT_PIN to INTA and INTERRUPT_LINE to
// a GSI from the pool, and calls each BAR's OnMove(Unmapped, base). On
// error nothing is changed.
func (b *Bridge) Add(dev Device) (slot int, err error) {
	if dev == nil {
		return 0, errors.New("pci: Add: nil device")
	}
	cs := dev.Config()
	if cs == nil {
		return 0, errors.New("pci: Add: device has no config space")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	slot, s, err := b.attach(dev, cs)
	if err != nil {
		return 0, err
	}
	// Notify without the ConfigSpace lock so OnMove may read it.
	for i, bar := range cs.bars {
		if bar.used && bar.OnMove != nil {
			bar.OnMove(Unmapped, s.maps[i].base)
		}
	}
	return slot, nil
}

// attach does the work of Add under both locks.
func (b *Bridge) attach(dev Device, cs *ConfigSpace) (int, *slotState, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.attached {
		return 0, nil, fmt.Errorf("pci: Add: %w", ErrRegistered)
	}
	slot := -1
	for i := 1; i < NumSlots; i++ {
		if b.slots[i] == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		return 0, nil, ErrNoSlot
	}

	// Allocate on copies of the windows so a failure leaves them intact.
	wins := map[BARKind]*window{BARMem32: new(b.win32), BARMem64: new(b.win64), BARIO: new(b.winIO)}
	s := &slotState{dev: dev, cs: cs}
	for i, bar := range cs.bars {
		if !bar.used {
			continue
		}
		base, err := wins[bar.Kind].alloc(bar.Size)
		if err != nil {
			return 0, nil, fmt.Errorf("pci: slot %d BAR%d: %w", slot, i, err)
		}
		s.maps[i] = barMapping{mapped: true, base: base}
	}
	for i, bar := range cs.bars {
		if !bar.used {
			continue
		}
		if err := b.busFor(bar.Kind).Insert(s.maps[i].base, bar.Size, barName(slot, i), bar.Handler); err != nil {
			for j := range i {
				if s.maps[j].mapped {
					_ = b.busFor(cs.bars[j].Kind).Remove(s.maps[j].base)
				}
			}
			return 0, nil, fmt.Errorf("pci: slot %d BAR%d: %w", slot, i, err)
		}
	}
	b.win32, b.win64, b.winIO = *wins[BARMem32], *wins[BARMem64], *wins[BARIO]

	for i, bar := range cs.bars {
		if bar.used {
			cs.programBAR(i, s.maps[i].base)
		}
	}
	gsi := b.irqs[(slot-1)%len(b.irqs)]
	cs.irq, cs.hasIRQ = gsi, true
	cs.regs[RegInterruptLine] = gsi
	cs.regs[RegInterruptPin] = InterruptPinINTA
	cmd := binary.LittleEndian.Uint16(cs.regs[RegCommand:]) | CommandMemory | CommandIO | CommandBusMaster
	binary.LittleEndian.PutUint16(cs.regs[RegCommand:], cmd)
	cs.attached = true
	b.slots[slot] = s
	return slot, s, nil
}

// BAR reports where BAR index of the device in slot is mapped.
func (b *Bridge) BAR(slot, index int) (base uint64, mapped bool) {
	if slot < 0 || slot >= NumSlots || index < 0 || index >= NumBARs {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.slots[slot]
	if s == nil {
		return 0, false
	}
	m := s.maps[index]
	return m.base, m.mapped
}

func (b *Bridge) busFor(k BARKind) *bus.Bus {
	if k == BARIO {
		return b.pio
	}
	return b.mmio
}

func barName(slot, index int) string { return fmt.Sprintf("pci 00:%02x.0 BAR%d", slot, index) }

// Read implements bus.Device for the ports 0xCF8-0xCFF. offset 0-3 is
// CONFIG_ADDRESS, 4-7 is CONFIG_DATA. Anything that does not decode
// (bad size, straddling the two registers, enable bit clear, bus != 0,
// function != 0, empty slot) reads as all-ones, like a master abort.
func (b *Bridge) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
	n := uint64(len(data))
	if n != 1 && n != 2 && n != 4 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case offset < 4 && offset+n <= 4:
		var latch [4]byte
		binary.LittleEndian.PutUint32(latch[:], b.latch)
		copy(data, latch[offset:])
	case offset >= 4 && offset < 8 && offset+n <= 8:
		if s, reg, ok := b.target(offset); ok {
			s.cs.Read(reg, data)
		}
	}
}

// Write implements bus.Device for the ports 0xCF8-0xCFF. CONFIG_ADDRESS
// only latches on a 32-bit write to 0xCF8 (narrower writes there are not
// config-address cycles on real chipsets, and Linux's conf1 probe relies
// on a byte write to 0xCFB leaving it alone).
func (b *Bridge) Write(offset uint64, data []byte) {
	n := uint64(len(data))
	if n != 1 && n != 2 && n != 4 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case offset == 0 && n == 4:
		b.latch = binary.LittleEndian.Uint32(data) & configAddressMask
	case offset >= 4 && offset < 8 && offset+n <= 8:
		s, reg, ok := b.target(offset)
		if !ok {
			return
		}
		calls := s.cs.guestWrite(reg, data)
		end := reg + int(n)
		if s != b.slots[0] && (overlaps(reg, end, RegCommand, RegCommand+2) || overlaps(reg, end, RegBAR0, RegBAR0+4*NumBARs)) {
			b.syncAll()
		}
		for _, c := range calls {
			c.fn(c.off, c.data)
		}
	}
}

func overlaps(lo, hi, lo2, hi2 int) bool { return lo < hi2 && lo2 < hi }

// target decodes the latch for a data-port access at port offset (4-7).
func (b *Bridge) target(offset uint64) (*slotState, int, bool) {
	l := b.latch
	if l&configAddressEnable == 0 {
		return nil, 0, false
	}
	busNr, dev, fn := (l>>16)&0xFF, (l>>11)&0x1F, (l>>8)&0x7
	if busNr != 0 || fn != 0 {
		return nil, 0, false
	}
	s := b.slots[dev]
	if s == nil {
		return nil, 0, false
	}
	return s, int(l&0xFC) + int(offset-4), true
}

// syncAll brings every BAR mapping in line with COMMAND and the BAR
// registers. All slots are rechecked, not just the one written, so that
// a BAR left unmapped by an overlap gets mapped once the other range
// moves away.
func (b *Bridge) syncAll() {
	for i := 1; i < NumSlots; i++ {
		if s := b.slots[i]; s != nil {
			b.sync(i, s)
		}
	}
}

func (b *Bridge) sync(slot int, s *slotState) {
	cmd := s.cs.Command()
	for i := range NumBARs {
		bar := s.cs.bars[i] // immutable after registration
		if !bar.used {
			continue
		}
		m := &s.maps[i]
		addr, state := s.cs.barAddress(i)
		decode := cmd&CommandMemory != 0
		if bar.Kind == BARIO {
			decode = cmd&CommandIO != 0
		}
		want := decode && state == barValid
		switch {
		case decode && state == barOutOfRange:
			if m.failedAt != addr {
				b.log.Warn("pci: BAR address out of range, leaving it unmapped",
					"slot", slot, "bar", i, "kind", bar.Kind, "addr", fmt.Sprintf("%#x", addr), "size", fmt.Sprintf("%#x", bar.Size))
				m.failedAt = addr
			}
		case !want:
			m.failedAt = 0
		}
		if want == m.mapped && (!want || m.base == addr) {
			continue
		}

		old := Unmapped
		bs := b.busFor(bar.Kind)
		if m.mapped {
			if err := bs.Remove(m.base); err != nil {
				b.log.Error("pci: unmapping BAR", "slot", slot, "bar", i, "err", err)
			}
			old, m.mapped = m.base, false
		}
		if want {
			if err := bs.Insert(addr, bar.Size, barName(slot, i), bar.Handler); err != nil {
				if m.failedAt != addr {
					b.log.Warn("pci: guest placed BAR over another range, leaving it unmapped",
						"slot", slot, "bar", i, "kind", bar.Kind, "addr", fmt.Sprintf("%#x", addr), "err", err)
					m.failedAt = addr
				}
			} else {
				m.mapped, m.base, m.failedAt = true, addr, 0
			}
		}
		if nw := m.current(); nw != old && bar.OnMove != nil {
			bar.OnMove(old, nw)
		}
	}
}

func (m *barMapping) current() uint64 {
	if m.mapped {
		return m.base
	}
	return Unmapped
}
