// Package msix emulates the MSI-X capability, vector table and Pending Bit
// Array (PCI Local Bus Specification 3.0, §6.8.2; PCIe Base Specification
// §7.7.2) for govmm PCI device models.
//
// A Table owns the guest-visible state of N vectors (N <= 2048): the MSI-X
// capability body a device adds to its pci.ConfigSpace, and the table and
// PBA, which live at fixed offsets of one memory BAR. The Table implements
// bus.Device for that BAR with BAR-relative offsets, so it can be the BAR's
// handler on its own, or a device with other registers in the same BAR
// can forward accesses for which Claims reports true.
//
// Each entry is backed by a Vector (in govmm an *irq.MSIVector: an eventfd
// bound to a GSI with KVM_IRQFD). Vectors are allocated lazily, the first
// time an entry becomes deliverable, so a 64-entry table the guest uses
// three entries of costs three GSIs. The Table keeps the KVM route of each
// vector equal to the guest-programmed message while the vector may
// deliver, and disabled while it is masked (the route is never left
// pointing at a stale message); pending bits are tracked here.
//
// Delivery rules (PCI 3.0 §6.8.2.9 and §6.8.2.10):
//   - Trigger sends the message only while MSI-X Enable is set, Function
//     Mask is clear and the entry's Mask bit is clear.
//   - Triggering a masked entry (entry or function mask) with MSI-X enabled
//     sets its pending bit instead; when the entry becomes unmasked with its
//     pending bit set, the message is sent and the bit cleared.
//   - With MSI-X Enable clear the function may not use MSI-X at all:
//     Trigger drops the interrupt (the device is expected to use INTx).
//
// Trigger is meant for device goroutines (queue completion paths) and
// runs concurrently with guest table writes on vCPU threads. Each entry has
// its own mutex; Trigger takes only that one, does not allocate, and
// signals the eventfd while holding it, so a guest mask write cannot
// overtake an interrupt that has already been judged deliverable.
package msix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/vmm/pci"
)

// Limits and layout constants (PCI 3.0 §6.8.2).
const (
	// MaxVectors is the largest table an MSI-X capability can describe
	// (Table Size is an 11-bit N-1 field).
	MaxVectors = 2048
	// EntrySize is the size of one table entry.
	EntrySize = 16
	// CapBodySize is the size of the capability after its ID/next header:
	// Message Control (2), Table Offset/BIR (4), PBA Offset/BIR (4).
	CapBodySize = 10
)

// Message Control bits (capability offset 2).
const (
	CtlTableSizeMask = 0x07FF  // bits 10:0, N-1, read-only
	CtlFunctionMask  = 1 << 14 // masks all vectors of the function
	CtlEnable        = 1 << 15 // MSI-X Enable
)

// Offsets inside a table entry, and the Vector Control mask bit.
const (
	EntryAddrLo  = 0x0
	EntryAddrHi  = 0x4
	EntryData    = 0x8
	EntryControl = 0xC

	VectorControlMask = 1 << 0
)

// Vector is one interrupt message sink. *irq.MSIVector implements it.
// Update sets the message to deliver and whether delivery is allowed
// (the KVM route); Trigger signals it.
type Vector interface {
	Update(addr uint64, data uint32, enabled bool) error
	Trigger() error
}

// ErrInvalidConfig is returned by New for a bad Config.
var ErrInvalidConfig = errors.New("msix: invalid config")

// ErrVectorRange is returned by Trigger for a vector outside the table.
var ErrVectorRange = errors.New("msix: vector out of range")

// Config describes a table.
type Config struct {
	// Vectors is the number of table entries, 1..MaxVectors.
	Vectors int
	// BAR is the index (BIR, 0-5) of the memory BAR holding both the
	// table and the PBA.
	BAR int
	// TableOffset and PBAOffset are the BAR-relative offsets of the table
	// and the PBA; both must be 8-byte aligned (the low 3 bits of the
	// capability registers hold the BIR) and the two ranges must not
	// overlap. Placing each in its own 4 KiB page, apart from other
	// registers, follows the spec's recommendation (§6.8.2).
	TableOffset uint32
	PBAOffset   uint32
	// Alloc returns a fresh vector; it is called at most once per entry,
	// from the vCPU thread whose write first makes the entry deliverable.
	// In govmm: func() (msix.Vector, error) { return router.AllocMSI() }.
	Alloc func() (Vector, error)
	// Logger receives allocation and routing failures; nil means
	// slog.Default().
	Logger *slog.Logger
}

