package pci

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
	"github.com/stretchr/testify/require"
)

const (
	wantBAR0 = layout.PCIMMIO32Start // first mem32 allocation
	wantBAR1 = PIOWindowStart        // first io allocation
	wantBAR2 = 6 << 30               // PCIMMIO64Start(6 GiB)
	bar2Lo   = wantBAR2 & 0xFFFF_FFFF
	bar2Hi   = wantBAR2 >> 32
)

func addTestDev(t *testing.T, g *guest) (*testDev, int) {
	t.Helper()
	d := newTestDev(t)
	slot, err := g.br.Add(d)
	require.NoError(t, err)
	return d, slot
}

func TestEnumeration(t *testing.T) {
	g := newGuest(t)
	_, slot := addTestDev(t, g)
	require.Equal(t, 1, slot)

	found := map[int]uint32{}
	for dev := range NumSlots {
		for fn := range 8 {
			g.outl(layout.PortPCIConfig, cfgAddr(0, dev, fn, RegVendorID))
			id := g.inl(layout.PortPCIConfig + 4)
			if fn != 0 {
				require.Equal(t, uint32(0xFFFFFFFF), id, "function %d of slot %d", fn, dev)
				continue
			}
			if id != 0xFFFFFFFF {
				found[dev] = id
			}
		}
	}
	require.Equal(t, map[int]uint32{
		0: HostBridgeDeviceID<<16 | HostBridgeVendorID,
		1: testDevice<<16 | testVendor,
	}, found)

	// Host bridge: class 06/00/00, header type 0.
	require.Equal(t, uint32(ClassHostBridge), g.read32(0, 0x08)>>8)
	require.Equal(t, uint8(0), g.read8(0, RegHeaderType))

	// Test device identity fields.
	require.Equal(t, uint32(testClass<<8|1), g.read32(1, 0x08))
	require.Equal(t, uint32(0x0001<<16|0x8086), g.read32(1, RegSubsystemVendorID))
	require.Equal(t, uint8(InterruptPinINTA), g.read8(1, RegInterruptPin))
	require.Equal(t, uint8(5), g.read8(1, RegInterruptLine))

	// Other buses do not exist.
	g.outl(layout.PortPCIConfig, cfgAddr(1, 0, 0, 0))
	require.Equal(t, uint32(0xFFFFFFFF), g.inl(layout.PortPCIConfig+4))
}

func TestAbsentSlotReadsAllOnes(t *testing.T) {
	g := newGuest(t)
	for _, size := range []int{1, 2, 4} {
		for reg := 0; reg < ConfigSize; reg += size {
			require.Equal(t, uint32(1)<<(8*size)-1, g.read(7, reg, size), "reg %#x size %d", reg, size)
		}
	}
	// Writes to an absent slot go nowhere and do not panic.
	g.write32(7, RegCommand, 0xFFFFFFFF)
	require.Equal(t, uint32(0xFFFFFFFF), g.read32(7, RegCommand))
}

func TestConfigAddressRegister(t *testing.T) {
	g := newGuest(t)
	// Linux pci_check_type1: byte write to 0xCFB, then 0x80000000 must
	// read back from 0xCF8.
	g.outl(layout.PortPCIConfig, 0x12345678)
	require.True(t, g.pio.Write(layout.PortPCIConfig+3, []byte{0x01}))
	tmp := g.inl(layout.PortPCIConfig)
	require.Equal(t, uint32(0x00345678), tmp, "reserved bits 30:24 and 1:0 read as zero")
	g.outl(layout.PortPCIConfig, 0x80000000)
	require.Equal(t, uint32(0x80000000), g.inl(layout.PortPCIConfig))
	g.outl(layout.PortPCIConfig, tmp)

	// Sub-dword reads return bytes of the latch; 16-bit writes are ignored.
	g.outl(layout.PortPCIConfig, cfgAddr(0, 3, 0, 0x44))
	b := make([]byte, 2)
	require.True(t, g.pio.Read(layout.PortPCIConfig+2, b))
	require.Equal(t, []byte{0x00, 0x80}, b)
	require.True(t, g.pio.Write(layout.PortPCIConfig, []byte{0, 0}))
	require.Equal(t, cfgAddr(0, 3, 0, 0x44), g.inl(layout.PortPCIConfig))

	// Enable bit clear: data port reads all-ones, writes are dropped.
	g.outl(layout.PortPCIConfig, cfgAddr(0, 0, 0, 0)&^(1<<31))
	require.Equal(t, uint32(0xFFFFFFFF), g.inl(layout.PortPCIConfig+4))
	g.outl(layout.PortPCIConfig, cfgAddr(0, 0, 0, RegInterruptLine)&^(1<<31))
	g.outl(layout.PortPCIConfig+4, 0x42)
	require.Equal(t, uint8(0), g.read8(0, RegInterruptLine))
}

