package pcidev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
	"github.com/govmm/govmm/vmm/pci/pcitest"
)

// Register offsets (Linux ixgbe_type.h; 82599 datasheet §8.2.3).
const (
	rCTRL     = 0x00000
	rSTATUS   = 0x00008
	rEICR     = 0x00800
	rEICS     = 0x00808
	rEIAC     = 0x00810
	rEIMS     = 0x00880
	rGPIE     = 0x00898
	rIVAR0    = 0x00900
	rIVARMisc = 0x00A00
	rEIMSEx0  = 0x00AA0
	rEIAMEx0  = 0x00AD0
	rRXCTRL   = 0x03000
	rDMATXCTL = 0x04A80
	rLINKS    = 0x042A4
	rFCTRL    = 0x05080
	rRAL0     = 0x05400
	rEEC      = 0x10010
	rEERD     = 0x10014
	rRDBAL0   = 0x01000
	rTDBAL0   = 0x06000
	qBAH      = 0x04
	qLEN      = 0x08
	qH        = 0x10
	qSRRCTL   = 0x14
	qT        = 0x18
	qDCTL     = 0x28

	ctrlGIODis  = 1 << 2
	ctrlRst     = 1 << 26
	statusGIO   = 1 << 19
	dctlEnable  = 1 << 25
	gpieMSIX    = 1 << 4
	gpieOCD     = 1 << 5
	gpieEIAME   = 1 << 30
	gpiePBA     = 1 << 31
	eicrLSC     = 1 << 20
	ramSize     = 4 << 20
	ramEnd      = 6 << 30
	rxRingGPA   = 0x10000
	txRingGPA   = 0x11000
	rxBufGPA    = 0x100000 // 2 KiB per descriptor
	txBufGPA    = 0x200000
	ringEntries = 8
)

var (
	guestMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	hostMAC  = [6]byte{0x52, 0x54, 0x00, 0xAA, 0xBB, 0xCC}
)

// fakeVector counts deliveries on an enabled route, by message data.
type fakeVector struct {
	mu      sync.Mutex
	data    uint32
	enabled bool
	fired   int
}

func (v *fakeVector) Update(_ uint64, data uint32, enabled bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.data, v.enabled = data, enabled
	return nil
}

func (v *fakeVector) Trigger() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.enabled {
		v.fired++
	}
	return nil
}

type vectors struct {
	mu  sync.Mutex
	all []*fakeVector
}

func (vs *vectors) alloc() (msix.Vector, error) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v := &fakeVector{}
	vs.all = append(vs.all, v)
	return v, nil
}

// fired returns the deliveries of the vector(s) with message data.
func (vs *vectors) fired(data uint32) int {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	n := 0
	for _, v := range vs.all {
		v.mu.Lock()
		if v.data == data {
			n += v.fired
		}
		v.mu.Unlock()
	}
	return n
}

type line struct{ high atomic.Bool }

func (l *line) SetLevel(h bool) error { l.high.Store(h); return nil }

// env is a machine: PCI bridge on port/MMIO buses, guest RAM, the device
// in a slot, and the host end of its port (a SOCK_SEQPACKET socket: one
// frame per read/write, like a tap without IFF_VNET_HDR).
type env struct {
	t    *testing.T
	pio  *bus.Bus
	mmio *bus.Bus
	br   *pci.Bridge
	mem  *guestmem.Memory
	ram  []byte
	dev  *Device
	vecs *vectors
	host int
	slot int
	bar0 uint64
	bar4 uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the device's Config changed by opt first.
func newEnvWith(t *testing.T, opt func(*Config)) *env {
	t.Helper()
	e := &env{t: t, pio: bus.New("pio"), mmio: bus.New("mmio"), vecs: &vectors{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := pci.NewBridge(pci.Config{PIO: e.pio, MMIO: e.mmio, RAMEnd: ramEnd, Logger: logger})
	require.NoError(t, err)
	e.br = br
	e.ram = make([]byte, ramSize)
	e.mem, err = guestmem.FromRegions(guestmem.Region{GPA: 0, Host: e.ram})
	require.NoError(t, err)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	e.host = fds[1]
	t.Cleanup(func() { unix.Close(e.host) })
	cfg := Config{MAC: guestMAC, Port: os.NewFile(uintptr(fds[0]), "port"), Mem: e.mem, AllocVector: e.vecs.alloc, Logger: logger}
	if opt != nil {
		opt(&cfg)
	}
	e.dev, err = New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.dev.Close()) })
	e.slot, err = br.Add(e.dev)
	require.NoError(t, err)
	return e
}

