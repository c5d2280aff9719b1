package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/govmm/govmm/vmm/bus"
)

// ConfigSize is the size of a conventional (non-extended) PCI config space.
const ConfigSize = 256

// NumBARs is the number of base address registers in a type-0 header.
const NumBARs = 6

// Type-0 header register offsets.
const (
	RegVendorID          = 0x00
	RegDeviceID          = 0x02
	RegCommand           = 0x04
	RegStatus            = 0x06
	RegRevision          = 0x08
	RegClassCode         = 0x09 // 3 bytes: prog-if, subclass, base class
	RegCacheLineSize     = 0x0C
	RegLatencyTimer      = 0x0D
	RegHeaderType        = 0x0E
	RegBAR0              = 0x10 // BARn is at RegBAR0 + 4*n
	RegSubsystemVendorID = 0x2C
	RegSubsystemID       = 0x2E
	RegROMAddress        = 0x30
	RegCapPointer        = 0x34
	RegInterruptLine     = 0x3C
	RegInterruptPin      = 0x3D

	// CapStart is the first offset after the type-0 header; capabilities
	// live in [CapStart, ConfigSize).
	CapStart = 0x40
)

// COMMAND register bits.
const (
	CommandIO          = 1 << 0 // I/O space decode
	CommandMemory      = 1 << 1 // memory space decode
	CommandBusMaster   = 1 << 2 // device may DMA / send MSIs
	CommandParity      = 1 << 6
	CommandSERR        = 1 << 8
	CommandINTxDisable = 1 << 10

	// commandWritable is the set of COMMAND bits a guest may change; the
	// rest (special cycles, MWI, VGA snoop, fast back-to-back) are
	// hardwired to 0 as on PCIe functions.
	commandWritable = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
)

// STATUS register bits.
const (
	StatusINTx    = 1 << 3 // INTx asserted
	StatusCapList = 1 << 4 // capability list present at RegCapPointer
)

// Capability IDs a device model is likely to use.
const (
	CapIDPowerManagement = 0x01
	CapIDMSI             = 0x05
	CapIDVendor          = 0x09
	CapIDPCIe            = 0x10
	CapIDMSIX            = 0x11
)

// InterruptPinINTA is the INTERRUPT_PIN value for INTA#.
const InterruptPinINTA = 1

// Errors returned while building a config space or registering it.
var (
	ErrInvalidBAR        = errors.New("pci: invalid BAR")
	ErrInvalidCapability = errors.New("pci: invalid capability")
	ErrRegistered        = errors.New("pci: config space already registered with a bridge")
)

// Header holds the identification fields of a type-0 header. They are
// read-only to the guest.
type Header struct {
	VendorID          uint16
	DeviceID          uint16
	Revision          uint8
	ClassCode         uint32 // base class<<16 | subclass<<8 | prog-if (24 bits)
	SubsystemVendorID uint16
	SubsystemID       uint16
}

// BARKind says which address space a BAR decodes.
type BARKind uint8

const (
	// BARMem32 is a 32-bit memory BAR, allocated below 4 GiB.
	BARMem32 BARKind = iota + 1
	// BARMem64 is a 64-bit memory BAR. It occupies two BAR slots (index
	// and index+1: low and high dword) and is allocated from the 64-bit
	// window above RAM.
	BARMem64
	// BARIO is an I/O-port BAR.
	BARIO
)

