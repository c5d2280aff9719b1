package msix

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/pci"
)

// fakeVector records what the table asks of a KVM route.
type fakeVector struct {
	mu       sync.Mutex
	addr     uint64
	data     uint32
	enabled  bool
	updates  int
	fired    atomic.Int64 // triggers that reached an enabled route
	dropped  atomic.Int64 // triggers that hit a disabled route (lost interrupts)
	closed   bool
	failNext error
}

func (v *fakeVector) Update(addr uint64, data uint32, enabled bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.failNext; err != nil {
		v.failNext = nil
		return err
	}
	v.addr, v.data, v.enabled = addr, data, enabled
	v.updates++
	return nil
}

func (v *fakeVector) Trigger() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.enabled {
		v.fired.Add(1)
	} else {
		v.dropped.Add(1)
	}
	return nil
}

func (v *fakeVector) Close() error { v.closed = true; return nil }

func (v *fakeVector) state() (uint64, uint32, bool, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.addr, v.data, v.enabled, v.updates
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	t    *testing.T
	tab  *Table
	cs   *pci.ConfigSpace
	cap  int
	mu   sync.Mutex
	vecs []*fakeVector // in allocation order
}

const (
	tableOff = 0x0
	pbaOff   = 0x2000
)

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	f := &fixture{t: t}
	tab, err := New(Config{Vectors: n, BAR: 3, Logger: discard, TableOffset: tableOff, PBAOffset: pbaOff, Alloc: func() (Vector, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		v := &fakeVector{}
		f.vecs = append(f.vecs, v)
		return v, nil
	}})
	require.NoError(t, err)
	f.tab = tab
	f.cs = pci.NewConfigSpace(pci.Header{VendorID: 0x8086, DeviceID: 0x10FB})
	f.cap, err = tab.AddCapability(f.cs, pci.CapAt(0x70))
	require.NoError(t, err)
	return f
}

func (f *fixture) vec(i int) *fakeVector {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vecs[i]
}

func (f *fixture) nvecs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vecs)
}

func (f *fixture) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	f.tab.Write(off, b[:])
}

func (f *fixture) w64(off uint64, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	f.tab.Write(off, b[:])
}

