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
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

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
	// CoalesceMMIO, if set (vmm.Platform.CoalesceMMIO), has KVM queue the
	// guest's writes to the first receive queues' tail registers (RDT)
	// instead of exiting for each: under receive load they are most of the
	// driver's register writes. The guest's next exit replays them, and a
	// receive queue short of descriptors still learns of new ones then:
	// the driver writes EIMS (not coalesced) when its poll ends.
	CoalesceMMIO func(addr uint64, size uint32, on bool) error
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

	coalesce       func(addr uint64, size uint32, on bool) error
	coalescedTails int // rx queues whose RDT is coalesced (at most coalescedQueues)
}

// coalescedQueues bounds the rx tail registers coalesced (KVM allows 100
// zones per VM); a driver with more queues than that has the rest exit.
const coalescedQueues = 16

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
	d := &Device{log: logger.With("nic", "ixgbe"), fd: -1, stopFD: -1, kickFD: -1, allocFn: cfg.AllocVector,
		coalesce: cfg.CoalesceMMIO, coalescedTails: min(cfg.Queues, coalescedQueues)}
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