func (k BARKind) String() string {
	switch k {
	case BARMem32:
		return "mem32"
	case BARMem64:
		return "mem64"
	case BARIO:
		return "io"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// Unmapped is the base passed to BAR.OnMove for "not mapped". Address 0
// is never mapped (the bridge treats a BAR programmed to 0 as disabled),
// so it cannot be confused with a real base.
const Unmapped uint64 = 0

// BAR declares one base address register.
type BAR struct {
	Kind BARKind
	// Size in bytes: a power of two, >= 16 for memory BARs (<= 2 GiB for
	// BARMem32) and >= 4 for I/O BARs (whose range must fit the 64 KiB
	// port space).
	Size uint64
	// Prefetchable sets the prefetchable bit of a memory BAR.
	Prefetchable bool
	// Handler receives accesses to the BAR while it is mapped; offsets
	// are relative to the BAR base, so a moved BAR needs no handler change.
	Handler bus.Device
	// OnMove, if set, is called whenever the mapping changes: when the
	// bridge first maps the BAR, when the guest reprograms it, and when
	// decode is turned off or on. Either base may be Unmapped. Devices
	// that register ioeventfds or similar by address re-register here.
	// It runs with the bridge lock held: it must not issue config cycles
	// through the bridge, but may use the ConfigSpace methods.
	OnMove func(oldBase, newBase uint64)
}

type barSlot struct {
	BAR
	used  bool // a BAR (or its low half) starts here
	upper bool // high dword of the 64-bit BAR at the previous index
}

type capability struct {
	id      byte
	off     int
	size    int // header (2) + body
	onWrite func(offsetInCap int, data []byte)
}

// ConfigSpace is the 256-byte config space of one PCI function: a type-0
// header, BAR declarations and a capability list.
//
// Each byte has a write mask: a guest write changes only the masked bits,
// so identification fields stay read-only and BAR sizing works by masking
// (a BAR of size S has its low log2(S) address bits hardwired to zero).
// Guest offsets and lengths are never trusted: bytes outside the space
// read as 0xFF and are dropped on write.
//
// A ConfigSpace is safe for concurrent use. Configure it (SetBAR,
// AddCapability) before registering it with Bridge.Add; after that only
// the guest and Store change it. It implements Device itself, so a device
// without further needs can be registered directly, and a device struct
// can embed *ConfigSpace to satisfy Device.
type ConfigSpace struct {
	mu       sync.Mutex
	regs     [ConfigSize]byte
	wmask    [ConfigSize]byte
	bars     [NumBARs]barSlot
	caps     []capability // in chain order
	irq      uint8
	hasIRQ   bool
	attached bool
}

// NewConfigSpace returns a type-0 config space with the given identity,
// no BARs, no capabilities and COMMAND cleared (decode off until the
// bridge or the guest enables it).
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{}
	le := binary.LittleEndian
	le.PutUint16(c.regs[RegVendorID:], h.VendorID)
	le.PutUint16(c.regs[RegDeviceID:], h.DeviceID)
	c.regs[RegRevision] = h.Revision
	c.regs[RegClassCode] = byte(h.ClassCode)
	c.regs[RegClassCode+1] = byte(h.ClassCode >> 8)
	c.regs[RegClassCode+2] = byte(h.ClassCode >> 16)
	c.regs[RegHeaderType] = 0x00 // type 0, single function
	le.PutUint16(c.regs[RegSubsystemVendorID:], h.SubsystemVendorID)
	le.PutUint16(c.regs[RegSubsystemID:], h.SubsystemID)

	le.PutUint16(c.wmask[RegCommand:], commandWritable)
	c.wmask[RegCacheLineSize] = 0xFF // scratch register firmware writes
	c.wmask[RegInterruptLine] = 0xFF // scratch register for the OS
	return c
}

// Config returns c, so that *ConfigSpace implements Device.
func (c *ConfigSpace) Config() *ConfigSpace { return c }

// SetBAR declares BAR index (0-5). A BARMem64 also claims index+1.
func (c *ConfigSpace) SetBAR(index int, b BAR) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attached {
		return fmt.Errorf("pci: SetBAR(%d): %w", index, ErrRegistered)
	}
	if index < 0 || index >= NumBARs {
		return fmt.Errorf("pci: BAR index %d out of range: %w", index, ErrInvalidBAR)
	}
	if b.Handler == nil {
		return fmt.Errorf("pci: BAR%d: nil handler: %w", index, ErrInvalidBAR)
	}
	pow2 := b.Size != 0 && b.Size&(b.Size-1) == 0
	var typeBits uint32
	switch b.Kind {
	case BARMem32:
		if !pow2 || b.Size < 16 || b.Size > 1<<31 {
			return fmt.Errorf("pci: BAR%d: mem32 size %#x is not a power of two in [16, 2 GiB]: %w", index, b.Size, ErrInvalidBAR)
		}
	case BARMem64:
		if !pow2 || b.Size < 16 || b.Size > 1<<63 {
			return fmt.Errorf("pci: BAR%d: mem64 size %#x is not a power of two >= 16: %w", index, b.Size, ErrInvalidBAR)
		}
		if index == NumBARs-1 {
			return fmt.Errorf("pci: BAR%d: a 64-bit BAR needs two slots: %w", index, ErrInvalidBAR)
		}
		typeBits = 0b10 << 1
	case BARIO:
		if !pow2 || b.Size < 4 || b.Size > 1<<16 {
			return fmt.Errorf("pci: BAR%d: io size %#x is not a power of two in [4, 64 KiB]: %w", index, b.Size, ErrInvalidBAR)
		}
		if b.Prefetchable {
			return fmt.Errorf("pci: BAR%d: an I/O BAR cannot be prefetchable: %w", index, ErrInvalidBAR)
		}
		typeBits = 1
	default:
		return fmt.Errorf("pci: BAR%d: unknown kind %v: %w", index, b.Kind, ErrInvalidBAR)
	}
	if c.bars[index].used || c.bars[index].upper || (b.Kind == BARMem64 && (c.bars[index+1].used || c.bars[index+1].upper)) {
		return fmt.Errorf("pci: BAR%d (%v) overlaps an already declared BAR: %w", index, b.Kind, ErrInvalidBAR)
	}
	if b.Prefetchable {
		typeBits |= 1 << 3
	}

	le := binary.LittleEndian
	reg := RegBAR0 + 4*index
	c.bars[index] = barSlot{BAR: b, used: true}
	le.PutUint32(c.regs[reg:], typeBits)
	mask := ^(b.Size - 1)
	if b.Kind == BARIO {
		le.PutUint32(c.wmask[reg:], uint32(mask)&^0x3)
	} else {
		le.PutUint32(c.wmask[reg:], uint32(mask)&^0xF)
	}
	if b.Kind == BARMem64 {
		c.bars[index+1] = barSlot{upper: true}
		le.PutUint32(c.regs[reg+4:], 0)
		le.PutUint32(c.wmask[reg+4:], uint32(mask>>32))
	}
	return nil
}

