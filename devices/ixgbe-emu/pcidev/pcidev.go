// Package pcidev makes the 82599 model (devices/ixgbe-emu) a guest-visible
// PCI Express function that the stock Linux ixgbe driver binds to, bridged
// to a host packet port (a tap).
//
// The function mirrors the 82599's PCI programming interface (datasheet
// 331520 §9, "PCIe Programming Interface"), which is what ixgbe hard-codes:
//
//	vendor:device   8086:10F7 (82599 KX4 backplane), class 020000,
//	                subsystem 8086:000C, revision 1
//	BAR0 (0x10)     64-bit memory, 512 KiB: the CSR space (§9.3.6.1) →
//	                ixgbeemu.Device.Read/Write
//	BAR4 (0x20)     64-bit memory, 16 KiB: MSI-X table (64 entries) at 0,
//	                PBA at 0x2000 (§9.3.6.1, §9.3.8.2)
//	cap 0x40        power management (§9.3.7), D0/D3hot, No_Soft_Reset
//	cap 0x50        MSI, 64-bit, one message (§9.3.8.1)
//	cap 0x70        MSI-X, Table Size 63 (ixgbe reads it at config 0x72,
//	                IXGBE_PCIE_MSIX_82599_CAPS)
//	cap 0xA0        PCI Express v2 endpoint (§9.3.10): Link Capabilities and
//	                Link Status 5 GT/s x8 (ixgbe_get_bus_info_generic reads
//	                Link Status at 0xB2, IXGBE_PCI_LINK_STATUS, and Device
//	                Status at 0xAA while disabling bus mastering)
//
// # Interrupts
//
// The model's interrupt block (GPIE.MSIX_MODE) calls IRQ.Trigger(vector),
// which goes to the MSI-X table. Without MSI-X (GPIE.MSIX_MODE clear) the
// model drives one interrupt level: it becomes an MSI message on each rising
// edge when the guest enabled MSI, or the legacy INTx line otherwise.
//
// # Data path
//
// Transmit runs on the vCPU thread that writes TDT: the model walks the
// ring and hands each frame, as views of guest memory, to Send, which is
// one writev(2) on the port. Receive is a goroutine: it polls the port and
// reads each frame with one readv(2) straight into the buffers of the next
// free descriptors of rx queue 0 (ixgbeemu.Device.RxTarget), then writes
// the descriptors back (RxComplete). While the driver has posted no free
// descriptors it stops reading, so frames wait in the host's tap queue (the
// role of the 82599's receive packet buffer) until RDT moves; while
// receive is disabled frames are read and dropped (counted), as a NIC
// with RXCTRL.RXEN clear drops them. There is no RSS: every frame goes to
// queue 0.
package pcidev