// Config space through 0xCF8/0xCFC.
func (e *env) cfgRead(reg, size int) uint32 {
	v, ok := pcitest.ConfigIO{PIO: e.pio, Slot: e.slot}.Read(reg, size)
	require.True(e.t, ok, "config read %#x unclaimed", reg)
	return v
}

func (e *env) cfgWrite(reg, size int, v uint32) {
	require.True(e.t, pcitest.ConfigIO{PIO: e.pio, Slot: e.slot}.Write(reg, size, v), "config write %#x unclaimed", reg)
}

func (e *env) mmioRead(addr uint64) uint32 {
	var b [4]byte
	require.True(e.t, e.mmio.Read(addr, b[:]), "mmio read %#x unclaimed", addr)
	return binary.LittleEndian.Uint32(b[:])
}

func (e *env) mmioWrite(addr uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	require.True(e.t, e.mmio.Write(addr, b[:]), "mmio write %#x unclaimed", addr)
}

func (e *env) rd(off uint32) uint32    { return e.mmioRead(e.bar0 + uint64(off)) }
func (e *env) wr(off uint32, v uint32) { e.mmioWrite(e.bar0+uint64(off), v) }

// sizeBAR does what pci_read_bases does for a 64-bit memory BAR.
func (e *env) sizeBAR(i int) (base, size uint64) {
	reg := pci.RegBAR0 + 4*i
	lo, hi := e.cfgRead(reg, 4), e.cfgRead(reg+4, 4)
	require.Equal(e.t, uint32(0b100), lo&0xF, "BAR%d: 64-bit memory, not prefetchable", i)
	e.cfgWrite(reg, 4, 0xFFFFFFFF)
	e.cfgWrite(reg+4, 4, 0xFFFFFFFF)
	mask := uint64(e.cfgRead(reg+4, 4))<<32 | uint64(e.cfgRead(reg, 4)&^0xF)
	e.cfgWrite(reg, 4, lo)
	e.cfgWrite(reg+4, 4, hi)
	return uint64(hi)<<32 | uint64(lo&^0xF), ^mask + 1
}

// findCap walks the capability list as pci_find_capability does.
func (e *env) findCap(id byte) int {
	for off, n := int(e.cfgRead(pci.RegCapPointer, 1)), 0; off != 0; off, n = int(e.cfgRead(off+1, 1)), n+1 {
		require.Less(e.t, n, 48)
		if byte(e.cfgRead(off, 1)) == id {
			return off
		}
	}
	return 0
}

func (e *env) eepromRead(w uint32) uint16 {
	e.wr(rEERD, w<<2|1)
	v := e.rd(rEERD)
	require.NotZero(e.t, v&2, "EERD.DONE")
	return uint16(v >> 16)
}

func (e *env) put64(gpa uint64, v uint64) { binary.LittleEndian.PutUint64(e.ram[gpa:], v) }

// u64 loads a descriptor qword atomically, as the device writes it back
// (the guest's ordered load of the status qword).
func (e *env) u64(gpa uint64) uint64 {
	v, err := e.mem.LoadUint64(gpa)
	require.NoError(e.t, err)
	return v
}