// CapOption modifies AddCapability.
type CapOption func(*capOptions)

type capOptions struct {
	offset  int
	mask    []byte
	onWrite func(int, []byte)
}

// CapAt places the capability at a fixed offset (4-byte aligned, >=
// CapStart), for device models that mirror real hardware layouts.
// Without it the first free aligned gap from CapStart is used.
func CapAt(offset int) CapOption { return func(o *capOptions) { o.offset = offset } }

// CapWriteMask makes bits of the capability body guest-writable: mask[i]
// governs body[i] (capability offset 2+i). The ID and next-pointer bytes
// are always read-only. Without it the whole capability is read-only.
func CapWriteMask(mask []byte) CapOption { return func(o *capOptions) { o.mask = mask } }

// CapOnWrite registers fn to be called after every guest write that
// overlaps the capability (e.g. MSI-X watching the enable and function
// mask bits of Message Control). offsetInCap is relative to the
// capability's ID byte, so Message Control is at 2 as in the spec tables;
// data holds the bytes as stored after masking (fn may keep it). fn runs
// with the bridge lock held but not the ConfigSpace lock: it may call
// Read/Store but must not issue config cycles through the bridge.
func CapOnWrite(fn func(offsetInCap int, data []byte)) CapOption {
	return func(o *capOptions) { o.onWrite = fn }
}

// AddCapability appends a capability with the given ID and body (the
// bytes after the 2-byte ID/next header) to the capability list, and
// returns its offset. Capabilities are chained in the order added,
// starting at RegCapPointer, and STATUS.CapList is set.
func (c *ConfigSpace) AddCapability(id byte, body []byte, opts ...CapOption) (int, error) {
	var o capOptions
	for _, opt := range opts {
		opt(&o)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attached {
		return 0, fmt.Errorf("pci: AddCapability(%#x): %w", id, ErrRegistered)
	}
	size := 2 + len(body)
	if size > ConfigSize-CapStart {
		return 0, fmt.Errorf("pci: capability %#x: %d bytes do not fit: %w", id, size, ErrInvalidCapability)
	}
	if len(o.mask) > len(body) {
		return 0, fmt.Errorf("pci: capability %#x: write mask (%d bytes) longer than body (%d): %w", id, len(o.mask), len(body), ErrInvalidCapability)
	}
	off := o.offset
	if off != 0 {
		if off < CapStart || off%4 != 0 || off+size > ConfigSize {
			return 0, fmt.Errorf("pci: capability %#x: offset %#x must be 4-byte aligned in [%#x, %#x]: %w", id, off, CapStart, ConfigSize-size, ErrInvalidCapability)
		}
		if other, ok := c.overlappingCap(off, size); ok {
			return 0, fmt.Errorf("pci: capability %#x at %#x+%d overlaps capability %#x at %#x: %w", id, off, size, other.id, other.off, ErrInvalidCapability)
		}
	} else {
		found := false
		for off = CapStart; off+size <= ConfigSize; off += 4 {
			other, ok := c.overlappingCap(off, size)
			if !ok {
				found = true
				break
			}
			// Skip past the blocking capability (rounded up to 4).
			off = (other.off+other.size+3)&^3 - 4
		}
		if !found {
			return 0, fmt.Errorf("pci: capability %#x: no free %d-byte gap: %w", id, size, ErrInvalidCapability)
		}
	}

	c.regs[off] = id
	c.regs[off+1] = 0
	copy(c.regs[off+2:], body)
	copy(c.wmask[off+2:], o.mask)
	if n := len(c.caps); n == 0 {
		c.regs[RegCapPointer] = byte(off)
		c.regs[RegStatus] |= StatusCapList
	} else {
		c.regs[c.caps[n-1].off+1] = byte(off)
	}
	c.caps = append(c.caps, capability{id: id, off: off, size: size, onWrite: o.onWrite})
	return off, nil
}

func (c *ConfigSpace) overlappingCap(off, size int) (capability, bool) {
	for _, cp := range c.caps {
		if off < cp.off+cp.size && cp.off < off+size {
			return cp, true
		}
	}
	return capability{}, false
}

// Read copies config bytes starting at off into data, as the guest sees
// them. Bytes outside [0, ConfigSize) read as 0xFF.
func (c *ConfigSpace) Read(off int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		if o := off + i; o >= 0 && o < ConfigSize {
			data[i] = c.regs[o]
		} else {
			data[i] = 0xFF
		}
	}
}