func TestDataPortAccessSizes(t *testing.T) {
	g := newGuest(t)
	want := uint32(HostBridgeDeviceID<<16 | HostBridgeVendorID)
	for off := range 4 {
		require.Equal(t, uint8(want>>(8*off)), g.read8(0, off), "byte %d", off)
	}
	require.Equal(t, uint16(HostBridgeVendorID), g.read16(0, 0))
	require.Equal(t, uint16(HostBridgeDeviceID), g.read16(0, 2))
	// 16-bit read at 0xCFD (unaligned inside the dword) is allowed.
	require.Equal(t, uint16(want>>8), g.read16(0, 1))

	// Interrupt line of slot 1 via a byte write at 0xCFC, then read at
	// each offset of the dword.
	addTestDev(t, g)
	g.write8(1, RegInterruptLine, 0x0B)
	require.Equal(t, uint8(0x0B), g.read8(1, RegInterruptLine))
	require.Equal(t, uint32(0x0B|InterruptPinINTA<<8), g.read32(1, RegInterruptLine)&0xFFFF)
}

func TestReadOnlyFieldsIgnoreWrites(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)
	before := make([]byte, ConfigSize)
	d.Read(0, before)

	for _, reg := range []int{RegVendorID, 0x08 /* revision+class */, RegSubsystemVendorID, RegROMAddress, RegCapPointer, 0x38} {
		g.write32(slot, reg, 0xFFFFFFFF)
		g.write32(slot, reg, 0)
		require.Equal(t, binary.LittleEndian.Uint32(before[reg:]), g.read32(slot, reg), "reg %#x", reg)
	}
	// Header type, status, interrupt pin, latency timer.
	g.write8(slot, RegHeaderType, 0x80)
	require.Equal(t, uint8(0), g.read8(slot, RegHeaderType))
	g.write16(slot, RegStatus, 0)
	require.Equal(t, uint16(StatusCapList), g.read16(slot, RegStatus))
	g.write8(slot, RegInterruptPin, 4)
	require.Equal(t, uint8(InterruptPinINTA), g.read8(slot, RegInterruptPin))
	g.write8(slot, RegLatencyTimer, 0x40)
	require.Equal(t, uint8(0), g.read8(slot, RegLatencyTimer))
	// Cache line size and interrupt line are scratch registers.
	g.write8(slot, RegCacheLineSize, 0x10)
	require.Equal(t, uint8(0x10), g.read8(slot, RegCacheLineSize))

	// COMMAND: only implemented bits stick.
	g.write16(slot, RegCommand, 0xFFFF)
	require.Equal(t, uint16(commandWritable), g.read16(slot, RegCommand))
	require.Equal(t, uint16(commandWritable), d.Command())

	// Vendor capability body and all capability headers are read-only.
	g.write32(slot, d.vendOff, 0xFFFFFFFF)
	require.Equal(t, binary.LittleEndian.Uint32(before[d.vendOff:]), g.read32(slot, d.vendOff))
	// The identity did not change underneath.
	require.Equal(t, uint16(testVendor), g.read16(slot, RegVendorID))
	// Host bridge identity is read-only too.
	g.write32(0, RegVendorID, 0)
	require.Equal(t, uint16(HostBridgeVendorID), g.read16(0, RegVendorID))
}