// probe is the driver's enumeration and ixgbe_probe/ixgbe_open register
// sequence, reduced to one rx and one tx ring and three MSI-X vectors
// (rx0 → 0, tx0 → 1, other → 2).
func (e *env) probe() {
	t := e.t
	// Identity (pci_setup_device, ixgbe_pci_tbl).
	require.Equal(t, uint32(0x10F78086), e.cfgRead(pci.RegVendorID, 4))
	require.Equal(t, uint32(0x020000), e.cfgRead(pci.RegRevision, 4)>>8)
	require.Equal(t, uint32(0x000C8086), e.cfgRead(pci.RegSubsystemVendorID, 4))
	var size0, size4 uint64
	e.bar0, size0 = e.sizeBAR(BARRegs)
	e.bar4, size4 = e.sizeBAR(BARMSIX)
	require.EqualValues(t, 512<<10, size0)
	require.EqualValues(t, 16<<10, size4)
	require.NotZero(t, e.bar0)

	// Capabilities where ixgbe hard-codes them.
	require.Equal(t, CapPMOffset, e.findCap(pci.CapIDPowerManagement))
	require.Equal(t, CapMSIOffset, e.findCap(pci.CapIDMSI))
	require.Equal(t, CapMSIXOff, e.findCap(pci.CapIDMSIX))
	require.Equal(t, CapPCIeOff, e.findCap(pci.CapIDPCIe))
	require.Equal(t, uint32(63), e.cfgRead(0x72, 2)&0x7FF, "IXGBE_PCIE_MSIX_82599_CAPS: 64 vectors")
	require.Equal(t, uint32(0x1082), e.cfgRead(0xB2, 2), "IXGBE_PCI_LINK_STATUS: 5 GT/s x8")
	require.Zero(t, e.cfgRead(0xAA, 2)&(1<<5), "IXGBE_PCI_DEVICE_STATUS: no transaction pending")
	require.Equal(t, uint32(0x82), e.cfgRead(CapPCIeOff+pcieLinkCap, 4)&0x3FF, "Link Capabilities 5 GT/s x8")
	require.Equal(t, uint32(2), e.cfgRead(CapPCIeOff+pcieCaps, 2)&0xF, "PCIe capability v2")
	devctl := e.cfgRead(CapPCIeOff+pcieDevCtl, 2)
	e.cfgWrite(CapPCIeOff+pcieDevCtl, 2, devctl&^0xE0|1<<5) // pcie_set_mps(256)
	require.Equal(t, uint32(1), e.cfgRead(CapPCIeOff+pcieDevCtl, 2)>>5&7)

	// pci_enable_device_mem, pci_set_master.
	cmd := e.cfgRead(pci.RegCommand, 2)
	e.cfgWrite(pci.RegCommand, 2, cmd|pci.CommandMemory|pci.CommandBusMaster)

	// pci_enable_msix_range: function-masked enable, program entries,
	// unmask (msix_capability_init).
	ctl := e.cfgRead(CapMSIXOff+2, 2)
	e.cfgWrite(CapMSIXOff+2, 2, ctl|msix.CtlEnable|msix.CtlFunctionMask)
	tbl := e.cfgRead(CapMSIXOff+4, 4)
	pba := e.cfgRead(CapMSIXOff+8, 4)
	require.Equal(t, uint32(BARMSIX), tbl&7)
	require.Equal(t, uint32(0x2000|BARMSIX), pba)
	for i := 0; i < 3; i++ {
		ent := e.bar4 + uint64(tbl&^7) + uint64(i)*msix.EntrySize
		e.mmioWrite(ent+msix.EntryAddrLo, 0xFEE00000)
		e.mmioWrite(ent+msix.EntryAddrHi, 0)
		e.mmioWrite(ent+msix.EntryData, uint32(0x40+i))
		e.mmioWrite(ent+msix.EntryControl, 0)
	}
	e.cfgWrite(CapMSIXOff+2, 2, ctl|msix.CtlEnable)
	require.True(t, e.dev.MSIX().Enabled())

	// ixgbe_reset_hw_82599: GIO master disable, CTRL.RST, poll.
	e.wr(rCTRL, ctrlGIODis)
	require.Zero(t, e.rd(rSTATUS)&statusGIO)
	e.wr(rCTRL, ctrlRst|e.rd(rCTRL))
	require.Zero(t, e.rd(rCTRL)&(ctrlRst|1<<3), "reset complete")
	require.NotZero(t, e.rd(rSTATUS)&statusGIO)

	// EEPROM (EEC.PRES → EERD) checksum, ixgbe_validate_eeprom_checksum_generic.
	require.NotZero(t, e.rd(rEEC)&(1<<8))
	var sum uint16
	for i := uint32(0); i < 0x3F; i++ {
		sum += e.eepromRead(i)
	}
	for i := uint32(3); i < 0xF; i++ {
		p := e.eepromRead(i)
		if p == 0 || p == 0xFFFF {
			continue
		}
		l := e.eepromRead(uint32(p))
		if l == 0 || l == 0xFFFF {
			continue
		}
		for j := uint32(p) + 1; j <= uint32(p)+uint32(l); j++ {
			sum += e.eepromRead(j)
		}
	}
	require.Equal(t, e.eepromRead(0x3F), 0xBABA-sum, "EEPROM checksum")

	// get_mac_addr from RAL/RAH(0).
	var mac [6]byte
	binary.LittleEndian.PutUint32(mac[:], e.rd(rRAL0))
	rah := e.rd(rRAL0 + 4)
	mac[4], mac[5] = byte(rah), byte(rah>>8)
	require.Equal(t, guestMAC, mac)
	require.NotZero(t, rah&(1<<31), "RAH.AV")

	// ixgbe_configure_tx / ixgbe_configure_tx_ring.
	e.wr(rDMATXCTL, e.rd(rDMATXCTL)|1)
	e.wr(rTDBAL0+qDCTL, 0)
	e.wr(rTDBAL0, txRingGPA)
	e.wr(rTDBAL0+qBAH, 0)
	e.wr(rTDBAL0+qLEN, ringEntries*16)
	e.wr(rTDBAL0+qH, 0)
	e.wr(rTDBAL0+qT, 0)
	e.wr(rTDBAL0+qDCTL, dctlEnable|1<<16|1<<8|32)
	require.NotZero(t, e.rd(rTDBAL0+qDCTL)&dctlEnable)

	// ixgbe_configure_rx / ixgbe_configure_rx_ring / ixgbe_alloc_rx_buffers.
	e.wr(rFCTRL, 1<<10) // BAM
	e.wr(rRDBAL0, rxRingGPA)
	e.wr(rRDBAL0+qBAH, 0)
	e.wr(rRDBAL0+qLEN, ringEntries*16)
	e.wr(rRDBAL0+qH, 0)
	e.wr(rRDBAL0+qT, 0)
	e.wr(rRDBAL0+qSRRCTL, 2|4<<8|1<<25) // 2 KB, ADV_ONEBUF
	e.wr(rRDBAL0+qDCTL, dctlEnable)
	require.NotZero(t, e.rd(rRDBAL0+qDCTL)&dctlEnable)
	e.postRx(0, ringEntries-2) // ixgbe posts count-1: RDT = 7
	e.wr(rRXCTRL, 1)

	// ixgbe_up_complete: GPIE, IVAR, EIAC, EIAM, EIMS.
	e.wr(rGPIE, gpieMSIX|gpieOCD|gpieEIAME|gpiePBA)
	e.wr(rIVAR0, 0x80|0|(0x80|1)<<8) // rx0 → 0, tx0 → 1
	e.wr(rIVARMisc, (0x80|2)<<8)     // other → 2
	e.wr(rEIAC, 0x4000FFFF&^(1<<31|eicrLSC))
	e.wr(rEIAMEx0, 0xFFFFFFFF)
	_ = e.rd(rEICR)
	e.wr(rEIMS, eicrLSC|1<<31)
	e.wr(rEIMSEx0, 0x3)
	require.NotZero(t, e.rd(rLINKS)&(1<<30), "NIC Link is Up")
	require.Equal(t, uint32(0x30000000), e.rd(rLINKS)&0x30000000, "10 Gbps")
}