// Store writes config bytes from the device side, ignoring write masks
// and not calling capability hooks (e.g. a device updating a read-only
// status field). Bytes outside the space are dropped. Storing into BAR or
// COMMAND registers after registration does not remap BARs until the next
// guest config write; devices should not do it.
func (c *ConfigSpace) Store(off int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		if o := off + i; o >= 0 && o < ConfigSize {
			c.regs[o] = v
		}
	}
}

// Command returns the COMMAND register.
func (c *ConfigSpace) Command() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint16(c.regs[RegCommand:])
}

// IRQ returns the legacy INTx GSI the bridge assigned, and false before
// registration. Devices should raise this GSI, not the INTERRUPT_LINE
// register, which is a guest-writable scratch register.
func (c *ConfigSpace) IRQ() (gsi uint8, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.irq, c.hasIRQ
}

// hookCall is a capability write notification to deliver after the
// ConfigSpace lock is released.
type hookCall struct {
	fn   func(int, []byte)
	off  int
	data []byte
}

// guestWrite applies a guest write through the write masks and returns
// the capability hooks to call.
func (c *ConfigSpace) guestWrite(off int, data []byte) []hookCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		if o := off + i; o >= 0 && o < ConfigSize {
			m := c.wmask[o]
			c.regs[o] = c.regs[o]&^m | v&m
		}
	}
	var calls []hookCall
	end := off + len(data)
	for _, cp := range c.caps {
		if cp.onWrite == nil {
			continue
		}
		lo, hi := max(off, cp.off), min(end, cp.off+cp.size)
		if lo >= hi {
			continue
		}
		calls = append(calls, hookCall{fn: cp.onWrite, off: lo - cp.off, data: append([]byte(nil), c.regs[lo:hi]...)})
	}
	return calls
}

// barState classifies the address currently programmed into a BAR.
type barState int

const (
	barUnset      barState = iota // 0 or a sizing pattern: leave unmapped quietly
	barValid                      // map it (if decode is on)
	barOutOfRange                 // does not fit the address space: log, unmapped
)

// barAddress decodes BAR index. A BAR is unset when its address is 0 or
// when any dword that has writable address bits has all of them set (the
// guest is in the middle of sizing it): mapping such transient values
// would only produce spurious overlaps.
func (c *ConfigSpace) barAddress(index int) (uint64, barState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	le := binary.LittleEndian
	reg := RegBAR0 + 4*index
	b := c.bars[index]
	lo, mlo := le.Uint32(c.regs[reg:]), le.Uint32(c.wmask[reg:])
	addr := uint64(lo & mlo)
	sizing := mlo != 0 && lo&mlo == mlo
	if b.Kind == BARMem64 {
		hi, mhi := le.Uint32(c.regs[reg+4:]), le.Uint32(c.wmask[reg+4:])
		addr |= uint64(hi&mhi) << 32
		sizing = sizing || (mhi != 0 && hi&mhi == mhi)
	}
	switch {
	case addr == 0 || sizing:
		return addr, barUnset
	case b.Kind == BARIO && addr+b.Size > 1<<16:
		return addr, barOutOfRange
	}
	return addr, barValid
}

// programBAR writes a firmware-assigned address (registration only).
func (c *ConfigSpace) programBAR(index int, addr uint64) {
	le := binary.LittleEndian
	reg := RegBAR0 + 4*index
	m := le.Uint32(c.wmask[reg:])
	lo := le.Uint32(c.regs[reg:])
	le.PutUint32(c.regs[reg:], lo&^m|uint32(addr)&m)
	if c.bars[index].Kind == BARMem64 {
		le.PutUint32(c.regs[reg+4:], uint32(addr>>32))
	}
}