func TestFirmwareAllocation(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)

	cmd := g.read16(slot, RegCommand)
	require.Equal(t, uint16(CommandMemory|CommandIO|CommandBusMaster), cmd)
	require.Equal(t, uint32(wantBAR0), g.read32(slot, RegBAR0))
	require.Equal(t, uint32(wantBAR1|1), g.read32(slot, RegBAR0+4))
	require.Equal(t, uint32(bar2Lo|0b1100), g.read32(slot, RegBAR0+8), "64-bit prefetchable")
	require.Equal(t, uint32(bar2Hi), g.read32(slot, RegBAR0+12))
	for i := 4; i < NumBARs; i++ {
		require.Zero(t, g.read32(slot, RegBAR0+4*i))
	}

	for i, want := range map[int]uint64{0: wantBAR0, 1: wantBAR1, 2: wantBAR2} {
		base, mapped := g.br.BAR(slot, i)
		require.True(t, mapped)
		require.Equal(t, want, base)
		require.Equal(t, []move{{Unmapped, want}}, d.movesOf(i))
	}
	_, mapped := g.br.BAR(slot, 3)
	require.False(t, mapped, "upper half of a 64-bit BAR is not a BAR of its own")

	// Accesses reach the handlers with BAR-relative offsets.
	require.True(t, g.mmioClaimed(wantBAR0+0x10))
	require.Equal(t, uint64(0x10), d.bar0.lastRead())
	require.True(t, g.pioClaimed(wantBAR1+3))
	require.Equal(t, uint64(3), d.bar1.lastRead())
	require.True(t, g.mmioClaimed(wantBAR2+0x3FFC))
	require.Equal(t, uint64(0x3FFC), d.bar2.lastRead())

	gsi, ok := d.IRQ()
	require.True(t, ok)
	require.Equal(t, uint8(5), gsi)

	// Second device: naturally aligned, after the first, next IRQ.
	d2, slot2 := addTestDev(t, g)
	require.Equal(t, 2, slot2)
	for i, want := range map[int]uint64{0: wantBAR0 + bar0Size, 1: wantBAR1 + bar1Size, 2: wantBAR2 + bar2Size} {
		base, mapped := g.br.BAR(slot2, i)
		require.True(t, mapped)
		require.Equal(t, want, base, "BAR%d", i)
	}
	gsi, _ = d2.IRQ()
	require.Equal(t, uint8(10), gsi)
}

func TestAllocationAlignmentAndWindows(t *testing.T) {
	g := newGuest(t)
	h := &recorder{}
	small := NewConfigSpace(Header{VendorID: 1})
	require.NoError(t, small.SetBAR(0, BAR{Kind: BARMem32, Size: 16, Handler: h}))
	require.NoError(t, small.SetBAR(1, BAR{Kind: BARIO, Size: 4, Handler: h}))
	_, err := g.br.Add(small)
	require.NoError(t, err)

	big := NewConfigSpace(Header{VendorID: 2})
	require.NoError(t, big.SetBAR(0, BAR{Kind: BARMem32, Size: 1 << 20, Handler: h}))
	require.NoError(t, big.SetBAR(1, BAR{Kind: BARIO, Size: 256, Handler: h}))
	require.NoError(t, big.SetBAR(2, BAR{Kind: BARMem64, Size: 8 << 30, Handler: h}))
	slot, err := g.br.Add(big)
	require.NoError(t, err)

	b0, _ := g.br.BAR(slot, 0)
	b1, _ := g.br.BAR(slot, 1)
	b2, _ := g.br.BAR(slot, 2)
	require.Equal(t, uint64(layout.PCIMMIO32Start+1<<20), b0, "aligned to 1 MiB")
	require.Equal(t, uint64(PIOWindowStart+256), b1)
	require.Equal(t, uint64(8<<30), b2, "aligned to 8 GiB inside the 64-bit window")
	require.GreaterOrEqual(t, b2, layout.PCIMMIO64Start(testRAMEnd))
}