// postRx arms descriptors first..last and moves RDT past them.
func (e *env) postRx(first, last int) {
	for i := first; i <= last; i++ {
		d := uint64(rxRingGPA + 16*i)
		e.put64(d, uint64(rxBufGPA+0x800*i))
		e.put64(d+8, 0)
	}
	e.wr(rRDBAL0+qT, uint32((last+1)%ringEntries))
}

func frame(dst, src [6]byte, n int) []byte {
	f := make([]byte, n)
	copy(f, dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x88B5) // local experimental ethertype
	for i := 14; i < n; i++ {
		f[i] = byte(i * 7)
	}
	return f
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// rxDone reports descriptor i's write-back length (0 = not done).
func (e *env) rxDone(i int) int {
	hi := e.u64(uint64(rxRingGPA + 16*i + 8))
	if hi&1 == 0 { // DD
		return 0
	}
	return int(hi >> 32 & 0xFFFF)
}

// TestDriverSequence: enumerate, size BARs, enable MSI-X, reset, EEPROM
// checksum, one rx and one tx ring, then frames both ways through the
// port with the MSI-X vectors of rx0 and tx0 firing.
func TestDriverSequence(t *testing.T) {
	e := newEnv(t)
	e.probe()

	// Host → guest: one readv into the posted buffer, DD|EOP, vector 0.
	in := frame(guestMAC, hostMAC, 100)
	_, err := unix.Write(e.host, in)
	require.NoError(t, err)
	e.waitFor("rx write-back", func() bool { return e.rxDone(0) != 0 })
	require.Equal(t, len(in), e.rxDone(0))
	require.NotZero(t, e.u64(rxRingGPA+8)&2, "EOP")
	require.Equal(t, in, e.ram[rxBufGPA:rxBufGPA+len(in)])
	require.Equal(t, uint32(1), e.rd(rRDBAL0+qH))
	e.waitFor("rx vector", func() bool { return e.vecs.fired(0x40) == 1 })

	// Broadcast passes (FCTRL.BAM); a frame for another MAC is filtered.
	_, err = unix.Write(e.host, frame([6]byte{2, 0, 0, 0, 0, 9}, hostMAC, 60))
	require.NoError(t, err)
	bc := frame([6]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, hostMAC, 64)
	_, err = unix.Write(e.host, bc)
	require.NoError(t, err)
	e.waitFor("broadcast", func() bool { return e.rxDone(1) != 0 })
	require.Equal(t, len(bc), e.rxDone(1))
	require.EqualValues(t, 1, e.dev.Stats().RxFiltered)

	// Guest → host: advanced data descriptor, EOP|IFCS|RS, TDT write.
	out := frame(hostMAC, guestMAC, 200)
	copy(e.ram[txBufGPA:], out)
	e.put64(txRingGPA, txBufGPA)
	e.put64(txRingGPA+8, uint64(len(out))|3<<20|1<<29|(1<<24|1<<25|1<<27)|uint64(len(out))<<46)
	e.wr(rTDBAL0+qT, 1)
	buf := make([]byte, 2048)
	n, err := unix.Read(e.host, buf)
	require.NoError(t, err)
	require.Equal(t, out, buf[:n])
	require.NotZero(t, e.u64(txRingGPA+8)&(1<<32), "DD")
	require.Equal(t, uint32(1), e.rd(rTDBAL0+qH))
	e.waitFor("tx vector", func() bool { return e.vecs.fired(0x41) >= 1 })

	// Software-raised LSC on the "other" vector (EICS; ixgbe_msix_other
	// reads causes through EICS and clears them by writing EICR).
	e.wr(rEICS, eicrLSC)
	e.waitFor("other vector", func() bool { return e.vecs.fired(0x42) == 1 })
	require.NotZero(t, e.rd(rEICS)&eicrLSC)
	e.wr(rEICR, eicrLSC)
	require.Zero(t, e.rd(rEICS)&eicrLSC)

	st := e.dev.Stats()
	require.EqualValues(t, 2, st.RxFrames)
	require.EqualValues(t, 1, st.TxFrames)
	require.Zero(t, st.TxErrors)
}

// TestRxWaitsForDescriptors: with the ring full the reader leaves frames
// in the port (no drop); an RDT write wakes it.
func TestRxWaitsForDescriptors(t *testing.T) {
	e := newEnv(t)
	e.probe()
	// 7 descriptors posted: send 10 frames.
	var sent [][]byte
	for i := 0; i < 10; i++ {
		f := frame(guestMAC, hostMAC, 60+i)
		sent = append(sent, f)
		_, err := unix.Write(e.host, f)
		require.NoError(t, err)
	}
	e.waitFor("7 frames", func() bool { return e.rd(rRDBAL0+qH) == 7 })
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, uint32(7), e.rd(rRDBAL0+qH), "ring full: nothing more received")
	require.Zero(t, e.dev.Stats().RxMissed, "frames wait, they are not dropped")
	for i := 0; i < 7; i++ {
		require.Equal(t, len(sent[i]), e.rxDone(i))
	}

	// The driver cleans descriptors 0..6 and re-posts them (RDT = 7 + 7).
	for i := 0; i < 8; i++ {
		e.put64(uint64(rxRingGPA+16*i+8), 0)
	}
	e.postRx(7, 7)
	e.postRx(0, 5)
	e.waitFor("remaining frames", func() bool { return e.rd(rRDBAL0+qH) == 2 })
	for i, slot := range []int{7, 0, 1} {
		f := sent[7+i]
		require.Equal(t, len(f), e.rxDone(slot))
		require.Equal(t, f, e.ram[rxBufGPA+0x800*slot:rxBufGPA+0x800*slot+len(f)])
	}
	require.Zero(t, e.dev.Stats().RxMissed)
}

