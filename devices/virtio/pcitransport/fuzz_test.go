package pcitransport

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/internal/fuzzinput"
	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/layout"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// FuzzCommonConfig plays a hostile driver against the transport's BAR: a
// sequence of accesses (offset, size, value, read or write) to the common
// configuration, ISR, device configuration, notifications and MSI-X, plus a
// few macros (reset, a correct negotiation, a correct queue setup, MSI-X
// enable) that let the fuzzer reach the deep states quickly.
//
// Invariants, checked after every access:
//   - FEATURES_OK reads back set only for an offered feature set with
//     VIRTIO_F_VERSION_1;
//   - an enabled queue always has a valid configuration (Validate), and
//     enabling a bad one sets DEVICE_NEEDS_RESET;
//   - the device is active exactly while DRIVER_OK is set (unless the
//     device needs reset), and is only handed valid, enabled queues;
//   - writing 0 to device_status restores every register to its reset
//     value, and at the end a standard bring-up still works.
func FuzzCommonConfig(f *testing.F) {
	for _, seed := range fuzzCommonSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newFuzzEnv(t)
		in := fuzzinput.New(data)
		for ops := 0; !in.Empty() && ops < 512; ops++ {
			e.op(in)
			e.check()
		}
		e.bringUp()
	})
}

// Seeds: a Linux-like bring-up and hostile variants of it, written with
// the encoder below (the same bytes are in testdata/fuzz/FuzzCommonConfig).
func fuzzCommonSeeds() [][]byte {
	var s seedWriter
	// Standard bring-up by macros, then traffic and a reset.
	s.macro(macroNegotiate, 0)
	s.macro(macroMSIX, 1)
	s.macro(macroQueue, 0)
	s.macro(macroQueue, 1)
	s.access(regCommon, RegQueueSelect, 2, true, modeByte, 0)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegQueueSelect, 2, true, modeByte, 1)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusDriverOK)
	s.access(regNotify, 0, 2, true, modeByte, 0)
	s.access(regISR, 0, 1, false, modeByte, 0)
	s.access(regCommon, RegDeviceStatus, 1, true, modeByte, 0)
	seeds := [][]byte{s.bytes()}

	// Register by register, as Linux does it, with 32-bit halves.
	s = seedWriter{}
	s.access(regCommon, RegDeviceStatus, 1, true, modeByte, 0)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusAcknowledge)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusDriver)
	s.access(regCommon, RegDriverFeatureSelect, 4, true, modeByte, 1)
	s.access(regCommon, RegDriverFeature, 4, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusFeaturesOK)
	s.access(regCommon, RegQueueSelect, 2, true, modeByte, 2)
	s.access(regCommon, RegQueueSize, 2, true, modeByte, 3) // not a power of two
	s.access(regCommon, RegQueueDesc, 4, true, modeRAM, 0x100)
	s.access(regCommon, RegQueueDriver, 4, true, modeRAM, 0x200)
	s.access(regCommon, RegQueueDevice, 4, true, modeRAM, 0x300)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusDriverOK)
	seeds = append(seeds, s.bytes())

	// Rings past RAM, queue_select out of range, doorbells and MSI-X
	// table writes before DRIVER_OK, FEATURES_OK with features not offered.
	s = seedWriter{}
	s.macro(macroNegotiate, 0x00)
	s.access(regCommon, RegQueueSelect, 2, true, modeByte, 0)
	s.access(regCommon, RegQueueDesc+4, 4, true, modeByte, 0x10)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegQueueSelect, 2, true, modeRaw, 0xFFFF)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regNotify, 4, 4, true, modeByte, 1)
	s.access(regMSIXTable, 0, 8, true, modeRaw, 0xFEE0_0000)
	s.access(regMSIXTable, 12, 4, true, modeByte, 0)
	s.access(regCommon, RegDriverFeatureSelect, 4, true, modeByte, 0)
	s.access(regCommon, RegDriverFeature, 4, true, modeRaw, 0xFFFF_FFFF)
	s.access(regCommon, RegDeviceStatus, 1, true, modeRaw, 0xFF)
	s.access(regDeviceCfg, 0xFE, 8, true, modeRaw, 0x0123_4567_89AB_CDEF)
	s.macro(macroConfigChanged, 0)
	s.access(regRaw, 0xFF, 8, false, modeByte, 0)
	seeds = append(seeds, s.bytes())

	// Legacy driver (no VERSION_1): FEATURES_OK and DRIVER_OK are refused;
	// then features beyond bit 63 after a reset.
	s = seedWriter{}
	s.macro(macroNegotiate, 0x40|32) // VERSION_1 cleared
	s.macro(macroQueue, 0x10)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusDriverOK|StatusFeaturesOK)
	s.macro(macroReset, 0)
	s.access(regCommon, RegDeviceStatus, 1, true, modeByte, StatusAcknowledge|StatusDriver)
	s.access(regCommon, RegDriverFeatureSelect, 4, true, modeByte, 1)
	s.access(regCommon, RegDriverFeature, 4, true, modeOffered, 0)
	s.access(regCommon, RegDriverFeatureSelect, 4, true, modeByte, 2)
	s.access(regCommon, RegDriverFeature, 4, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusFeaturesOK)
	seeds = append(seeds, s.bytes())

	// Feature sets one bit off: not offered (CTRL_VQ), a bit above 63.
	s = seedWriter{}
	s.macro(macroNegotiate, 0x40|17)
	s.macro(macroNegotiate, 0x80)
	s.macro(macroQueue, 1)
	s.access(regCommon, RegQueueEnable, 2, true, modeByte, 1)
	s.access(regCommon, RegDeviceStatus, 1, true, modeAddStatus, StatusDriverOK)
	seeds = append(seeds, s.bytes())
	return seeds
}