func (f *fixture) r32(off uint64) uint32 {
	var b [4]byte
	f.tab.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (f *fixture) r64(off uint64) uint64 {
	var b [8]byte
	f.tab.Read(off, b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// program writes an entry the way Linux does: address, data, then unmask.
func (f *fixture) program(i int, addr uint64, data uint32, unmask bool) {
	base := uint64(tableOff + i*EntrySize)
	f.w32(base+EntryAddrLo, uint32(addr))
	f.w32(base+EntryAddrHi, uint32(addr>>32))
	f.w32(base+EntryData, data)
	if unmask {
		f.w32(base+EntryControl, 0)
	}
}

// control writes Message Control's upper byte through the config space
// path a guest uses: the stored value after masking goes to the hook.
func (f *fixture) control(v uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	// Emulate the bridge: masked store, then the hook with stored bytes.
	cur := make([]byte, 2)
	f.cs.Read(f.cap+2, cur)
	m := f.tab.CapabilityWriteMask()[:2]
	for i := range b {
		cur[i] = cur[i]&^m[i] | b[i]&m[i]
	}
	f.cs.Store(f.cap+2, cur)
	f.tab.ControlWritten(2, cur)
}

func TestNewValidation(t *testing.T) {
	alloc := func() (Vector, error) { return &fakeVector{}, nil }
	for name, cfg := range map[string]Config{
		"zero vectors":  {Vectors: 0, Alloc: alloc, PBAOffset: 0x1000},
		"too many":      {Vectors: MaxVectors + 1, Alloc: alloc, PBAOffset: 0x10000},
		"bad BAR":       {Vectors: 1, BAR: 6, Alloc: alloc, PBAOffset: 0x1000},
		"unaligned":     {Vectors: 1, TableOffset: 4, PBAOffset: 0x1000, Alloc: alloc},
		"overlap":       {Vectors: 4, TableOffset: 0, PBAOffset: 0x30, Alloc: alloc},
		"nil allocator": {Vectors: 1, PBAOffset: 0x1000},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	tab, err := New(Config{Vectors: MaxVectors, TableOffset: 0, PBAOffset: 0x8000, Alloc: alloc})
	require.NoError(t, err)
	assert.EqualValues(t, 0x8000, tab.TableSize())
	assert.EqualValues(t, 256, tab.PBASize())
}

func TestCapability(t *testing.T) {
	f := newFixture(t, 5)
	raw := make([]byte, 12)
	f.cs.Read(f.cap, raw)
	le := binary.LittleEndian
	assert.EqualValues(t, pci.CapIDMSIX, raw[0])
	assert.EqualValues(t, 4, le.Uint16(raw[2:])&CtlTableSizeMask, "table size is N-1")
	assert.EqualValues(t, tableOff|3, le.Uint32(raw[4:]), "table offset | BIR")
	assert.EqualValues(t, pbaOff|3, le.Uint32(raw[8:]), "PBA offset | BIR")
	assert.False(t, f.tab.Enabled())

	f.control(CtlEnable | CtlTableSizeMask) // table-size bits are read-only
	f.cs.Read(f.cap+2, raw[:2])
	assert.EqualValues(t, CtlEnable|4, le.Uint16(raw))
	assert.True(t, f.tab.Enabled())

	// A hook call not covering the upper byte changes nothing.
	f.tab.ControlWritten(2, []byte{0})
	assert.True(t, f.tab.Enabled())
	// A dword write from the ID byte covers it.
	f.tab.ControlWritten(0, []byte{pci.CapIDMSIX, 0, 4, 0})
	assert.False(t, f.tab.Enabled())
}

func TestTableReadWrite(t *testing.T) {
	f := newFixture(t, 4)
	// Reset state: everything zero except the mask bits.
	for i := range 4 {
		assert.EqualValues(t, 0, f.r64(uint64(i*EntrySize)))
		assert.EqualValues(t, VectorControlMask, f.r32(uint64(i*EntrySize+EntryControl)))
	}
	f.w32(0x10+EntryAddrLo, 0xFEE0_1000)
	f.w32(0x10+EntryAddrHi, 0x1)
	f.w32(0x10+EntryData, 0x4041)
	assert.EqualValues(t, 0x1_FEE0_1000, f.r64(0x10))
	assert.EqualValues(t, uint64(VectorControlMask)<<32|0x4041, f.r64(0x18))

	// QWORD writes, and reserved Vector Control bits read as zero.
	f.w64(0x20, 0xFEE0_2000)
	f.w64(0x28, 0xFFFF_FFFE_0000_0022)
	assert.EqualValues(t, 0xFEE0_2000, f.r32(0x20))
	assert.EqualValues(t, 0, f.r32(0x24))
	assert.EqualValues(t, 0x22, f.r32(0x28))
	assert.EqualValues(t, 0, f.r32(0x2C), "unmasked, reserved bits dropped")

	// Invalid sizes and alignments: reads zero, writes ignored.
	for _, n := range []int{1, 2, 3, 16} {
		b := make([]byte, n)
		for i := range b {
			b[i] = 0xAA
		}
		f.tab.Read(0x10, b)
		assert.Equal(t, make([]byte, n), b)
		f.tab.Write(0x10, b)
	}
	f.w64(0x14, 0xDEAD_BEEF_DEAD_BEEF) // QWORD at a DWORD boundary
	assert.EqualValues(t, 0x1_FEE0_1000, f.r64(0x10))

	// Outside table and PBA, past the end, wrapping offsets.
	f.w32(0x40, 1)
	assert.EqualValues(t, 0, f.r32(0x40))
	assert.EqualValues(t, 0, f.r32(^uint64(0)-1))
	f.w32(^uint64(0)-1, 1)
	assert.True(t, f.tab.Claims(0x3C, 4))
	assert.False(t, f.tab.Claims(0x3C, 8))
	assert.True(t, f.tab.Claims(pbaOff, 8))
	assert.False(t, f.tab.Claims(pbaOff+8, 4))

	// The PBA is read-only.
	f.w64(pbaOff, ^uint64(0))
	assert.EqualValues(t, 0, f.r64(pbaOff))
	assert.Equal(t, 0, f.nvecs(), "nothing deliverable yet, nothing allocated")
}

func TestDeliveryAndRoutes(t *testing.T) {
	f := newFixture(t, 4)
	f.program(1, 0xFEE0_0000, 0x31, true)
	assert.Equal(t, 0, f.nvecs(), "MSI-X disabled: no vector yet")
	require.NoError(t, f.tab.Trigger(1))
	assert.False(t, f.tab.Pending(1), "disabled: interrupt dropped, not pending")

	f.control(CtlEnable)
	require.Equal(t, 1, f.nvecs())
	v := f.vec(0)
	addr, data, en, _ := v.state()
	assert.Equal(t, uint64(0xFEE0_0000), addr)
	assert.Equal(t, uint32(0x31), data)
	assert.True(t, en)

	require.NoError(t, f.tab.Trigger(1))
	assert.EqualValues(t, 1, v.fired.Load())

	// Reprogramming an unmasked entry (x86 affinity change) follows.
	f.w32(0x10+EntryAddrLo, 0xFEE0_2000)
	addr, _, en, _ = v.state()
	assert.Equal(t, uint64(0xFEE0_2000), addr)
	assert.True(t, en)

	// Out-of-range vectors are errors, not panics.
	assert.ErrorIs(t, f.tab.Trigger(4), ErrVectorRange)
	assert.ErrorIs(t, f.tab.Trigger(-1), ErrVectorRange)
}

func TestMaskPendingUnmask(t *testing.T) {
	f := newFixture(t, 2)
	f.control(CtlEnable)
	f.program(0, 0xFEE0_0000, 0x41, true)
	v := f.vec(0)

	// Mask: the route goes off, triggers become pending.
	f.w32(EntryControl, VectorControlMask)
	_, _, en, updates := v.state()
	assert.False(t, en)
	require.NoError(t, f.tab.Trigger(0))
	require.NoError(t, f.tab.Trigger(0))
	assert.True(t, f.tab.Pending(0))
	assert.EqualValues(t, 1, f.r32(pbaOff))
	assert.EqualValues(t, 0, v.fired.Load()+v.dropped.Load())

	// Programming a masked entry costs no route update.
	f.w32(EntryData, 0x42)
	_, _, _, u2 := v.state()
	assert.Equal(t, updates, u2)

	// Unmask delivers once, with the new message, and clears pending.
	f.w32(EntryControl, 0)
	_, data, en, _ := v.state()
	assert.True(t, en)
	assert.EqualValues(t, 0x42, data)
	assert.EqualValues(t, 1, v.fired.Load())
	assert.False(t, f.tab.Pending(0))
	assert.EqualValues(t, 0, f.r32(pbaOff))
}

func TestFunctionMask(t *testing.T) {
	f := newFixture(t, 70) // PBA spans two QWORDs
	f.control(CtlEnable)
	f.program(0, 0xFEE0_0000, 0x50, true)
	f.program(65, 0xFEE0_0000, 0x51, true)
	v0, v65 := f.vec(0), f.vec(1)

	f.control(CtlEnable | CtlFunctionMask)
	_, _, en0, _ := v0.state()
	_, _, en65, _ := v65.state()
	assert.False(t, en0)
	assert.False(t, en65)
	require.NoError(t, f.tab.Trigger(65))
	assert.EqualValues(t, 0, f.r64(pbaOff))
	assert.EqualValues(t, 2, f.r64(pbaOff+8), "bit 65 is bit 1 of the second QWORD")
	assert.EqualValues(t, 2, f.r32(pbaOff+8))

	// Entry 0 is also individually masked; clearing the function mask
	// delivers 65 only, and 0 stays pending until its own unmask.
	f.w32(EntryControl, VectorControlMask)
	require.NoError(t, f.tab.Trigger(0))
	f.control(CtlEnable)
	assert.EqualValues(t, 1, v65.fired.Load())
	assert.EqualValues(t, 0, v0.fired.Load())
	assert.True(t, f.tab.Pending(0))
	assert.False(t, f.tab.Pending(65))
	f.w32(EntryControl, 0)
	assert.EqualValues(t, 1, v0.fired.Load())

	// Disabling MSI-X turns routes off; pending bits survive it.
	f.w32(EntryControl, VectorControlMask)
	require.NoError(t, f.tab.Trigger(0))
	f.control(0)
	_, _, en65, _ = v65.state()
	assert.False(t, en65)
	assert.True(t, f.tab.Pending(0))
	assert.Equal(t, 2, f.nvecs(), "vectors are allocated once")
}

func TestAllocAndUpdateFailures(t *testing.T) {
	calls := 0
	tab, err := New(Config{Vectors: 2, PBAOffset: 0x1000, Logger: discard, Alloc: func() (Vector, error) {
		calls++
		return nil, errors.New("out of GSIs")
	}})
	require.NoError(t, err)
	tab.ControlWritten(3, []byte{CtlEnable >> 8})
	var b [4]byte
	tab.Write(EntryControl, b[:])
	tab.Write(EntryControl, b[:])
	assert.Equal(t, 1, calls, "allocation is not retried on every write")
	require.NoError(t, tab.Trigger(0))
	assert.True(t, tab.Pending(0), "undeliverable vector keeps the interrupt pending")

	f := newFixture(t, 1)
	f.control(CtlEnable)
	f.program(0, 0xFEE0_0000, 1, true)
	v := f.vec(0)
	f.w32(EntryControl, VectorControlMask)
	v.mu.Lock()
	v.failNext = errors.New("KVM_SET_GSI_ROUTING: ENOMEM")
	v.mu.Unlock()
	f.w32(EntryControl, 0) // enabling the route fails
	require.NoError(t, f.tab.Trigger(0))
	assert.True(t, f.tab.Pending(0), "route not installed: interrupt kept pending")
	f.w32(EntryData, 2) // next change retries and delivers
	assert.EqualValues(t, 1, v.fired.Load())
	assert.False(t, f.tab.Pending(0))

	require.NoError(t, f.tab.Close())
	assert.True(t, v.closed)
}

// TestConcurrentTriggerAndTableWrites hammers Trigger from device
// goroutines while a "vCPU" masks, unmasks and reprograms entries and
// toggles the function mask. Under -race this checks the locking; the
// invariant checked is that no trigger reaches a disabled route (which
// would be a lost interrupt with KVM) and that every trigger is either
// delivered or left pending.
func TestConcurrentTriggerAndTableWrites(t *testing.T) {
	const n = 4
	f := newFixture(t, n)
	f.control(CtlEnable)
	for i := range n {
		f.program(i, 0xFEE0_0000, uint32(0x30+i), true)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var sent [n]atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f.tab.Trigger(i); err != nil {
					t.Error(err)
					return
				}
				sent[i].Add(1)
			}
		}()
	}
	for round := range 400 {
		i := round % n
		base := uint64(i * EntrySize)
		f.w32(base+EntryControl, VectorControlMask)
		f.w32(base+EntryData, uint32(round))
		f.r64(pbaOff)
		f.w32(base+EntryControl, 0)
		if round%100 == 0 {
			f.control(CtlEnable | CtlFunctionMask)
			f.control(CtlEnable)
		}
	}
	// Everything is unmasked now: each worker gets its interrupts through.
	for i := range n {
		require.Eventually(t, func() bool { return f.vec(i).fired.Load() > 0 }, 5*time.Second, time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for i := range n {
		v := f.vec(i)
		assert.Zero(t, v.dropped.Load(), "vector %d: trigger reached a disabled route", i)
		assert.False(t, f.tab.Pending(i), "everything is unmasked at the end")
	}
}

func TestTriggerDoesNotAllocate(t *testing.T) {
	f := newFixture(t, 2)
	f.control(CtlEnable)
	f.program(0, 0xFEE0_0000, 1, true)
	irq := f.tab.Interrupt(0)
	allocs := testing.AllocsPerRun(100, func() { _ = irq.Trigger() })
	assert.Zero(t, allocs)
	allocs = testing.AllocsPerRun(100, func() { _ = f.tab.Trigger(1) }) // masked path
	assert.Zero(t, allocs)
}