func TestAddErrors(t *testing.T) {
	g := newGuest(t)
	_, err := g.br.Add(nil)
	require.Error(t, err)

	// Exhausted window: a 2 GiB mem32 BAR cannot fit below 0xFC000000
	// once anything sits at 0xC0000000.
	addTestDev(t, g)
	h := &recorder{}
	huge := NewConfigSpace(Header{VendorID: 1})
	require.NoError(t, huge.SetBAR(0, BAR{Kind: BARIO, Size: 16, Handler: h}))
	require.NoError(t, huge.SetBAR(1, BAR{Kind: BARMem32, Size: 1 << 31, Handler: h}))
	_, err = g.br.Add(huge)
	require.ErrorIs(t, err, ErrNoSpace)
	// Nothing leaked: the I/O BAR allocated before the failure was not
	// kept, and the next device gets the next slot and addresses.
	d, slot := addTestDev(t, g)
	require.Equal(t, 2, slot)
	base, _ := g.br.BAR(slot, 1)
	require.Equal(t, uint64(wantBAR1+bar1Size), base)
	_ = d

	// Registering twice fails.
	_, err = g.br.Add(d)
	require.ErrorIs(t, err, ErrRegistered)
	require.ErrorIs(t, d.SetBAR(4, BAR{Kind: BARMem32, Size: 16, Handler: h}), ErrRegistered)
	_, err = d.AddCapability(CapIDVendor, nil)
	require.ErrorIs(t, err, ErrRegistered)

	// Overlap with something already on the bus: rolled back.
	g2 := newGuest(t)
	require.NoError(t, g2.mmio.Insert(layout.PCIMMIO32Start, 0x1000, "squatter", h))
	d2 := newTestDev(t)
	_, err = g2.br.Add(d2)
	require.ErrorIs(t, err, bus.ErrOverlap)
	require.False(t, g2.pioClaimed(wantBAR1), "io BAR not left behind")
	require.Equal(t, uint32(0xFFFFFFFF), g2.read32(1, 0))
	require.Empty(t, d2.movesOf(1))

	// Bus full: slots 1..31.
	g3 := newGuest(t)
	for i := 1; i < NumSlots; i++ {
		slot, err := g3.br.Add(NewConfigSpace(Header{VendorID: uint16(i)}))
		require.NoError(t, err)
		require.Equal(t, i, slot)
	}
	_, err = g3.br.Add(NewConfigSpace(Header{}))
	require.ErrorIs(t, err, ErrNoSlot)
	// IRQs round-robin over the pool.
	for slot := 1; slot < NumSlots; slot++ {
		require.Equal(t, DefaultIRQs[(slot-1)%len(DefaultIRQs)], g3.read8(slot, RegInterruptLine))
	}
}

func TestCustomIRQPoolAndSelfInsert(t *testing.T) {
	pio, mmio := bus.New("pio"), bus.New("mmio")
	br, err := NewBridge(Config{PIO: pio, MMIO: mmio, IRQs: []uint8{16, 17}})
	require.NoError(t, err)
	for _, want := range []uint8{16, 17, 16} {
		cs := NewConfigSpace(Header{})
		_, err := br.Add(cs)
		require.NoError(t, err)
		gsi, ok := cs.IRQ()
		require.True(t, ok)
		require.Equal(t, want, gsi)
	}
	// The config ports are taken: a second bridge on the same bus fails.
	_, err = NewBridge(Config{PIO: pio, MMIO: mmio})
	require.ErrorIs(t, err, bus.ErrOverlap)
	_, err = NewBridge(Config{})
	require.Error(t, err)
}

func TestBARSizing(t *testing.T) {
	cases := []struct {
		name      string
		reg       int
		orig      uint32
		sized     uint32
		unmapAddr uint64
		claimed   func(g *guest, addr uint64) bool
	}{
		{"mem32", RegBAR0, wantBAR0, ^uint32(bar0Size - 1), wantBAR0, (*guest).mmioClaimed},
		{"io", RegBAR0 + 4, wantBAR1 | 1, ^uint32(bar1Size-1)&^0x2 | 1, wantBAR1, (*guest).pioClaimed},
		{"mem64 low", RegBAR0 + 8, bar2Lo | 0b1100, ^uint32(bar2Size-1) | 0b1100, wantBAR2, (*guest).mmioClaimed},
		{"mem64 high", RegBAR0 + 12, bar2Hi, 0xFFFFFFFF, wantBAR2, (*guest).mmioClaimed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, decodeOn := range []bool{false, true} {
				g := newGuest(t)
				_, slot := addTestDev(t, g)
				cmd := g.read16(slot, RegCommand)
				if !decodeOn {
					// What Linux does: decode off while sizing.
					g.write16(slot, RegCommand, cmd&^(CommandMemory|CommandIO))
				}
				require.Equal(t, tc.orig, g.read32(slot, tc.reg))
				g.write32(slot, tc.reg, 0xFFFFFFFF)
				require.Equal(t, tc.sized, g.read32(slot, tc.reg))
				require.False(t, tc.claimed(g, tc.unmapAddr), "unmapped while sizing (decode %v)", decodeOn)
				g.write32(slot, tc.reg, tc.orig)
				require.Equal(t, tc.orig, g.read32(slot, tc.reg))
				g.write16(slot, RegCommand, cmd)
				require.True(t, tc.claimed(g, tc.unmapAddr), "mapped again after restore")
				require.NotContains(t, g.logs.String(), "WARN")
			}
		})
	}
}