// Input decoding. Each operation is [region][offset][flags][value...]:
// region selects the BAR structure (or a macro), flags holds the access
// size (bits 0-1: 1, 2, 4, 8 bytes), read/write (bit 2) and how the value
// is encoded (bits 3-5).

// Regions.
const (
	regCommon = iota
	regISR
	regDeviceCfg
	regNotify
	regMSIXTable
	regMSIXPBA
	regRaw // offset is 16 bits over the whole BAR
	regMacro
	numRegions
)

// Value encodings.
const (
	modeRaw       = iota // 8 bytes
	modeByte             // 1 byte
	modeWord             // 2 bytes
	modeRAM              // 2 bytes << 4: a 16-aligned address in or past the fuzz RAM
	modeDword            // 4 bytes
	modeAddStatus        // current device_status | 1 byte
	modeOffered          // offered feature word for the current select; byte b flips bit b&31 if b&0x20
	modeZero
)

// Macros.
const (
	macroReset = iota
	macroNegotiate
	macroQueue
	macroMSIX
	macroBringUp
	macroConfigChanged
	macroNeedsReset
	macroTrigger
	numMacros
)

type seedWriter struct{ b []byte }

func (s *seedWriter) bytes() []byte { return append([]byte(nil), s.b...) }

func (s *seedWriter) access(region int, off uint64, size int, write bool, mode int, v uint64) {
	flags := byte(map[int]int{1: 0, 2: 1, 4: 2, 8: 3}[size]) | byte(mode)<<3
	if write {
		flags |= 4
	}
	s.b = append(s.b, byte(region))
	if region == regRaw {
		s.b = append(s.b, byte(off), byte(off>>8))
	} else {
		s.b = append(s.b, byte(off))
	}
	s.b = append(s.b, flags)
	n := map[int]int{modeRaw: 8, modeByte: 1, modeWord: 2, modeRAM: 2, modeDword: 4, modeAddStatus: 1, modeOffered: 1}[mode]
	if mode == modeRAM {
		v >>= 4
	}
	for i := range n {
		s.b = append(s.b, byte(v>>(8*i)))
	}
}

func (s *seedWriter) macro(m int, arg byte) { s.b = append(s.b, regMacro, byte(m), arg) }

// Fuzz machine: 64 KiB of RAM at 0 and 8 KiB right after it in a second
// region (a ring spanning both is invalid), the transport behind a PCI
// bridge, and a device without goroutines. The BAR is not moved, so its
// base and the MSI-X capability are looked up once; register accesses go
// through the MMIO bus without testify, which keeps an execution cheap.
const (
	fuzzRAM0 = 0x10000
	fuzzRAM1 = 0x2000
)