// TestRxOversizeAndDisabled: an overlong frame never reaches guest memory
// beyond the max frame; with RXCTRL.RXEN clear frames are drained and
// counted rather than left queued.
func TestRxOversizeAndDisabled(t *testing.T) {
	e := newEnv(t)
	e.probe()
	big := frame(guestMAC, hostMAC, 3000)
	_, err := unix.Write(e.host, big)
	require.NoError(t, err)
	e.waitFor("oversize drop", func() bool { return e.dev.Stats().RxPortOversize == 1 })
	require.True(t, bytes.Equal(make([]byte, 0x800), e.ram[rxBufGPA+1518:rxBufGPA+0x800+1518]), "nothing written past the max frame")
	require.Zero(t, e.rxDone(0))

	e.wr(rRXCTRL, 0)
	for i := 0; i < 3; i++ {
		_, err := unix.Write(e.host, frame(guestMAC, hostMAC, 60))
		require.NoError(t, err)
	}
	e.waitFor("disabled drops", func() bool { return e.dev.Stats().RxDisabled == 3 })
	require.Zero(t, e.rxDone(0))

	e.wr(rRXCTRL, 1)
	f := frame(guestMAC, hostMAC, 90)
	_, err = unix.Write(e.host, f)
	require.NoError(t, err)
	e.waitFor("rx after re-enable", func() bool { return e.rxDone(0) == len(f) })
}