func TestBARSizingUnimplemented(t *testing.T) {
	g := newGuest(t)
	_, slot := addTestDev(t, g)
	for _, reg := range []int{RegBAR0 + 16, RegBAR0 + 20, RegROMAddress} {
		g.write32(slot, reg, 0xFFFFFFFF)
		require.Zero(t, g.read32(slot, reg), "reg %#x", reg)
	}
	// Host bridge has no BARs.
	for i := range NumBARs {
		g.write32(0, RegBAR0+4*i, 0xFFFFFFFF)
		require.Zero(t, g.read32(0, RegBAR0+4*i))
	}
}

func TestBARSizingLarge64(t *testing.T) {
	g := newGuest(t)
	cs := NewConfigSpace(Header{})
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMem64, Size: 16 << 30, Handler: &recorder{}}))
	slot, err := g.br.Add(cs)
	require.NoError(t, err)
	orig := [2]uint32{g.read32(slot, RegBAR0), g.read32(slot, RegBAR0+4)}
	g.write32(slot, RegBAR0, 0xFFFFFFFF)
	g.write32(slot, RegBAR0+4, 0xFFFFFFFF)
	require.Equal(t, uint32(0b100), g.read32(slot, RegBAR0), "no writable low address bits")
	require.Equal(t, ^uint32((16<<30-1)>>32), g.read32(slot, RegBAR0+4))
	_, mapped := g.br.BAR(slot, 0)
	require.False(t, mapped)
	g.write32(slot, RegBAR0, orig[0])
	g.write32(slot, RegBAR0+4, orig[1])
	base, mapped := g.br.BAR(slot, 0)
	require.True(t, mapped)
	require.Equal(t, uint64(orig[1])<<32|uint64(orig[0]&^0xF), base)
}

func TestGuestMovesBARs(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)

	// mem32: move to 0xD0000000.
	const new0 = 0xD000_0000
	g.write32(slot, RegBAR0, new0)
	require.Equal(t, uint32(new0), g.read32(slot, RegBAR0))
	require.False(t, g.mmioClaimed(wantBAR0))
	require.True(t, g.mmioClaimed(new0+0x20))
	require.Equal(t, uint64(0x20), d.bar0.lastRead())
	require.Equal(t, []move{{Unmapped, wantBAR0}, {wantBAR0, new0}}, d.movesOf(0))

	// Low address bits below the size are hardwired: a misaligned write
	// is rounded down.
	g.write32(slot, RegBAR0, new0+0x123)
	require.Equal(t, uint32(new0), g.read32(slot, RegBAR0))
	require.Len(t, d.movesOf(0), 2, "no move for an unchanged address")

	// io: move to 0xE000.
	g.write32(slot, RegBAR0+4, 0xE000)
	require.Equal(t, uint32(0xE001), g.read32(slot, RegBAR0+4))
	require.False(t, g.pioClaimed(wantBAR1))
	require.True(t, g.pioClaimed(0xE000+bar1Size-1))
	require.Equal(t, []move{{Unmapped, wantBAR1}, {wantBAR1, 0xE000}}, d.movesOf(1))

	// mem64: move across the 4 GiB line into 32-bit space, in two
	// writes; the intermediate address is mapped too (decode stays on).
	g.write32(slot, RegBAR0+8, 0xE000_0000)
	g.write32(slot, RegBAR0+12, 0)
	require.False(t, g.mmioClaimed(wantBAR2))
	require.True(t, g.mmioClaimed(0xE000_0000))
	mv := d.movesOf(2)
	require.Equal(t, move{wantBAR2&^0xFFFF_FFFF | 0xE000_0000, 0xE000_0000}, mv[len(mv)-1])
	// And back above 4 GiB.
	g.write32(slot, RegBAR0+12, 0x20)
	require.True(t, g.mmioClaimed(0x20_E000_0000+8))
	require.False(t, g.mmioClaimed(0xE000_0000))
	base, _ := g.br.BAR(slot, 2)
	require.Equal(t, uint64(0x20_E000_0000), base)

	// Address 0 means unmapped.
	g.write32(slot, RegBAR0, 0)
	_, mapped := g.br.BAR(slot, 0)
	require.False(t, mapped)
	require.False(t, g.mmioClaimed(new0))
	require.Equal(t, move{new0, Unmapped}, d.movesOf(0)[len(d.movesOf(0))-1])
}