var discard = slog.New(slog.DiscardHandler)

type fuzzEnv struct {
	t        *testing.T
	pio      *bus.Bus
	mmio     *bus.Bus
	tr       *Transport
	dev      *fuzzDev
	mem      *guestmem.Memory
	slot     int
	base     uint64 // BAR0
	msix     int    // MSI-X capability offset
	tab, pba uint64 // MSI-X table and PBA offsets in the BAR
}

func newFuzzEnv(t *testing.T) *fuzzEnv {
	e := &fuzzEnv{t: t, pio: bus.New("pio"), mmio: bus.New("mmio")}
	br, err := pci.NewBridge(pci.Config{PIO: e.pio, MMIO: e.mmio, RAMEnd: ramEnd, Logger: discard})
	require.NoError(t, err)
	e.mem, err = guestmem.FromRegions(
		guestmem.Region{GPA: 0, Host: make([]byte, fuzzRAM0)},
		guestmem.Region{GPA: fuzzRAM0, Host: make([]byte, fuzzRAM1)},
	)
	require.NoError(t, err)
	e.dev = &fuzzDev{t: t, mem: e.mem, offered: FeatureVersion1 | FeatureEventIdx | FeatureIndirectDesc | FeatureRingPacked | featMAC | featMRG}
	vecs := &vectors{}
	e.tr, err = New(Config{Device: e.dev, Mem: e.mem, AllocVector: vecs.alloc, Doorbells: &doorbells{reg: map[uint64]int{}}, Logger: discard})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.tr.Close()) })
	e.slot, err = br.Add(e.tr)
	require.NoError(t, err)
	var ok bool
	e.base, ok = br.BAR(e.slot, BARIndex)
	require.True(t, ok)
	e.msix = findCap(e.tr.cs, pci.CapIDMSIX)
	require.NotZero(t, e.msix)
	e.tab = uint64(cfgDword(e.tr.cs, e.msix+4) &^ 7)
	e.pba = uint64(cfgDword(e.tr.cs, e.msix+8) &^ 7)
	return e
}

func cfgDword(cs *pci.ConfigSpace, off int) uint32 {
	var b [4]byte
	cs.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// findCap walks the capability list in config space.
func findCap(cs *pci.ConfigSpace, id byte) int {
	var b [2]byte
	cs.Read(pci.RegCapPointer, b[:1])
	for off, n := int(b[0]), 0; off != 0 && n < 48; n++ {
		cs.Read(off, b[:])
		if b[0] == id {
			return off
		}
		off = int(b[1])
	}
	return 0
}

// cfgWrite is a guest config write through ports 0xCF8/0xCFC.
func (e *fuzzEnv) cfgWrite(reg, size int, v uint32) {
	var a, b [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|uint32(e.slot)<<11|uint32(reg)&0xFC)
	e.pio.Write(layout.PortPCIConfig, a[:])
	binary.LittleEndian.PutUint32(b[:], v)
	e.pio.Write(layout.PortPCIConfig+4+uint64(reg&3), b[:size])
}

func (e *fuzzEnv) rd(off uint64, n int) uint64 {
	var b [8]byte
	e.mmio.Read(e.base+off, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

func (e *fuzzEnv) wr(off uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	e.mmio.Write(e.base+off, b[:n])
}

func (e *fuzzEnv) status() uint8        { return uint8(e.rd(RegDeviceStatus, 1)) }
func (e *fuzzEnv) addStatus(bits uint8) { e.wr(RegDeviceStatus, 1, uint64(e.status()|bits)) }

func (e *fuzzEnv) setDriverFeatures(f uint64) {
	e.wr(RegDriverFeatureSelect, 4, 0)
	e.wr(RegDriverFeature, 4, f&0xFFFF_FFFF)
	e.wr(RegDriverFeatureSelect, 4, 1)
	e.wr(RegDriverFeature, 4, f>>32)
}

// fuzzDev is a device model that checks what the transport hands it.
type fuzzDev struct {
	t       *testing.T
	mem     *guestmem.Memory
	offered uint64
	cfg     [8]byte
	active  bool
	queues  int
}

func (d *fuzzDev) Type() uint16            { return netType }
func (d *fuzzDev) Features() uint64        { return d.offered }
func (d *fuzzDev) QueueMaxSizes() []uint16 { return []uint16{256, 16, 1} }

func (d *fuzzDev) checkConfigAccess(off uint64, data []byte) {
	if off >= DeviceCfgLength || uint64(len(data)) > DeviceCfgLength-off {
		d.t.Errorf("device config access [%#x, +%d) outside the window", off, len(data))
	}
}

func (d *fuzzDev) ReadConfig(off uint64, data []byte) {
	d.checkConfigAccess(off, data)
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.cfg)) {
			data[i] = d.cfg[o]
		}
	}
}