// TestMSIAndINTx: without MSI-X the model's interrupt level becomes an MSI
// message (MSI enabled) or the INTx line.
func TestMSIAndINTx(t *testing.T) {
	e := newEnv(t)
	l := &line{}
	e.dev.SetLegacyIRQ(l)
	e.bar0, _ = e.sizeBAR(BARRegs)
	require.False(t, e.dev.MSIX().Enabled())

	// Legacy mode: IVAR rx0 → EICR bit 0; EIMS bit 0; EICS raises it.
	e.wr(rIVAR0, 0x80)
	e.wr(rEIMS, 1)
	e.wr(rEICS, 1)
	require.True(t, l.high.Load(), "INTx asserted")
	require.Equal(t, uint32(1), e.rd(rEICR), "EICR read clears")
	require.False(t, l.high.Load(), "INTx deasserted")

	// MSI: 64-bit address, data 0x55, enable.
	e.cfgWrite(CapMSIOffset+msiAddrLo, 4, 0xFEE00000)
	e.cfgWrite(CapMSIOffset+msiAddrHi, 4, 0)
	e.cfgWrite(CapMSIOffset+msiData, 2, 0x55)
	ctl := e.cfgRead(CapMSIOffset+msiCtl, 2)
	require.NotZero(t, ctl&msi64Bit)
	e.cfgWrite(CapMSIOffset+msiCtl, 2, ctl|msiEnable)
	e.wr(rEICS, 1)
	require.Equal(t, 1, e.vecs.fired(0x55))
	require.False(t, l.high.Load(), "no INTx with MSI")
	e.wr(rEICS, 1) // level already high: no new edge
	require.Equal(t, 1, e.vecs.fired(0x55))
	_ = e.rd(rEICR)
	e.wr(rEICS, 1)
	require.Equal(t, 2, e.vecs.fired(0x55))
}