import (
	"github.com/govmm/govmm/devices/nic/tap"

	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// Line is a legacy level-triggered interrupt line; *irq.Line implements it.
type Line interface {
	SetLevel(high bool) error
}

// Config configures a Device.
type Config struct {
	// MAC is the permanent address (EEPROM, RAL/RAH(0)). It must be a
	// unicast address.
	MAC [6]byte
	// Tap is the host tap interface to bridge to. It is attached (and
	// created if it does not exist) without IFF_VNET_HDR: one Ethernet
	// frame per read and write.
	Tap string
	// Port is used instead of Tap when non-nil: any packet file with one
	// frame per read/write (a tap opened without IFF_VNET_HDR, an
	// AF_UNIX SOCK_SEQPACKET socket, an AF_PACKET socket). The Device
	// takes ownership and closes it.
	Port *os.File
	// Mem is guest memory, the device's DMA space.
	Mem *guestmem.Memory
	// AllocVector allocates the MSI vectors behind the MSI-X table and the
	// MSI capability (in govmm: a wrapper around irq.Router.AllocMSI).
	AllocVector func() (msix.Vector, error)
	// LegacyIRQ is the INTx line, used while neither MSI-X nor MSI is
	// enabled. Optional; it can also be set after pci.Bridge.Add with
	// SetLegacyIRQ and the GSI from Config().IRQ().
	LegacyIRQ Line
	// Queues is the number of rx/tx queue pairs the driver may enable,
	// 1..128; 0 means 128 (the driver decides how many it uses).
	Queues int
	// Logger receives port errors; nil means slog.Default().
	Logger *slog.Logger
}

// PCI layout (see the package comment).
const (
	BARRegs      = 0
	BARMSIX      = 4
	CapPMOffset  = ixgbeemu.PCICapPMOffset
	CapMSIOffset = ixgbeemu.PCICapMSIOffset
	CapMSIXOff   = ixgbeemu.PCICapMSIXOffset
	CapPCIeOff   = ixgbeemu.PCICapPCIeOffset
	rxQueue      = 0
	spillSize    = 65536 + 64 // larger than any tap frame (64 KiB MTU)
	maxBatch     = 64         // frames read per wake-up before re-polling
)

// Stats are the port counters on top of the model's.
type Stats struct {
	ixgbeemu.Stats
	// RxPortOversize counts frames longer than the largest frame the MAC
	// accepts (MAXFRS); they were never written to guest memory.
	RxPortOversize uint64
	// RxDiscarded counts frames dropped without reaching the model
	// because bus mastering was off.
	RxDiscarded uint64
	// RxPortErrors / TxPortErrors count failed reads / writes on the port
	// (a failed write also counts in TxErrors).
	RxPortErrors, TxPortErrors uint64
}

// Device is the PCI function. It implements pci.Device.
type Device struct {
	cs   *pci.ConfigSpace
	nic  *ixgbeemu.Device
	msix *msix.Table
	log  *slog.Logger

	fd      int  // the port, non-blocking
	created bool // openTap created the interface
	vnet    int  // virtio_net_hdr bytes in front of each frame on the port (a tap we opened: 10), or 0
	stopFD  int  // eventfd: stop the reader
	kickFD  int  // eventfd: RDT moved while the reader waits for descriptors
	// waitRoom is set while the reader sleeps for free descriptors, so
	// only then do RDT writes cost an eventfd write.
	waitRoom atomic.Bool
	done     chan struct{}

	iov     [][]byte
	scratch []byte
	rxHdr   []byte     // the port's virtio_net_hdr of a received frame (discarded)
	txMu    sync.Mutex // vnetWire scratch: tx queues may run concurrently

	intx    atomic.Pointer[Line]
	irqMu   sync.Mutex // MSI state and the INTx level
	msi     msiState
	level   bool // model interrupt level (non-MSI-X mode)
	allocFn func() (msix.Vector, error)

	rxOversize, rxDiscarded, rxErrs, txErrs atomic.Uint64
	closeOnce                               sync.Once
}

type msiState struct {
	enabled bool
	addr    uint64
	data    uint32
	vec     msix.Vector
	failed  bool
}

// New builds the function and starts the port reader. Register the result
// with pci.Bridge.Add; Close it after the VM has stopped.
func New(cfg Config) (*Device, error) {
	if cfg.Mem == nil || cfg.AllocVector == nil {
		return nil, errors.New("ixgbe pcidev: Mem and AllocVector are required")
	}
	if (cfg.Tap == "") == (cfg.Port == nil) {
		return nil, errors.New("ixgbe pcidev: exactly one of Tap and Port is required")
	}
	if cfg.Queues == 0 {
		cfg.Queues = ixgbeemu.MaxQueues
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	d := &Device{log: logger.With("nic", "ixgbe"), fd: -1, stopFD: -1, kickFD: -1, allocFn: cfg.AllocVector}
	if cfg.LegacyIRQ != nil {
		d.SetLegacyIRQ(cfg.LegacyIRQ)
	}
	ok := false
	defer func() {
		if !ok {
			d.closeFDs()
		}
	}()

	var err error
	if cfg.Port != nil {
		d.fd, err = adoptPort(cfg.Port)
	} else {
		d.fd, d.created, err = openTap(cfg.Tap)
		d.vnet = vnetHdrLen
		d.log = d.log.With("tap", cfg.Tap)
	}
	if err != nil {
		return nil, err
	}
	if d.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("ixgbe pcidev: eventfd: %w", err)
	}
	if d.kickFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("ixgbe pcidev: eventfd: %w", err)
	}

	d.msix, err = msix.New(msix.Config{
		Vectors: ixgbeemu.MSIXVectors, BAR: BARMSIX,
		TableOffset: ixgbeemu.MSIXTableOffset, PBAOffset: ixgbeemu.MSIXPBAOffset,
		Alloc: cfg.AllocVector, Logger: d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("ixgbe pcidev: %w", err)
	}
	d.nic, err = ixgbeemu.New(ixgbeemu.Config{
		MAC:      cfg.MAC,
		Queues:   cfg.Queues,
		DMA:      cfg.Mem,
		Wire:     d.wire(),
		IRQ:      irqSink{d},
		RxNotify: d.rxNotify,
	})
	if err != nil {
		return nil, fmt.Errorf("ixgbe pcidev: %w", err)
	}
	if err := d.buildConfigSpace(); err != nil {
		d.nic.Close()
		return nil, err
	}
	d.scratch = make([]byte, spillSize)
	d.rxHdr = make([]byte, d.vnet)
	d.done = make(chan struct{})
	ok = true
	go d.reader()
	return d, nil
}

// Config returns the PCI config space (pci.Device).
func (d *Device) Config() *pci.ConfigSpace { return d.cs }

// NIC returns the 82599 model (for introspection and tests).
func (d *Device) NIC() *ixgbeemu.Device { return d.nic }

// MSIX returns the MSI-X table.
func (d *Device) MSIX() *msix.Table { return d.msix }

// SetLegacyIRQ sets (or, with nil, removes) the INTx line.
func (d *Device) SetLegacyIRQ(l Line) {
	if l == nil {
		d.intx.Store(nil)
		return
	}
	d.intx.Store(&l)
}

// Stats returns the model's cumulative counters and the port's.
func (d *Device) Stats() Stats {
	return Stats{
		Stats:          d.nic.Stats(),
		RxPortOversize: d.rxOversize.Load(),
		RxDiscarded:    d.rxDiscarded.Load(),
		RxPortErrors:   d.rxErrs.Load(),
		TxPortErrors:   d.txErrs.Load(),
	}
}

// TapFD returns the descriptor of the tap the device opened itself, or -1
// when it was given a Port.
func (d *Device) TapFD() int {
	if d.vnet == 0 {
		return -1
	}
	return d.fd
}

// Created reports whether the device created its tap interface.
func (d *Device) Created() bool { return d.created }

// Close stops the reader, closes the port (a tap govmm created
// disappears), stops the model's timers and frees the interrupt vectors.
// The guest must no longer run (VM stopped). Close is idempotent.
func (d *Device) Close() error {
	var err error
	d.closeOnce.Do(func() {
		signal(d.stopFD)
		<-d.done
		d.nic.Close()
		d.closeFDs()
		d.irqMu.Lock()
		if c, ok := d.msi.vec.(interface{ Close() error }); ok {
			err = c.Close()
		}
		d.msi.vec = nil
		d.irqMu.Unlock()
		if e := d.msix.Close(); e != nil && err == nil {
			err = fmt.Errorf("ixgbe pcidev: %w", e)
		}
	})
	return err
}

func (d *Device) closeFDs() {
	for _, fd := range []*int{&d.fd, &d.stopFD, &d.kickFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// vnetHdrLen is the virtio_net_hdr in front of every frame on our tap.
const vnetHdrLen = 10

// openTap attaches to tap interface name (creating a non-persistent one if
// it does not exist) with IFF_VNET_HDR, so that the 82599's checksum and
// TSO requests reach the host kernel whole (ixgbeemu.OffloadWire) instead
// of being done in software. Frames from the host arrive finished
// (TUNSETOFFLOAD 0): a guest 82599 driver takes no GSO frames.
func openTap(name string) (fd int, created bool, err error) {
	fd, created, err = tap.OpenFD(name, true)
	if err != nil {
		return -1, false, fmt.Errorf("ixgbe pcidev: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("ixgbe pcidev: tap %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("ixgbe pcidev: tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	return fd, created, nil
}

// adoptPort takes a private non-blocking descriptor for f and closes f
// (its Fd method would switch the shared file description to blocking
// mode behind our back otherwise).
func adoptPort(f *os.File) (int, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("ixgbe pcidev: dup port: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ixgbe pcidev: port: %w", err)
	}
	return fd, nil
}

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

func signal(fd int) { _, _ = unix.Write(fd, one) }

// --- config space ---

func (d *Device) buildConfigSpace() error {
	d.cs = pci.NewConfigSpace(pci.Header{
		VendorID:          ixgbeemu.PCIVendorID,
		DeviceID:          ixgbeemu.PCIDeviceID,
		Revision:          ixgbeemu.PCIRevisionID,
		ClassCode:         ixgbeemu.PCIClassCode,
		SubsystemVendorID: ixgbeemu.PCISubsystemVendorID,
		SubsystemID:       ixgbeemu.PCISubsystemID,
	})
	if err := d.cs.SetBAR(BARRegs, pci.BAR{Kind: pci.BARMem64, Size: ixgbeemu.PCIBAR0Size, Handler: d.nic}); err != nil {
		return fmt.Errorf("ixgbe pcidev: BAR0: %w", err)
	}
	if err := d.cs.SetBAR(BARMSIX, pci.BAR{Kind: pci.BARMem64, Size: ixgbeemu.PCIBAR4Size, Handler: d.msix}); err != nil {
		return fmt.Errorf("ixgbe pcidev: BAR4: %w", err)
	}
	pm, pmMask := pmCap()
	if _, err := d.cs.AddCapability(pci.CapIDPowerManagement, pm, pci.CapAt(CapPMOffset), pci.CapWriteMask(pmMask)); err != nil {
		return fmt.Errorf("ixgbe pcidev: PM capability: %w", err)
	}
	msi, msiMask := msiCap()
	if _, err := d.cs.AddCapability(pci.CapIDMSI, msi, pci.CapAt(CapMSIOffset), pci.CapWriteMask(msiMask), pci.CapOnWrite(d.msiWritten)); err != nil {
		return fmt.Errorf("ixgbe pcidev: MSI capability: %w", err)
	}
	if _, err := d.msix.AddCapability(d.cs, pci.CapAt(CapMSIXOff)); err != nil {
		return fmt.Errorf("ixgbe pcidev: %w", err)
	}
	pcie, pcieMask := pcieCap()
	if _, err := d.cs.AddCapability(pci.CapIDPCIe, pcie, pci.CapAt(CapPCIeOff), pci.CapWriteMask(pcieMask)); err != nil {
		return fmt.Errorf("ixgbe pcidev: PCIe capability: %w", err)
	}
	return nil
}

// Capability bodies start after the 2-byte ID/next header, so a register at
// capability offset o is at body[o-2].

// pmCap: PCI Power Management 1.2 (§9.3.7): PMC version 3, no PME; PMCSR
// PowerState (bits 1:0) writable, No_Soft_Reset (bit 3) set so Linux
// does not expect a reset on D3hot→D0.
func pmCap() (body, mask []byte) {
	body = make([]byte, 6)
	mask = make([]byte, 6)
	binary.LittleEndian.PutUint16(body[0:], 0x0003) // PMC
	binary.LittleEndian.PutUint16(body[2:], 0x0008) // PMCSR
	mask[2] = 0x03
	return body, mask
}

// MSI capability registers (capability offsets).
const (
	msiCtl     = 2
	msiAddrLo  = 4
	msiAddrHi  = 8
	msiData    = 12
	msiCapSize = 16
	msiEnable  = 1 << 0
	msi64Bit   = 1 << 7
)

// msiCap: MSI with a 64-bit address and one message (§9.3.8.1; PCI 3.0
// §6.8.1). Enable and the Multiple Message Enable field (only 1 message
// is ever used) are writable.
func msiCap() (body, mask []byte) {
	body = make([]byte, msiCapSize-2)
	mask = make([]byte, msiCapSize-2)
	binary.LittleEndian.PutUint16(body[msiCtl-2:], msi64Bit)
	mask[msiCtl-2] = msiEnable | 0x70
	binary.LittleEndian.PutUint32(mask[msiAddrLo-2:], 0xFFFF_FFFC)
	binary.LittleEndian.PutUint32(mask[msiAddrHi-2:], 0xFFFF_FFFF)
	binary.LittleEndian.PutUint16(mask[msiData-2:], 0xFFFF)
	return body, mask
}

// PCIe capability register offsets (PCIe Base 2.1 §7.8).
const (
	pcieCaps     = 0x02
	pcieDevCap   = 0x04
	pcieDevCtl   = 0x08
	pcieLinkCap  = 0x0C
	pcieLinkCtl  = 0x10
	pcieLinkSta  = 0x12
	pcieDevCap2  = 0x24
	pcieDevCtl2  = 0x28
	pcieLinkCap2 = 0x2C
	pcieLinkCtl2 = 0x30
	pcieCapSize  = 0x3C
)

// pcieCap: a PCI Express capability v2 of an endpoint, as the 82599's
// (§9.3.10): Max_Payload_Size supported 512 B, role-based error reporting;
// Device Control defaults MRRS 512 B, relaxed ordering and no-snoop
// enabled; link 5 GT/s x8 capable and negotiated (Link Status also has
// Slot Clock Configuration); Device Capabilities 2 completion timeout
// ranges A-D and disable. ASPM and FLR are not offered.
func pcieCap() (body, mask []byte) {
	body = make([]byte, pcieCapSize-2)
	mask = make([]byte, pcieCapSize-2)
	le := binary.LittleEndian
	put16 := func(off int, v uint16) { le.PutUint16(body[off-2:], v) }
	put32 := func(off int, v uint32) { le.PutUint32(body[off-2:], v) }
	m16 := func(off int, v uint16) { le.PutUint16(mask[off-2:], v) }
	const speed5GT, widthX8 = ixgbeemu.PCIeLinkSpeed5GTs, ixgbeemu.PCIeLinkWidthX8
	put16(pcieCaps, 0x0002)                       // version 2, PCI Express Endpoint
	put32(pcieDevCap, 0x0000_8002)                // MPS 512 B, role-based error reporting
	put16(pcieDevCtl, 0x2810)                     // MRRS 512 B, no snoop, relaxed ordering
	m16(pcieDevCtl, 0x7FFF)                       // all but Initiate FLR (no FLR)
	put32(pcieLinkCap, speed5GT|widthX8<<4)       // 5 GT/s x8, no ASPM, port 0
	m16(pcieLinkCtl, 0x0FC3)                      // ASPM ctl, CCC, ext sync, clock PM, ...
	put16(pcieLinkSta, 1<<12|speed5GT|widthX8<<4) // slot clock, 5 GT/s, x8
	put32(pcieDevCap2, 0x1F)                      // completion timeout ranges A-D, disable
	m16(pcieDevCtl2, 0x001F)
	put32(pcieLinkCap2, 0x6) // supported speeds 2.5 and 5 GT/s
	put16(pcieLinkCtl2, speed5GT)
	m16(pcieLinkCtl2, 0x003F)
	return body, mask
}

// --- interrupts ---

// irqSink is the model's IRQ. Its methods run with the model's interrupt
// lock held and do not call back into the model.
type irqSink struct{ d *Device }

func (s irqSink) Trigger(vector int) error { return s.d.msix.Trigger(vector) }

// SetINTx: the model's interrupt level in INTx/MSI mode (GPIE.MSIX_MODE
// clear). With MSI-X enabled the function must not use INTx or MSI (PCI
// 3.0 §6.8.2); with MSI enabled a rising edge is a message; otherwise the
// INTx line follows the level unless COMMAND.INTx_Disable is set.
func (s irqSink) SetINTx(asserted bool) {
	d := s.d
	if d.msix.Enabled() {
		return
	}
	d.irqMu.Lock()
	defer d.irqMu.Unlock()
	rising := asserted && !d.level
	d.level = asserted
	if d.msi.enabled {
		if rising && d.msi.vec != nil {
			if err := d.msi.vec.Trigger(); err != nil {
				d.log.Error("ixgbe: MSI", "err", err)
			}
		}
		return
	}
	d.setLine(asserted)
}

func (d *Device) setLine(asserted bool) {
	l := d.intx.Load()
	if l == nil {
		return
	}
	if d.cs.Command()&pci.CommandINTxDisable != 0 {
		asserted = false
	}
	if err := (*l).SetLevel(asserted); err != nil {
		d.log.Error("ixgbe: INTx", "err", err)
	}
}

// msiWritten is the MSI capability's write hook: it keeps the vector's
// route equal to the guest's message while MSI is enabled.
func (d *Device) msiWritten(int, []byte) {
	var c [msiCapSize]byte
	d.cs.Read(CapMSIOffset, c[:])
	le := binary.LittleEndian
	enabled := le.Uint16(c[msiCtl:])&msiEnable != 0
	addr := uint64(le.Uint32(c[msiAddrHi:]))<<32 | uint64(le.Uint32(c[msiAddrLo:]))
	data := uint32(le.Uint16(c[msiData:]))

	d.irqMu.Lock()
	defer d.irqMu.Unlock()
	m := &d.msi
	if enabled && m.vec == nil && !m.failed {
		v, err := d.allocFn()
		if err != nil {
			m.failed = true
			d.log.Error("ixgbe: allocating the MSI vector", "err", err)
		} else {
			m.vec = v
		}
	}
	if m.vec != nil && (enabled != m.enabled || addr != m.addr || data != m.data) {
		if err := m.vec.Update(addr, data, enabled); err != nil {
			d.log.Error("ixgbe: MSI route", "err", err)
		}
	}
	wasEnabled := m.enabled
	m.enabled, m.addr, m.data = enabled, addr, data
	if enabled && !wasEnabled {
		d.setLine(false) // the INTx line is not used with MSI
	}
}

// --- host port ---

// portWire is the model's Wire on a port without virtio_net_hdr: one
// writev per frame, straight from guest memory. A frame the host refuses
// (full queue, interface down) is lost as on a wire.
type portWire struct{ d *Device }

func (w portWire) Send(segs [][]byte) error { return w.d.writev(segs) }

// vnetWire is the Wire on our tap: a virtio_net_hdr goes first, all zero
// for a finished frame, or carrying the 82599's offload request, so the
// frame's payload still goes straight from guest memory.
type vnetWire struct {
	d   *Device
	hdr []byte
	iov [][]byte
}

// Send implements ixgbeemu.Wire. The model calls its Wire under the tx
// queue lock, one frame at a time (one queue carries traffic here; with
// more, they serialise on the shared scratch through txMu).
func (w *vnetWire) Send(segs [][]byte) error {
	return w.SendOffload(segs, ixgbeemu.TxOffload{})
}

// SendOffload implements ixgbeemu.OffloadWire.
func (w *vnetWire) SendOffload(segs [][]byte, off ixgbeemu.TxOffload) error {
	w.d.txMu.Lock()
	defer w.d.txMu.Unlock()
	off.PutVnetHeader(w.hdr)
	w.iov = append(append(w.iov[:0], w.hdr), segs...)
	return w.d.writev(w.iov)
}

func (d *Device) wire() ixgbeemu.Wire {
	if d.vnet == 0 {
		return portWire{d}
	}
	return &vnetWire{d: d, hdr: make([]byte, d.vnet)}
}

func (d *Device) writev(segs [][]byte) error {
	for {
		_, err := unix.Writev(d.fd, segs)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			d.txErrs.Add(1)
			return err
		}
		return nil
	}
}

// rxNotify is the model's RxNotify hook: wake the reader if it waits for
// descriptors of our queue.
func (d *Device) rxNotify(queue int) {
	if (queue == rxQueue || queue < 0) && d.waitRoom.CompareAndSwap(true, false) {
		signal(d.kickFD)
	}
}

// rxMode is what the reader does with the next frame.
type rxMode int

const (
	rxZeroCopy rxMode = iota // RxTarget + readv + RxComplete
	rxWait                   // no free descriptors: leave frames queued
	rxModel                  // read into scratch, model.Receive (copy or counted drop)
	rxDiscard                // bus mastering off: read and drop
)

func (d *Device) rxMode() rxMode {
	if d.cs.Command()&pci.CommandBusMaster == 0 {
		return rxDiscard
	}
	switch d.nic.RxState(rxQueue) {
	case ixgbeemu.RxReady:
		return rxZeroCopy
	case ixgbeemu.RxNoRoom:
		return rxWait
	}
	return rxModel
}

func (d *Device) reader() {
	defer close(d.done)
	fds := []unix.PollFd{
		{Fd: int32(d.fd)},
		{Fd: int32(d.stopFD), Events: unix.POLLIN},
		{Fd: int32(d.kickFD), Events: unix.POLLIN},
	}
	var drain [8]byte
	portDead := false
	for {
		// Publish "waiting" before sampling the state, so an RDT write
		// after the sample always kicks.
		d.waitRoom.Store(true)
		mode := d.rxMode()
		if mode != rxWait {
			d.waitRoom.Store(false)
		}
		fds[0].Events = 0
		if mode != rxWait && !portDead {
			fds[0].Events = unix.POLLIN
		}
		_, err := unix.Poll(fds, -1)
		d.waitRoom.Store(false)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			d.log.Error("ixgbe: poll failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[2].Revents != 0 {
			_, _ = unix.Read(d.kickFD, drain[:])
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			d.log.Error("ixgbe: port closed, receive stopped", "revents", fds[0].Revents)
			portDead = true
			continue
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		for i := 0; i < maxBatch && d.receiveOne(); i++ {
		}
	}
}

// receiveOne moves one frame from the port into the guest and reports
// whether the reader should try another before polling again.
func (d *Device) receiveOne() bool {
	mode := d.rxMode()
	if mode == rxWait {
		return false
	}
	if mode == rxZeroCopy {
		if bufs, ok := d.nic.RxTarget(rxQueue); ok {
			room := 0
			d.iov = append(d.iov[:0], d.rxHdr)
			for _, b := range bufs {
				d.iov = append(d.iov, b)
				room += len(b)
			}
			// A spill buffer behind the guest's buffers tells an overlong
			// frame from one that fills them exactly.
			d.iov = append(d.iov, d.scratch)
			n, err := unix.Readv(d.fd, d.iov)
			n -= d.vnet
			switch {
			case err != nil:
				d.nic.RxAbort(rxQueue)
				return d.readFailed(err)
			case n <= 0:
				d.nic.RxAbort(rxQueue)
			case n > room:
				d.nic.RxAbort(rxQueue)
				d.rxOversize.Add(1)
			default:
				// Drops (filtered, stale reservation) are counted by the model.
				_ = d.nic.RxComplete(rxQueue, n)
			}
			return true
		}
	}
	d.iov = append(d.iov[:0], d.rxHdr, d.scratch)
	n, err := unix.Readv(d.fd, d.iov)
	if err != nil {
		return d.readFailed(err)
	}
	n -= d.vnet
	if mode == rxDiscard {
		d.rxDiscarded.Add(1)
		return true
	}
	if n > 0 {
		_ = d.nic.Receive(rxQueue, d.scratch[:n]) // counted by the model
	}
	return true
}

func (d *Device) readFailed(err error) bool {
	switch {
	case errors.Is(err, unix.EAGAIN):
		return false
	case errors.Is(err, unix.EINTR):
		return true
	}
	if d.rxErrs.Add(1) == 1 {
		d.log.Error("ixgbe: reading the port", "err", err)
	}
	time.Sleep(time.Millisecond) // do not spin on a persistent error
	return false
}