func TestCommandDecode(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)
	cmd := g.read16(slot, RegCommand)

	// Memory decode off: memory BARs gone, I/O BAR stays.
	g.write16(slot, RegCommand, cmd&^CommandMemory)
	require.False(t, g.mmioClaimed(wantBAR0))
	require.False(t, g.mmioClaimed(wantBAR2))
	require.True(t, g.pioClaimed(wantBAR1))
	require.Equal(t, move{wantBAR0, Unmapped}, d.movesOf(0)[1])
	require.Equal(t, move{wantBAR2, Unmapped}, d.movesOf(2)[1])
	require.Len(t, d.movesOf(1), 1)

	// BAR reprogrammed while decode is off: mapped at the new address
	// only when decode comes back.
	g.write32(slot, RegBAR0, 0xD000_0000)
	require.False(t, g.mmioClaimed(0xD000_0000))
	g.write16(slot, RegCommand, cmd)
	require.True(t, g.mmioClaimed(0xD000_0000))
	require.True(t, g.mmioClaimed(wantBAR2))
	require.Equal(t, move{Unmapped, 0xD000_0000}, d.movesOf(0)[2])

	// I/O decode off via a byte write to the low COMMAND byte.
	g.write8(slot, RegCommand, uint8(cmd&^CommandIO))
	require.False(t, g.pioClaimed(wantBAR1))
	require.True(t, g.mmioClaimed(0xD000_0000))
	g.write8(slot, RegCommand, uint8(cmd))
	require.True(t, g.pioClaimed(wantBAR1))

	// A 32-bit write of COMMAND+STATUS works too (status is read-only).
	g.write32(slot, RegCommand, 0xFFFF0000)
	require.False(t, g.pioClaimed(wantBAR1))
	require.False(t, g.mmioClaimed(0xD000_0000))
	require.Equal(t, uint32(StatusCapList)<<16, g.read32(slot, RegCommand))
}

func TestBAROverlapLeavesUnmapped(t *testing.T) {
	g := newGuest(t)
	d1, s1 := addTestDev(t, g)
	d2, s2 := addTestDev(t, g)
	b2, _ := g.br.BAR(s2, 0)

	// Guest puts device 2's BAR0 on top of device 1's.
	g.write32(s2, RegBAR0, wantBAR0)
	_, mapped := g.br.BAR(s2, 0)
	require.False(t, mapped)
	require.Contains(t, g.logs.String(), "leaving it unmapped")
	require.False(t, g.mmioClaimed(b2))
	require.True(t, g.mmioClaimed(wantBAR0))
	require.Equal(t, move{b2, Unmapped}, d2.movesOf(0)[1])
	// Device 1 still answers at its address.
	require.True(t, g.mmioClaimed(wantBAR0+4))
	require.Equal(t, uint64(4), d1.bar0.lastRead())

	// The failure is logged once, not on every config write.
	logs := g.logs.String()
	g.write8(s2, RegCacheLineSize, 0x10)
	g.write16(s2, RegCommand, g.read16(s2, RegCommand))
	require.Equal(t, logs, g.logs.String())

	// Device 1 moves away: device 2's pending BAR gets mapped.
	g.write32(s1, RegBAR0, 0xD000_0000)
	base, mapped := g.br.BAR(s2, 0)
	require.True(t, mapped)
	require.Equal(t, uint64(wantBAR0), base)
	require.True(t, g.mmioClaimed(wantBAR0+8))
	require.Equal(t, uint64(8), d2.bar0.lastRead())

	// I/O BAR beyond the 64 KiB port space: logged, unmapped.
	g.write32(s1, RegBAR0+4, 0x0001_0000)
	_, mapped = g.br.BAR(s1, 1)
	require.False(t, mapped)
	require.Contains(t, g.logs.String(), "out of range")
	g.write32(s1, RegBAR0+4, 0xFFE0)
	base, mapped = g.br.BAR(s1, 1)
	require.True(t, mapped)
	require.Equal(t, uint64(0xFFE0), base)

	// Overlap with the config ports themselves.
	g.write32(s1, RegBAR0+4, layout.PortPCIConfig&^(bar1Size-1))
	_, mapped = g.br.BAR(s1, 1)
	require.False(t, mapped)
	require.Equal(t, uint16(testVendor), g.read16(s1, RegVendorID), "config ports still work")
}