func (d *fuzzDev) WriteConfig(off uint64, data []byte) {
	d.checkConfigAccess(off, data)
	for i, b := range data {
		if o := off + uint64(i); o < uint64(len(d.cfg)) {
			d.cfg[o] = b
		}
	}
}

// Activate checks the activation and, like virtio-net, refuses one
// without queues (which exercises the DEVICE_NEEDS_RESET path).
func (d *fuzzDev) Activate(a Activation) error {
	t := d.t
	if d.active {
		t.Errorf("Activate while active")
	}
	if a.Features&^d.offered != 0 || a.Features&FeatureVersion1 == 0 || a.Features&unsupportedFeatures != 0 {
		t.Errorf("activated with features %#x, offered %#x", a.Features, d.offered)
	}
	last := -1
	for _, q := range a.Queues {
		if q.Index <= last || q.Index >= len(d.QueueMaxSizes()) {
			t.Errorf("queue index %d after %d", q.Index, last)
		}
		last = q.Index
		if !q.Queue.Ready() {
			t.Errorf("queue %d handed over not ready", q.Index)
		}
		if err := q.Queue.Validate(d.mem); err != nil {
			t.Errorf("queue %d handed over invalid: %v", q.Index, err)
		}
	}
	if len(a.Queues) == 0 {
		return errors.New("no queues")
	}
	d.active, d.queues = true, len(a.Queues)
	return nil
}

func (d *fuzzDev) Reset() { d.active, d.queues = false, 0 }

// op decodes and performs one operation.
func (e *fuzzEnv) op(in *fuzzinput.Reader) {
	region := int(in.Byte()) % numRegions
	if region == regMacro {
		e.macro(int(in.Byte())%numMacros, in.Byte())
		return
	}
	off := uint64(in.Byte())
	if region == regRaw {
		off |= uint64(in.Byte()) << 8
	}
	flags := in.Byte()
	size := 1 << (flags & 3)
	write := flags&4 != 0
	var v uint64
	switch mode := flags >> 3 & 7; mode {
	case modeRaw:
		v = in.Uint(8)
	case modeByte:
		v = in.Uint(1)
	case modeWord:
		v = in.Uint(2)
	case modeRAM:
		v = in.Uint(2) << 4
	case modeDword:
		v = in.Uint(4)
	case modeAddStatus:
		v = uint64(e.status()) | in.Uint(1)
	case modeOffered:
		b := in.Byte()
		e.tr.mu.Lock()
		v = featureWord(e.tr.offered, e.tr.st.driverFeatSel) ^ uint64(b>>5&1)<<(b&31)
		e.tr.mu.Unlock()
	}
	var addr uint64
	switch region {
	case regCommon:
		addr = CommonCfgOffset + off%0x40
	case regISR:
		addr = ISROffset + off%8
	case regDeviceCfg:
		addr = DeviceCfgOffset + (off<<4 | off&0xF) // anywhere in the 4 KiB window
	case regNotify:
		addr = NotifyOffset + off%16
	case regMSIXTable:
		addr = e.tab + off
	case regMSIXPBA:
		addr = e.pba + off
	case regRaw:
		addr = off % e.tr.barSize
	}
	e.access(addr, size, write, v)
}