func TestNewValidates(t *testing.T) {
	mem, err := guestmem.FromRegions(guestmem.Region{GPA: 0, Host: make([]byte, 4096)})
	require.NoError(t, err)
	alloc := func() (msix.Vector, error) { return &fakeVector{}, nil }
	_, err = New(Config{MAC: guestMAC, Mem: mem, AllocVector: alloc})
	require.Error(t, err, "no port")
	_, err = New(Config{MAC: guestMAC, Tap: "x", Port: os.Stdin, Mem: mem, AllocVector: alloc})
	require.Error(t, err, "both ports")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[1])
	_, err = New(Config{MAC: [6]byte{1}, Port: os.NewFile(uintptr(fds[0]), "p"), Mem: mem, AllocVector: alloc})
	require.Error(t, err, "multicast MAC")
}

// The receive tail registers KVM coalesces follow BAR0 wherever the guest
// maps it, and go when decode is off; a refused zone turns coalescing off
// and leaves none behind.
func TestCoalescedTailsFollowBAR(t *testing.T) {
	zones := map[uint64]bool{}
	refuseAt := uint64(0)
	coalesce := func(addr uint64, size uint32, on bool) error {
		require.Equal(t, uint32(4), size)
		if on && addr == refuseAt {
			return errors.New("no more zones")
		}
		require.NotEqual(t, on, zones[addr], "zone %#x registered twice or removed twice", addr)
		if on {
			zones[addr] = true
		} else {
			delete(zones, addr)
		}
		return nil
	}
	e := newEnvWith(t, func(c *Config) { c.Queues, c.CoalesceMMIO = 4, coalesce })
	br := e.br
	base, ok := br.BAR(e.slot, BARRegs)
	require.True(t, ok)
	want := func(base uint64, queues int) map[uint64]bool {
		m := map[uint64]bool{}
		for q := range queues {
			m[base+0x01018+0x40*uint64(q)] = true
		}
		return m
	}
	require.Equal(t, want(base, 4), zones, "RDT of each of the 4 queues, at BAR0")

	// The guest moves BAR0: the zones move with it.
	moved := base + 0x100000
	e.cfgWrite(pci.RegBAR0, 4, uint32(moved)|0b100)
	e.cfgWrite(pci.RegBAR0+4, 4, uint32(moved>>32))
	got, ok := br.BAR(e.slot, BARRegs)
	require.True(t, ok)
	require.Equal(t, moved, got)
	require.Equal(t, want(moved, 4), zones)

	// Memory decode off: no zone is left where nothing decodes.
	cmd := e.cfgRead(pci.RegCommand, 2)
	e.cfgWrite(pci.RegCommand, 2, cmd&^0x2)
	require.Empty(t, zones)

	// Decode back on, and KVM refuses the third zone: coalescing stops and
	// the two zones made are removed (every write exits, as without it).
	refuseAt = moved + 0x01018 + 0x80
	e.cfgWrite(pci.RegCommand, 2, cmd)
	require.Empty(t, zones)
	refuseAt = 0
	e.cfgWrite(pci.RegCommand, 2, cmd&^0x2)
	e.cfgWrite(pci.RegCommand, 2, cmd)
	require.Empty(t, zones, "once refused, never again")
}