func TestCapabilityListWalk(t *testing.T) {
	g := newGuest(t)
	_, slot := addTestDev(t, g)
	require.NotZero(t, g.read16(slot, RegStatus)&StatusCapList)

	type cap struct {
		off int
		id  uint8
	}
	var got []cap
	seen := map[int]bool{}
	for p := int(g.read8(slot, RegCapPointer)); p != 0; p = int(g.read8(slot, p+1)) {
		require.False(t, seen[p], "loop at %#x", p)
		seen[p] = true
		require.Zero(t, p%4)
		require.GreaterOrEqual(t, p, CapStart)
		got = append(got, cap{p, g.read8(slot, p)})
	}
	require.Equal(t, []cap{{0x50, CapIDMSI}, {0x70, CapIDMSIX}, {0x40, CapIDVendor}}, got)

	// Host bridge: no capabilities.
	require.Zero(t, g.read16(0, RegStatus)&StatusCapList)
	require.Zero(t, g.read8(0, RegCapPointer))
}

func TestCapabilityWriteHook(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)
	ctl := d.msixOff + 2

	// Guest enables MSI-X with a 16-bit write of Message Control, trying
	// to change the read-only table size too.
	g.write16(slot, ctl, 0x8000|0x0001)
	require.Equal(t, uint16(0x8000|msixTable), g.read16(slot, ctl))
	require.Equal(t, []capWrite{{2, []byte{0xFF, 0x87}}}, d.capWrites())

	// The device can read its own state directly.
	var buf [2]byte
	d.Read(ctl, buf[:])
	require.Equal(t, uint16(0x87FF), binary.LittleEndian.Uint16(buf[:]))

	// A 32-bit write at the capability start covers ID, next and control;
	// only enable/mask bits change.
	g.write32(slot, d.msixOff, 0x4000_0000)
	require.Equal(t, uint32(0x4000|msixTable)<<16|0x40<<8|CapIDMSIX, g.read32(slot, d.msixOff))
	require.Equal(t, capWrite{0, []byte{CapIDMSIX, 0x40, 0xFF, 0x47}}, d.capWrites()[1])

	// A byte write to the table offset (read-only) still notifies.
	g.write8(slot, d.msixOff+4, 0xAA)
	require.Zero(t, g.read8(slot, d.msixOff+4))
	require.Equal(t, capWrite{4, []byte{0}}, d.capWrites()[2])

	// Writes elsewhere do not call the MSI-X hook; MSI enable is writable.
	g.write16(slot, d.msiOff+2, 0xFFFF)
	require.Equal(t, uint16(1), g.read16(slot, d.msiOff+2))
	g.write32(slot, RegCommand, 0)
	require.Len(t, d.capWrites(), 3)
}

func TestHostileAccessesNeverPanic(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)

	// Direct calls with any offset and size, including ones the bus
	// would never deliver.
	for off := uint64(0); off < 12; off++ {
		for size := 0; size <= 9; size++ {
			buf := make([]byte, size)
			for i := range buf {
				buf[i] = 0xA5
			}
			g.br.Write(off, buf)
			g.br.Read(off, buf)
			if size == 3 || size > 4 || size == 0 || off >= 8 {
				for _, b := range buf {
					require.Equal(t, byte(0xFF), b, "off %d size %d", off, size)
				}
			}
		}
	}
	g.br.Read(^uint64(0), make([]byte, 4))
	g.br.Write(^uint64(0)-1, make([]byte, 4))
	// Straddling address and data registers (0xCFA, 4 bytes) through the bus.
	require.True(t, g.pio.Write(layout.PortPCIConfig+2, []byte{1, 2, 3, 4}))
	b := make([]byte, 4)
	require.True(t, g.pio.Read(layout.PortPCIConfig+2, b))
	require.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, b)

	// Register 0xFF, and a 2-byte access at 0xFF via 0xCFF (the bus
	// rejects it, but the bridge alone must cope too).
	g.write8(slot, 0xFF, 0x5A)
	require.Equal(t, uint8(0), g.read8(slot, 0xFF))
	g.selectReg(slot, 0xFC)
	g.br.Write(7, []byte{1, 2})
	g.br.Read(7, make([]byte, 2))

	// ConfigSpace direct accessors with hostile offsets.
	d.Read(-5, make([]byte, 10))
	d.Read(250, make([]byte, 100))
	d.Store(-3, make([]byte, 2))
	d.Store(1<<62, []byte{1})
	d.guestWrite(int(^uint(0)>>1), []byte{1, 2, 3})

	// Random config cycles: random latch values (enable bit on or off,
	// any bus/device/function/register) and random data, all sizes.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		l := rng.Uint32() // enable bit set half the time
		if rng.IntN(4) != 0 {
			l &^= 0x00FF_0700 // mostly bus 0, function 0
		}
		if rng.IntN(4) != 0 {
			l = l&^(0x1F<<11) | uint32(rng.IntN(3))<<11 // mostly an existing slot
		}
		g.outl(layout.PortPCIConfig, l)
		size := []int{1, 2, 4}[rng.IntN(3)]
		off := uint64(4 + rng.IntN(4))
		data := make([]byte, size)
		binary.LittleEndian.PutUint32(append(data, 0, 0, 0, 0)[:4], rng.Uint32())
		if rng.IntN(2) == 0 {
			g.pio.Write(layout.PortPCIConfig+off, data)
		} else {
			g.pio.Read(layout.PortPCIConfig+off, data)
		}
	}
	// Identity survived.
	require.Equal(t, uint16(testVendor), g.read16(slot, RegVendorID))
	require.Equal(t, uint16(HostBridgeVendorID), g.read16(0, RegVendorID))
	// Mappings are consistent with what the registers say.
	for i := range 3 {
		base, mapped := g.br.BAR(slot, i)
		if mapped {
			addr, state := d.barAddress(i)
			require.Equal(t, barValid, state)
			require.Equal(t, addr, base)
		}
	}
}