// access performs one BAR access and checks what a write promised.
func (e *fuzzEnv) access(addr uint64, size int, write bool, v uint64) {
	if !write {
		e.rd(addr, size) // may be unclaimed past the BAR end
		return
	}
	// Queue state before the write, for the queue_enable promise.
	e.tr.mu.Lock()
	sel := e.selectedIndex()
	wasReady := sel >= 0 && e.tr.queues[sel].q.Ready()
	live := e.tr.st.status&StatusDriverOK != 0
	e.tr.mu.Unlock()

	e.wr(addr, size, v)

	if addr == RegDeviceStatus && size == 1 && v&0xFF == 0 {
		e.checkReset()
	}
	if addr == RegQueueEnable && size == 2 && uint16(v) == 1 && sel >= 0 && !wasReady && !live {
		e.tr.mu.Lock()
		ready := e.tr.queues[sel].q.Ready()
		e.tr.mu.Unlock()
		if !ready && !e.tr.needsReset.Load() {
			e.t.Fatalf("queue %d: enable refused without DEVICE_NEEDS_RESET", sel)
		}
	}
}

// selectedIndex returns queue_select if it names a queue, else -1. t.mu
// is held.
func (e *fuzzEnv) selectedIndex() int {
	if int(e.tr.st.queueSel) < len(e.tr.queues) {
		return int(e.tr.st.queueSel)
	}
	return -1
}

func (e *fuzzEnv) macro(m int, arg byte) {
	switch m {
	case macroReset:
		e.access(RegDeviceStatus, 1, true, 0)
	case macroNegotiate:
		// A negotiation accepting exactly the offered features, except
		// that arg&0x40 flips feature bit arg&63 and arg&0x80 accepts a
		// bit above 63: either one must make FEATURES_OK fail.
		f := e.tr.offered
		if arg&0x40 != 0 {
			f ^= 1 << (arg & 63)
		}
		e.access(RegDeviceStatus, 1, true, 0)
		e.addStatus(StatusAcknowledge)
		e.addStatus(StatusDriver)
		e.setDriverFeatures(f)
		if arg&0x80 != 0 {
			e.wr(RegDriverFeatureSelect, 4, 2)
			e.wr(RegDriverFeature, 4, 1)
		}
		e.addStatus(StatusFeaturesOK)
	case macroQueue:
		// A valid setup of queue arg%3 (not enabled), size from arg.
		i := int(arg) % 3
		size := uint64(e.dev.QueueMaxSizes()[i]) >> (arg >> 4 & 7)
		base := uint64(i) * 0x5000
		e.wr(RegQueueSelect, 2, uint64(i))
		e.wr(RegQueueSize, 2, max(size, 1))
		e.wr(RegQueueDesc, 8, base)
		e.wr(RegQueueDriver, 8, base+0x1000)
		e.wr(RegQueueDevice, 8, base+0x2000)
		e.wr(RegQueueMSIXVector, 2, uint64(i+1))
	case macroMSIX:
		// Enable (odd arg) or disable MSI-X; entries up to arg>>1 get a
		// message and are unmasked.
		var ctl [2]byte
		e.tr.cs.Read(e.msix+2, ctl[:])
		c := uint32(binary.LittleEndian.Uint16(ctl[:])) &^ msix.CtlEnable
		if arg&1 != 0 {
			c |= msix.CtlEnable
		}
		e.cfgWrite(e.msix+2, 2, c)
		for i := range uint64(arg>>1) % 5 {
			ent := e.tab + i*msix.EntrySize
			e.wr(ent+msix.EntryAddrLo, 4, 0xFEE0_0000)
			e.wr(ent+msix.EntryData, 4, 0x40+i)
			e.wr(ent+msix.EntryControl, 4, 0)
		}
	case macroBringUp:
		e.bringUp()
	case macroConfigChanged:
		_ = e.tr.ConfigChanged()
	case macroNeedsReset:
		_ = e.tr.SetNeedsReset()
	case macroTrigger:
		q := &e.tr.queues[int(arg)%len(e.tr.queues)]
		_ = q.irq.Trigger()
	}
}

