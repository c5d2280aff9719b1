package pci

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"sync"
	"testing"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
	"github.com/stretchr/testify/require"
)

const testRAMEnd = 6 << 30 // 6 GiB: RAM above 4 GiB; 64-bit window starts at 6 GiB (1 GiB aligned)

// guest drives the bridge the way a guest kernel does: through the port
// bus, writing CONFIG_ADDRESS at 0xCF8 and accessing CONFIG_DATA.
type guest struct {
	t    *testing.T
	pio  *bus.Bus
	mmio *bus.Bus
	br   *Bridge
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	g := &guest{t: t, pio: bus.New("pio"), mmio: bus.New("mmio"), logs: &syncBuffer{}}
	br, err := NewBridge(Config{
		PIO:    g.pio,
		MMIO:   g.mmio,
		RAMEnd: testRAMEnd,
		Logger: slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	g.br = br
	return g
}

func cfgAddr(bus, dev, fn, reg int) uint32 {
	return 1<<31 | uint32(bus)<<16 | uint32(dev)<<11 | uint32(fn)<<8 | uint32(reg)&0xFC
}

func (g *guest) outl(port uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	require.True(g.t, g.pio.Write(port, b[:]), "outl %#x unclaimed", port)
}

func (g *guest) inl(port uint64) uint32 {
	var b [4]byte
	require.True(g.t, g.pio.Read(port, b[:]), "inl %#x unclaimed", port)
	return binary.LittleEndian.Uint32(b[:])
}

func (g *guest) selectReg(slot, reg int) {
	g.outl(layout.PortPCIConfig, cfgAddr(0, slot, 0, reg))
}

func (g *guest) read(slot, reg, size int) uint32 {
	g.selectReg(slot, reg)
	b := make([]byte, size)
	require.True(g.t, g.pio.Read(layout.PortPCIConfig+4+uint64(reg&3), b))
	var w [4]byte
	copy(w[:], b)
	return binary.LittleEndian.Uint32(w[:])
}

func (g *guest) write(slot, reg, size int, v uint32) {
	g.selectReg(slot, reg)
	var w [4]byte
	binary.LittleEndian.PutUint32(w[:], v)
	require.True(g.t, g.pio.Write(layout.PortPCIConfig+4+uint64(reg&3), w[:size]))
}

func (g *guest) read32(slot, reg int) uint32     { return g.read(slot, reg, 4) }
func (g *guest) read16(slot, reg int) uint16     { return uint16(g.read(slot, reg, 2)) }
func (g *guest) read8(slot, reg int) uint8       { return uint8(g.read(slot, reg, 1)) }
func (g *guest) write32(slot, reg int, v uint32) { g.write(slot, reg, 4, v) }
func (g *guest) write16(slot, reg int, v uint16) { g.write(slot, reg, 2, uint32(v)) }
func (g *guest) write8(slot, reg int, v uint8)   { g.write(slot, reg, 1, uint32(v)) }

// mmioRead32 reports whether an MMIO read at addr was claimed.
func (g *guest) mmioClaimed(addr uint64) bool {
	var b [4]byte
	return g.mmio.Read(addr, b[:])
}

func (g *guest) pioClaimed(port uint64) bool {
	var b [1]byte
	return g.pio.Read(port, b[:])
}

// recorder is a BAR handler that logs accesses.
type recorder struct {
	mu     sync.Mutex
	reads  []uint64
	writes []uint64
}

func (r *recorder) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, off)
}

func (r *recorder) lastRead() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reads) == 0 {
		return ^uint64(0)
	}
	return r.reads[len(r.reads)-1]
}

type move struct{ old, new uint64 }

// testDev is a device with one BAR of each kind and MSI, MSI-X and a
// vendor capability, laid out like the 82599 (MSI at 0x50, MSI-X at 0x70).
type testDev struct {
	*ConfigSpace
	bar0, bar1, bar2 recorder

	mu       sync.Mutex
	moves    map[int][]move
	capWrite []capWrite
	msiOff   int
	msixOff  int
	vendOff  int
}

type capWrite struct {
	off  int
	data []byte
}

const (
	testVendor  = 0x1af4
	testDevice  = 0x10f5
	testClass   = 0x020000
	bar0Size    = 0x1000 // mem32
	bar1Size    = 0x20   // io
	bar2Size    = 0x4000 // mem64 in BAR2/BAR3
	msixCtlMask = 0xC0   // high byte of Message Control: enable, function mask
	msixTable   = 0x07FF // table size field (read-only)
)

func newTestDev(t *testing.T) *testDev {
	t.Helper()
	d := &testDev{moves: map[int][]move{}}
	d.ConfigSpace = NewConfigSpace(Header{
		VendorID: testVendor, DeviceID: testDevice, Revision: 1, ClassCode: testClass,
		SubsystemVendorID: 0x8086, SubsystemID: 0x0001,
	})
	onMove := func(i int) func(old, new uint64) {
		return func(old, new uint64) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.moves[i] = append(d.moves[i], move{old, new})
		}
	}
	require.NoError(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: bar0Size, Handler: &d.bar0, OnMove: onMove(0)}))
	require.NoError(t, d.SetBAR(1, BAR{Kind: BARIO, Size: bar1Size, Handler: &d.bar1, OnMove: onMove(1)}))
	require.NoError(t, d.SetBAR(2, BAR{Kind: BARMem64, Size: bar2Size, Prefetchable: true, Handler: &d.bar2, OnMove: onMove(2)}))

	var err error
	// MSI: control, address lo/hi, data; enable bit writable.
	d.msiOff, err = d.AddCapability(CapIDMSI, make([]byte, 12), CapAt(0x50), CapWriteMask([]byte{0x01}))
	require.NoError(t, err)
	// MSI-X: Message Control (table size 0x7FF read-only; enable and
	// function mask writable), table and PBA offsets read-only.
	body := []byte{0xFF, 0x07, 0, 0, 0, 0, 0, 0x10, 0, 0}
	d.msixOff, err = d.AddCapability(CapIDMSIX, body, CapAt(0x70), CapWriteMask([]byte{0x00, msixCtlMask}),
		CapOnWrite(func(off int, data []byte) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.capWrite = append(d.capWrite, capWrite{off, data})
		}))
	require.NoError(t, err)
	d.vendOff, err = d.AddCapability(CapIDVendor, []byte{4, 0xAA})
	require.NoError(t, err)
	return d
}

func (d *testDev) movesOf(i int) []move {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]move(nil), d.moves[i]...)
}

func (d *testDev) capWrites() []capWrite {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]capWrite(nil), d.capWrite...)
}