// entry is one table entry and its delivery state. All fields are
// guarded by mu.
type entry struct {
	mu      sync.Mutex
	addr    uint64
	data    uint32
	masked  bool // Vector Control mask bit
	pending bool // PBA bit
	vec     Vector
	failed  bool // Alloc failed; not retried
	// live mirrors the route last pushed with Update: while true, Trigger
	// delivers through vec. pushedAddr/pushedData are the message of
	// that route.
	live       bool
	pushedAddr uint64
	pushedData uint32
}

// Table is the MSI-X state of one PCI function. See the package comment.
type Table struct {
	cfg     Config
	log     *slog.Logger
	entries []entry
	pbaSize uint64
	// ctl holds CtlEnable|CtlFunctionMask as last written by the guest.
	// It is stored under ctlMu, after which every entry is re-evaluated;
	// entries read it under their own lock.
	ctlMu sync.Mutex
	ctl   atomic.Uint32
}

// New returns a table with every entry masked and MSI-X disabled, the
// reset state of §6.8.2.
func New(cfg Config) (*Table, error) {
	if cfg.Vectors < 1 || cfg.Vectors > MaxVectors {
		return nil, fmt.Errorf("msix: %d vectors, want 1..%d: %w", cfg.Vectors, MaxVectors, ErrInvalidConfig)
	}
	if cfg.BAR < 0 || cfg.BAR >= pci.NumBARs {
		return nil, fmt.Errorf("msix: BAR index %d: %w", cfg.BAR, ErrInvalidConfig)
	}
	if cfg.TableOffset%8 != 0 || cfg.PBAOffset%8 != 0 {
		return nil, fmt.Errorf("msix: table offset %#x / PBA offset %#x not 8-byte aligned: %w", cfg.TableOffset, cfg.PBAOffset, ErrInvalidConfig)
	}
	if cfg.Alloc == nil {
		return nil, fmt.Errorf("msix: nil Alloc: %w", ErrInvalidConfig)
	}
	t := &Table{cfg: cfg, log: cfg.Logger, entries: make([]entry, cfg.Vectors)}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.pbaSize = uint64((cfg.Vectors+63)/64) * 8
	tLo, tHi := uint64(cfg.TableOffset), uint64(cfg.TableOffset)+t.TableSize()
	pLo, pHi := uint64(cfg.PBAOffset), uint64(cfg.PBAOffset)+t.pbaSize
	if tLo < pHi && pLo < tHi {
		return nil, fmt.Errorf("msix: table [%#x, %#x) overlaps PBA [%#x, %#x): %w", tLo, tHi, pLo, pHi, ErrInvalidConfig)
	}
	for i := range t.entries {
		t.entries[i].masked = true
	}
	return t, nil
}

// Vectors returns the number of table entries.
func (t *Table) Vectors() int { return len(t.entries) }

// TableSize returns the size in bytes of the table (Vectors*EntrySize).
func (t *Table) TableSize() uint64 { return uint64(len(t.entries)) * EntrySize }

// PBASize returns the size in bytes of the PBA (whole QWORDs).
func (t *Table) PBASize() uint64 { return t.pbaSize }

// Enabled reports whether the guest has set MSI-X Enable. A device uses
// it to choose between MSI-X and INTx.
func (t *Table) Enabled() bool { return t.ctl.Load()&CtlEnable != 0 }

// CapabilityBody returns the capability body for pci.ConfigSpace.
// AddCapability (PCI 3.0 §6.8.2.1-6.8.2.5): Message Control with Table
// Size N-1 and Enable/Function Mask clear, Table Offset/BIR and PBA
// Offset/BIR.
func (t *Table) CapabilityBody() []byte {
	b := make([]byte, CapBodySize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], uint16(len(t.entries)-1))
	le.PutUint32(b[2:], t.cfg.TableOffset|uint32(t.cfg.BAR))
	le.PutUint32(b[6:], t.cfg.PBAOffset|uint32(t.cfg.BAR))
	return b
}

// CapabilityWriteMask returns the write mask for the body: only Enable
// and Function Mask are guest-writable.
func (t *Table) CapabilityWriteMask() []byte {
	m := make([]byte, CapBodySize)
	m[1] = (CtlEnable | CtlFunctionMask) >> 8
	return m
}

