// Package pcitransport implements the virtio 1.x modern PCI transport
// (virtio 1.2 §4.1 "Virtio Over PCI Bus") for govmm device models.
//
// A Transport turns a Device (virtio-net, ...) into a pci.Device: a
// non-transitional PCI function (vendor 0x1AF4, device 0x1040+type,
// revision 1, §4.1.2) with one 64-bit memory BAR and the vendor-specific
// capabilities that locate the virtio structures inside it (§4.1.4):
//
//	BAR0 offset   structure                                     capability
//	0x0000        common configuration (§4.1.4.3)               cfg_type 1
//	0x1000        ISR status (§4.1.4.5)                         cfg_type 3
//	0x2000        device-specific configuration (§4.1.4.6)      cfg_type 4
//	0x3000        notifications, 4 bytes per queue (§4.1.4.4)   cfg_type 2
//	page-aligned  MSI-X table, then the PBA on its own page     MSI-X (0x11)
//
// Legacy (transitional) devices, VIRTIO_PCI_CAP_PCI_CFG (cfg_type 5) and
// the optional queue_notify_data / queue_reset fields are not provided:
// the transport strips VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_NOTIF_CONFIG_DATA,
// VIRTIO_F_RING_RESET, VIRTIO_F_SR_IOV and VIRTIO_F_RING_PACKED from the
// features a device offers. (cfg_type 5 needs config-space read hooks,
// which pci.ConfigSpace does not have; Linux and firmware that can map
// BARs do not use it.)
//
// Notifications are delivered without a VM exit: each queue's doorbell
// address is bound to an eventfd with KVM_IOEVENTFD through a
// DoorbellRegistrar, re-bound whenever the guest moves the BAR. If a
// doorbell write does exit to the VMM anyway (no ioeventfd), the BAR
// handler signals the same eventfd, so devices only ever watch eventfds.
//
// Interrupts go through MSI-X (vmm/pci/msix) when the guest enables it,
// or through an optional legacy INTx line and the ISR register otherwise.
//
// # Concurrency
//
// Guest register accesses arrive on vCPU threads and are serialised by the
// transport's lock. Device methods (Activate, Reset, ...) are called with
// that lock held, so a Device must not call back into the transport's
// register paths; the calls meant for device goroutines (Interrupt.Trigger,
// Transport.ConfigChanged, Transport.SetNeedsReset) never take it.
package pcitransport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// MaxQueues bounds the number of virtqueues a device may declare.
const MaxQueues = 1024

// Config configures a Transport.
type Config struct {
	Device Device
	Mem    *guestmem.Memory
	// AllocVector allocates the MSI vectors behind the MSI-X table (in
	// govmm a wrapper around irq.Router.AllocMSI).
	AllocVector func() (msix.Vector, error)
	// Doorbells registers the notification eventfds; nil leaves every
	// notification to the MMIO handler.
	Doorbells DoorbellRegistrar
	// MSIXVectors is the MSI-X table size; 0 means one per queue plus
	// one for configuration changes, which is what Linux asks for first.
	MSIXVectors int
	// Logger receives guest misbehaviour (at Debug/Warn) and host errors;
	// nil means slog.Default().
	Logger *slog.Logger
}

// Errors from New.
var ErrInvalidDevice = errors.New("pcitransport: invalid device")

// vq is the transport side of one virtqueue.
type vq struct {
	q        *queue.Queue // configuration guarded by Transport.mu until activation
	vector   atomic.Uint32
	doorbell int // eventfd
	irq      queueInterrupt
}

// Transport is the PCI function of one virtio device. It implements
// pci.Device.
type Transport struct {
	cs       *pci.ConfigSpace
	dev      Device
	mem      *guestmem.Memory
	log      *slog.Logger
	msix     *msix.Table
	offered  uint64
	queues   []vq
	barSize  uint64
	cfgIRQ   configInterrupt
	bells    DoorbellRegistrar
	bellMu   sync.Mutex // guards bellBase
	bellBase uint64     // BAR base the doorbells are registered at, or pci.Unmapped

	// Lock-free state used from device goroutines.
	isr          atomic.Uint32
	generation   atomic.Uint32
	needsReset   atomic.Bool
	configVector atomic.Uint32
	intxMu       sync.Mutex // orders ISR vs INTx level changes
	intx         atomic.Pointer[Line]

	mu sync.Mutex // guest register state below
	st regState
}

// regState is the common-configuration state (§4.1.4.3).
type regState struct {
	status          uint8 // without NEEDS_RESET, which is t.needsReset
	deviceFeatSel   uint32
	driverFeatSel   uint32
	driverFeatures  uint64
	driverFeatsHigh bool // driver wrote non-zero feature bits >= 64
	queueSel        uint16
}