func TestConcurrentConfigAccess(t *testing.T) {
	g := newGuest(t)
	d, slot := addTestDev(t, g)
	var wg sync.WaitGroup
	// vCPU threads doing config cycles (results may interleave through
	// the shared latch, as on hardware; this checks for races/deadlocks).
	for i := range 4 {
		wg.Go(func() {
			var b [4]byte
			for j := range 500 {
				binary.LittleEndian.PutUint32(b[:], cfgAddr(0, slot, 0, RegBAR0+4*(j%3)))
				g.pio.Write(layout.PortPCIConfig, b[:])
				if i%2 == 0 {
					binary.LittleEndian.PutUint32(b[:], 0xD000_0000+uint32(j%4)*0x1000)
					g.pio.Write(layout.PortPCIConfig+4, b[:])
				} else {
					g.pio.Read(layout.PortPCIConfig+4, b[:])
				}
			}
		})
	}
	// MMIO traffic and device-side reads in parallel.
	wg.Go(func() {
		var b [4]byte
		for range 2000 {
			g.mmio.Read(0xD000_0000, b[:])
			d.Read(d.msixOff+2, b[:2])
			d.Command()
			g.br.BAR(slot, 0)
		}
	})
	wg.Wait()
	require.Equal(t, uint16(testVendor), g.read16(slot, RegVendorID))
}

func TestWindowAlloc(t *testing.T) {
	w := window{name: "t", next: 0x10, end: 0x100}
	b, err := w.alloc(0x40)
	require.NoError(t, err)
	require.Equal(t, uint64(0x40), b)
	_, err = w.alloc(0x100)
	require.True(t, errors.Is(err, ErrNoSpace))
	w = window{name: "t", next: ^uint64(0) - 10, end: ^uint64(0)}
	_, err = w.alloc(1 << 20)
	require.ErrorIs(t, err, ErrNoSpace, "wrap-around is not a fit")
}

func FuzzConfigCycles(f *testing.F) {
	f.Add(cfgAddr(0, 1, 0, RegBAR0), uint8(4), uint8(4), uint32(0xFFFFFFFF))
	f.Add(cfgAddr(0, 1, 0, RegCommand), uint8(4), uint8(2), uint32(0))
	f.Add(cfgAddr(0, 1, 0, 0xFC), uint8(7), uint8(1), uint32(0xFF))
	f.Add(uint32(0x7FFFFFFF), uint8(5), uint8(3), uint32(1))
	f.Fuzz(func(t *testing.T, latch uint32, off, size uint8, v uint32) {
		pio, mmio := bus.New("pio"), bus.New("mmio")
		br, err := NewBridge(Config{PIO: pio, MMIO: mmio})
		require.NoError(t, err)
		_, err = br.Add(newTestDev(t))
		require.NoError(t, err)
		var l [4]byte
		binary.LittleEndian.PutUint32(l[:], latch)
		br.Write(0, l[:])
		data := make([]byte, size%10)
		for i := range data {
			data[i] = byte(v >> (8 * (i % 4)))
		}
		br.Write(uint64(off), data)
		br.Read(uint64(off), data)
	})
}