// AddCapability adds the MSI-X capability to cs with the right body,
// write mask and Message Control hook, and returns its offset. opts may
// place it (pci.CapAt); a write mask or hook passed in opts is overridden.
func (t *Table) AddCapability(cs *pci.ConfigSpace, opts ...pci.CapOption) (int, error) {
	opts = append(opts[:len(opts):len(opts)], pci.CapWriteMask(t.CapabilityWriteMask()), pci.CapOnWrite(t.ControlWritten))
	off, err := cs.AddCapability(pci.CapIDMSIX, t.CapabilityBody(), opts...)
	if err != nil {
		return 0, fmt.Errorf("msix: adding capability: %w", err)
	}
	return off, nil
}

// ControlWritten is the pci.CapOnWrite hook of the capability: it picks
// up Enable and Function Mask from the upper byte of Message Control
// (capability offset 3) and re-evaluates every entry, delivering pending
// messages that became unmasked. Devices that add the capability
// themselves must install it.
func (t *Table) ControlWritten(offsetInCap int, data []byte) {
	const hiByte = 3
	if offsetInCap > hiByte || offsetInCap+len(data) <= hiByte {
		return
	}
	v := uint32(data[hiByte-offsetInCap]) << 8 & (CtlEnable | CtlFunctionMask)
	t.ctlMu.Lock()
	defer t.ctlMu.Unlock()
	if t.ctl.Swap(v) == v {
		return
	}
	for i := range t.entries {
		e := &t.entries[i]
		e.mu.Lock()
		t.sync(i, e)
		e.mu.Unlock()
	}
}

// Trigger raises vector: delivers it if deliverable, records it as pending
// if masked, drops it if MSI-X is disabled. It is safe to call from any
// goroutine and does not allocate.
func (t *Table) Trigger(vector int) error {
	if vector < 0 || vector >= len(t.entries) {
		return fmt.Errorf("msix: trigger %d of %d: %w", vector, len(t.entries), ErrVectorRange)
	}
	e := &t.entries[vector]
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.live {
		if err := e.vec.Trigger(); err != nil {
			return fmt.Errorf("msix: vector %d: %w", vector, err)
		}
		return nil
	}
	if t.ctl.Load()&CtlEnable != 0 {
		e.pending = true
	}
	return nil
}

// Interrupt is a handle that triggers one vector, for devices that hand
// interrupt lines to queue workers.
type Interrupt struct {
	t      *Table
	vector int
}

// Interrupt returns a handle for vector (which Trigger range-checks).
func (t *Table) Interrupt(vector int) Interrupt { return Interrupt{t: t, vector: vector} }

// Trigger calls Table.Trigger for the handle's vector.
func (i Interrupt) Trigger() error { return i.t.Trigger(i.vector) }

// Pending reports the PBA bit of vector (false when out of range).
func (t *Table) Pending(vector int) bool {
	if vector < 0 || vector >= len(t.entries) {
		return false
	}
	e := &t.entries[vector]
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pending
}

// Close releases the vectors allocated so far that implement io.Closer
// (an *irq.MSIVector unbinds its irqfd and frees its GSI). The table must
// not be used afterwards.
func (t *Table) Close() error {
	var errs []error
	for i := range t.entries {
		e := &t.entries[i]
		e.mu.Lock()
		if c, ok := e.vec.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("msix: closing vector %d: %w", i, err))
			}
		}
		e.vec, e.live = nil, false
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// sync brings entry i's route in line with the guest-visible state and
// delivers a pending message that became deliverable. e.mu must be held.
//
// Routes are only pushed when the effective state changes: a masked
// entry keeps its last message with delivery disabled, so the guest
// programming address and data of a masked entry costs no ioctl.
func (t *Table) sync(i int, e *entry) {
	want := t.ctl.Load() == CtlEnable && !e.masked
	if want && e.vec == nil {
		if e.failed {
			return
		}
		v, err := t.cfg.Alloc()
		if err != nil {
			e.failed = true
			t.log.Error("msix: allocating vector, entry stays undeliverable", "vector", i, "err", err)
			return
		}
		e.vec = v
	}
	if e.vec == nil {
		return // never deliverable so far: nothing routed, nothing to do
	}
	addr, data := e.pushedAddr, e.pushedData
	if want {
		addr, data = e.addr, e.data
	}
	if want == e.live && addr == e.pushedAddr && data == e.pushedData {
		return
	}
	if err := e.vec.Update(addr, data, want); err != nil {
		t.log.Error("msix: updating route", "vector", i, "addr", fmt.Sprintf("%#x", addr), "data", fmt.Sprintf("%#x", data), "enabled", want, "err", err)
		// Keep our view conservative: if enabling failed, triggers
		// stay pending rather than going to a route that may not exist.
		if want {
			return
		}
	}
	e.live, e.pushedAddr, e.pushedData = want, addr, data
	if e.live && e.pending {
		e.pending = false
		if err := e.vec.Trigger(); err != nil {
			t.log.Error("msix: delivering pending message", "vector", i, "err", err)
		}
	}
}