// New builds the PCI function for cfg.Device. Register the result with
// pci.Bridge.Add; it maps the BAR and registers the doorbells.
func New(cfg Config) (*Transport, error) {
	d := cfg.Device
	if d == nil || cfg.Mem == nil || cfg.AllocVector == nil {
		return nil, fmt.Errorf("pcitransport: Device, Mem and AllocVector are required: %w", ErrInvalidDevice)
	}
	typ := d.Type()
	if typ == 0 || typ > MaxDeviceType {
		return nil, fmt.Errorf("pcitransport: device type %d outside 1..%d: %w", typ, MaxDeviceType, ErrInvalidDevice)
	}
	features := d.Features()
	if features&FeatureVersion1 == 0 {
		return nil, fmt.Errorf("pcitransport: device type %d does not offer VIRTIO_F_VERSION_1: %w", typ, ErrInvalidDevice)
	}
	sizes := d.QueueMaxSizes()
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("pcitransport: %d queues, want 1..%d: %w", len(sizes), MaxQueues, ErrInvalidDevice)
	}
	for i, s := range sizes {
		if s == 0 || s&(s-1) != 0 || s > queue.MaxQueueSize {
			return nil, fmt.Errorf("pcitransport: queue %d max size %d is not a power of two <= %d: %w", i, s, queue.MaxQueueSize, ErrInvalidDevice)
		}
	}
	nvec := cfg.MSIXVectors
	if nvec == 0 {
		nvec = len(sizes) + 1
	}
	if nvec < 1 || nvec > msix.MaxVectors {
		return nil, fmt.Errorf("pcitransport: %d MSI-X vectors, want 1..%d: %w", nvec, msix.MaxVectors, ErrInvalidDevice)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("virtio", typ)

	tableOff := alignUp(NotifyOffset+uint64(len(sizes))*NotifyMultiplier, pageSize)
	pbaOff := alignUp(tableOff+uint64(nvec)*msix.EntrySize, pageSize)
	tab, err := msix.New(msix.Config{
		Vectors: nvec, BAR: BARIndex,
		TableOffset: uint32(tableOff), PBAOffset: uint32(pbaOff),
		Alloc: cfg.AllocVector, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("pcitransport: %w", err)
	}

	t := &Transport{
		dev:      d,
		mem:      cfg.Mem,
		log:      logger,
		msix:     tab,
		offered:  features &^ unsupportedFeatures,
		queues:   make([]vq, len(sizes)),
		barSize:  nextPow2(pbaOff + pageSize),
		bells:    cfg.Doorbells,
		bellBase: pci.Unmapped,
	}
	t.cfgIRQ = configInterrupt{t}
	t.configVector.Store(NoVector)
	for i := range t.queues {
		t.queues[i].doorbell = -1
	}
	for i, s := range sizes {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.closeEventFDs()
			return nil, fmt.Errorf("pcitransport: queue %d doorbell eventfd: %w", i, err)
		}
		q := &t.queues[i]
		q.q, q.doorbell, q.irq = queue.New(s), fd, queueInterrupt{t: t, q: q}
		q.vector.Store(NoVector)
	}

	class := defaultClass(typ)
	if cp, ok := d.(ClassProvider); ok {
		class = cp.PCIClass()
	}
	t.cs = pci.NewConfigSpace(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceIDBase + typ,
		Revision:          Revision,
		ClassCode:         class,
		SubsystemVendorID: VendorID,
		SubsystemID:       DeviceIDBase + typ, // >= 0x40 (§4.1.2.1)
	})
	if err := t.buildConfigSpace(); err != nil {
		t.closeEventFDs()
		return nil, err
	}
	return t, nil
}

// Config returns the PCI config space (pci.Device).
func (t *Transport) Config() *pci.ConfigSpace { return t.cs }

// MSIX returns the MSI-X table (for tests and introspection).
func (t *Transport) MSIX() *msix.Table { return t.msix }

// ConfigChanged tells the driver that the device-specific configuration
// changed (§4.1.4.3 config_generation, §4.1.5.3/4.1.5.4): it bumps
// config_generation and raises the configuration-change interrupt. Call
// it after the change is visible through ReadConfig. Safe from any
// goroutine.
func (t *Transport) ConfigChanged() error {
	t.generation.Add(1)
	return t.cfgIRQ.Trigger()
}

// SetNeedsReset sets DEVICE_NEEDS_RESET (§2.1.2) after an unrecoverable
// device error (e.g. a queue.ErrQueueBroken) and raises the
// configuration-change interrupt. Safe from any goroutine.
func (t *Transport) SetNeedsReset() error {
	t.needsReset.Store(true)
	return t.cfgIRQ.Trigger()
}

// Close resets the device, unregisters the doorbells, closes their
// eventfds and frees the MSI vectors. The transport must be unreachable
// from the guest (VM stopped) first.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.dev.Reset()
	t.mu.Unlock()
	t.barMoved(t.currentBellBase(), pci.Unmapped)
	t.closeEventFDs()
	if err := t.msix.Close(); err != nil {
		return fmt.Errorf("pcitransport: %w", err)
	}
	return nil
}

func (t *Transport) closeEventFDs() {
	for i := range t.queues {
		if fd := t.queues[i].doorbell; fd >= 0 {
			unix.Close(fd)
			t.queues[i].doorbell = -1
		}
	}
}