// check verifies the state invariants after an operation.
func (e *fuzzEnv) check() {
	t, tr := e.t, e.tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.st
	if s.status&StatusFeaturesOK != 0 {
		if s.driverFeatures&^tr.offered != 0 || s.driverFeatures&FeatureVersion1 == 0 || s.driverFeatsHigh {
			t.Fatalf("FEATURES_OK stuck with features %#x (high %v), offered %#x", s.driverFeatures, s.driverFeatsHigh, tr.offered)
		}
	}
	if s.status&StatusDriverOK != 0 && s.status&StatusFeaturesOK == 0 {
		t.Fatalf("DRIVER_OK without FEATURES_OK: %#x", s.status)
	}
	if s.status&(StatusNeedsReset|0x30) != 0 {
		t.Fatalf("device-owned or reserved status bits stored: %#x", s.status)
	}
	for i := range tr.queues {
		q := tr.queues[i].q
		if q.Ready() {
			if err := q.Validate(tr.mem); err != nil {
				t.Fatalf("queue %d enabled with an invalid configuration: %v", i, err)
			}
		}
		if v := tr.queues[i].vector.Load(); v != NoVector && int(v) >= tr.msix.Vectors() {
			t.Fatalf("queue %d vector %d outside the table", i, v)
		}
	}
	live := s.status&StatusDriverOK != 0
	if e.dev.active && !live {
		t.Fatalf("device active without DRIVER_OK (status %#x)", s.status)
	}
	if live && !e.dev.active && !tr.needsReset.Load() {
		t.Fatalf("DRIVER_OK without an active device or DEVICE_NEEDS_RESET")
	}
}

// checkReset verifies that a status write of 0 left the transport as new.
func (e *fuzzEnv) checkReset() {
	t, tr := e.t, e.tr
	if st := e.status(); st != 0 || e.dev.active {
		t.Fatalf("after reset: status %#x, device active %v", st, e.dev.active)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.st != (regState{}) || tr.needsReset.Load() || tr.configVector.Load() != NoVector || tr.isr.Load() != 0 {
		t.Fatalf("after reset: registers %+v, needs reset %v, config vector %#x, ISR %#x",
			tr.st, tr.needsReset.Load(), tr.configVector.Load(), tr.isr.Load())
	}
	for i := range tr.queues {
		q := tr.queues[i].q
		if q.Ready() || q.Size() != q.MaxSize() || q.DescTable()|q.AvailRing()|q.UsedRing() != 0 || tr.queues[i].vector.Load() != NoVector {
			t.Fatalf("after reset: queue %d not in its reset state", i)
		}
	}
}

// bringUp resets the device and brings it up the way Linux does; it must
// always work, whatever happened before.
func (e *fuzzEnv) bringUp() {
	t := e.t
	features := uint64(FeatureVersion1 | FeatureEventIdx | featMAC)
	e.access(RegDeviceStatus, 1, true, 0)
	e.addStatus(StatusAcknowledge)
	e.addStatus(StatusDriver)
	e.wr(RegDeviceFeatureSelect, 4, 1)
	if hi := e.rd(RegDeviceFeature, 4); hi != e.tr.offered>>32 {
		t.Fatalf("device_feature[1] = %#x, offered %#x", hi, e.tr.offered)
	}
	e.setDriverFeatures(features)
	e.addStatus(StatusFeaturesOK)
	if st := e.status(); st != StatusAcknowledge|StatusDriver|StatusFeaturesOK {
		t.Fatalf("bring-up: status %#x after FEATURES_OK", st)
	}
	for i, size := range []uint64{128, 16} {
		base := 0x8000 + uint64(i)*0x3000
		e.wr(RegQueueSelect, 2, uint64(i))
		e.wr(RegQueueSize, 2, size)
		e.wr(RegQueueDesc, 4, base)
		e.wr(RegQueueDesc+4, 4, 0)
		e.wr(RegQueueDriver, 8, base+0x1000)
		e.wr(RegQueueDevice, 8, base+0x2000)
		e.wr(RegQueueEnable, 2, 1)
		if e.rd(RegQueueEnable, 2) != 1 {
			t.Fatalf("bring-up: queue %d not enabled", i)
		}
	}
	e.addStatus(StatusDriverOK)
	if st := e.status(); st != StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK || !e.dev.active || e.dev.queues != 2 {
		t.Fatalf("bring-up: status %#x, active %v with %d queues", st, e.dev.active, e.dev.queues)
	}
	// A kick reaches the queue's eventfd.
	fd := e.tr.queues[1].doorbell
	drain(t, fd)
	e.wr(NotifyOffset+1*NotifyMultiplier, 2, 1)
	if drain(t, fd) == 0 {
		t.Fatalf("bring-up: doorbell not signalled")
	}
}