// Claims reports whether a BAR access at offset of n bytes falls inside
// the table or the PBA, for devices that share the BAR with other
// registers. Only whole accesses count.
func (t *Table) Claims(offset uint64, n int) bool {
	_, _, ok := t.decode(offset, n)
	return ok
}

type region int

const (
	regionTable region = iota
	regionPBA
)

// decode locates a BAR access wholly inside the table or the PBA.
func (t *Table) decode(offset uint64, n int) (region, uint64, bool) {
	end := offset + uint64(n)
	if n <= 0 || end < offset {
		return 0, 0, false
	}
	if lo := uint64(t.cfg.TableOffset); offset >= lo && end <= lo+t.TableSize() {
		return regionTable, offset - lo, true
	}
	if lo := uint64(t.cfg.PBAOffset); offset >= lo && end <= lo+t.pbaSize {
		return regionPBA, offset - lo, true
	}
	return 0, 0, false
}

// validAccess applies §6.8.2: table and PBA accesses are DWORD or QWORD
// sized and naturally aligned.
func validAccess(off uint64, n int) bool {
	return (n == 4 || n == 8) && off%uint64(n) == 0
}

// Read implements bus.Device for the BAR holding the table and PBA
// (offset relative to the BAR base). Accesses outside both structures,
// or not DWORD/QWORD sized and aligned, read as zero.
func (t *Table) Read(offset uint64, data []byte) {
	clear(data)
	r, off, ok := t.decode(offset, len(data))
	if !ok || !validAccess(off, len(data)) {
		return
	}
	var v uint64
	switch r {
	case regionTable:
		e := &t.entries[off/EntrySize]
		e.mu.Lock()
		v = e.dword(off%EntrySize) | e.dword(off%EntrySize+4)<<32
		e.mu.Unlock()
	case regionPBA:
		for b := range len(data) * 8 {
			i := int(off)*8 + b
			if i >= len(t.entries) {
				break
			}
			e := &t.entries[i]
			e.mu.Lock()
			if e.pending {
				v |= 1 << b
			}
			e.mu.Unlock()
		}
	}
	if len(data) == 8 {
		binary.LittleEndian.PutUint64(data, v)
	} else {
		binary.LittleEndian.PutUint32(data, uint32(v))
	}
}

// dword returns the DWORD at entry offset off (0, 4, 8 or 12; 16 reads
// as zero so that a QWORD read at offset 12 cannot occur: QWORD reads are
// 8-aligned). e.mu must be held.
func (e *entry) dword(off uint64) uint64 {
	switch off {
	case EntryAddrLo:
		return e.addr & 0xFFFF_FFFF
	case EntryAddrHi:
		return e.addr >> 32
	case EntryData:
		return uint64(e.data)
	case EntryControl:
		if e.masked {
			return VectorControlMask
		}
	}
	return 0
}

// Write implements bus.Device. Table writes update the entry and its
// route; the PBA is read-only. Invalid accesses are ignored.
func (t *Table) Write(offset uint64, data []byte) {
	r, off, ok := t.decode(offset, len(data))
	if !ok || !validAccess(off, len(data)) || r != regionTable {
		return
	}
	var v uint64
	if len(data) == 8 {
		v = binary.LittleEndian.Uint64(data)
	} else {
		v = uint64(binary.LittleEndian.Uint32(data))
	}
	i := int(off / EntrySize)
	e := &t.entries[i]
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setDword(off%EntrySize, uint32(v))
	if len(data) == 8 {
		e.setDword(off%EntrySize+4, uint32(v>>32))
	}
	t.sync(i, e)
}

// setDword stores a DWORD at entry offset off. Reserved Vector Control
// bits are read-only zero. e.mu must be held.
func (e *entry) setDword(off uint64, v uint32) {
	switch off {
	case EntryAddrLo:
		e.addr = e.addr&^0xFFFF_FFFF | uint64(v)
	case EntryAddrHi:
		e.addr = e.addr&0xFFFF_FFFF | uint64(v)<<32
	case EntryData:
		e.data = v
	case EntryControl:
		e.masked = v&VectorControlMask != 0
	}
}
