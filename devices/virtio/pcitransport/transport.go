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
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/kvm"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// PCI identity of a modern virtio function (§4.1.2).
const (
	VendorID     = 0x1AF4
	DeviceIDBase = 0x1040 // + virtio device type (§5)
	Revision     = 1      // non-transitional devices have revision >= 1
	// MaxDeviceType is the largest device type that fits the modern
	// device ID range 0x1040-0x107F.
	MaxDeviceType = 0x3F
)

// Device status bits (§2.1).
const (
	StatusAcknowledge = 0x01
	StatusDriver      = 0x02
	StatusDriverOK    = 0x04
	StatusFeaturesOK  = 0x08
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// Reserved feature bits (§6) the transport cares about.
const (
	FeatureIndirectDesc     = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx         = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked       = 1 << 34 // VIRTIO_F_RING_PACKED
	FeatureSRIOV            = 1 << 37 // VIRTIO_F_SR_IOV
	FeatureNotificationData = 1 << 38 // VIRTIO_F_NOTIFICATION_DATA
	FeatureNotifConfigData  = 1 << 39 // VIRTIO_F_NOTIF_CONFIG_DATA
	FeatureRingReset        = 1 << 40 // VIRTIO_F_RING_RESET

	// unsupportedFeatures need transport or queue support this package
	// does not have; they are never offered.
	unsupportedFeatures = FeatureRingPacked | FeatureSRIOV | FeatureNotificationData | FeatureNotifConfigData | FeatureRingReset
)

// ISR status bits (§4.1.4.5).
const (
	ISRQueue  = 0x1
	ISRConfig = 0x2
)

// NoVector is VIRTIO_MSI_NO_VECTOR (§4.1.5.1.2).
const NoVector = 0xFFFF

// Vendor-specific capability cfg_type values (§4.1.4).
const (
	CapCommonCfg = 1
	CapNotifyCfg = 2
	CapISRCfg    = 3
	CapDeviceCfg = 4
	CapPCICfg    = 5
)

// BAR layout. All structures live in BAR 0.
const (
	BARIndex         = 0
	CommonCfgOffset  = 0x0000
	CommonCfgLength  = 0x38 // through queue_device; no notify_data / queue_reset
	ISROffset        = 0x1000
	ISRLength        = 4
	DeviceCfgOffset  = 0x2000
	DeviceCfgLength  = 0x1000
	NotifyOffset     = 0x3000
	NotifyMultiplier = 4 // notify_off_multiplier; queue_notify_off = queue index
	pageSize         = 0x1000
)

// MaxQueues bounds the number of virtqueues a device may declare.
const MaxQueues = 1024

// Interrupt raises a queue or configuration-change interrupt. Trigger is
// safe from any goroutine and never blocks on the transport lock.
type Interrupt interface {
	Trigger() error
}

// Device is a virtio device model driven by the transport.
//
// The transport calls these methods from vCPU threads with its lock held
// (see the package comment); ReadConfig and WriteConfig are called without
// it, concurrently with device goroutines.
type Device interface {
	// Type is the virtio device ID (§5: 1 = network, 2 = block, ...).
	Type() uint16
	// Features returns the offered feature bits. VIRTIO_F_VERSION_1 is
	// mandatory for a modern device.
	Features() uint64
	// QueueMaxSizes returns each queue's maximum size (powers of two).
	QueueMaxSizes() []uint16
	// ReadConfig and WriteConfig access the device-specific configuration
	// (§4.1.4.6) at offset; data may have any length and offset any value
	// below DeviceCfgLength: out-of-range bytes read as zero.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver set DRIVER_OK (§3.1.1).
	// It is called at most once between resets. An error marks the
	// device DEVICE_NEEDS_RESET.
	Activate(a Activation) error
	// Reset stops the device (§2.1 status 0 written, or Close). It must
	// not return before every goroutine using the activated queues has
	// stopped; the transport then resets the queues. It may be called
	// without a preceding Activate.
	Reset()
}

// ClassProvider may be implemented by a Device to choose its PCI class
// code (base<<16 | sub<<8 | prog-if). Without it the class is derived
// from the device type (network 0x020000, block 0x018000, console
// 0x078000, anything else 0xFF0000).
type ClassProvider interface {
	PCIClass() uint32
}

// Activation is what a device gets on DRIVER_OK.
type Activation struct {
	// Features is the negotiated feature set (the driver's acceptance).
	Features uint64
	// Mem is guest memory.
	Mem *guestmem.Memory
	// Queues holds the queues the driver enabled, in index order. Queues
	// left disabled are absent (§4.1.4.3.2 lets a driver skip queues).
	Queues []ActiveQueue
	// ConfigInterrupt raises the configuration-change interrupt; devices
	// normally use Transport.ConfigChanged instead, which also bumps
	// config_generation.
	ConfigInterrupt Interrupt
}

// ActiveQueue is one enabled queue handed to the device.
type ActiveQueue struct {
	Index int
	// Queue is programmed, validated and ready; SetEventIdx and
	// SetIndirect have been applied from the negotiated features. The
	// device owns it until Reset returns.
	Queue *queue.Queue
	// Interrupt raises the queue's interrupt (its MSI-X vector, nothing
	// for VIRTIO_MSI_NO_VECTOR, or INTx with MSI-X disabled).
	Interrupt Interrupt
	// Doorbell is a non-blocking eventfd signalled on each driver
	// notification for this queue. The transport owns it: read it to
	// consume notifications, do not close it (dup it for os.NewFile).
	Doorbell int
}

// DoorbellRegistrar binds doorbell addresses to eventfds (KVM_IOEVENTFD).
// Register must make any guest write to addr (any length, any value)
// signal fd.
type DoorbellRegistrar interface {
	Register(addr uint64, fd int) error
	Unregister(addr uint64, fd int) error
}

// IOEventFDSetter is the part of *kvm.VM that KVMDoorbells needs.
type IOEventFDSetter interface {
	SetIOEventFD(e kvm.IOEventFD, deassign bool) error
}

// KVMDoorbells registers doorbells as any-length MMIO ioeventfds, which
// KVM serves from its fast MMIO path without decoding the instruction.
type KVMDoorbells struct{ VM IOEventFDSetter }

// Register implements DoorbellRegistrar.
func (k KVMDoorbells) Register(addr uint64, fd int) error {
	return k.VM.SetIOEventFD(kvm.IOEventFD{Addr: addr, FD: fd}, false)
}

// Unregister implements DoorbellRegistrar.
func (k KVMDoorbells) Unregister(addr uint64, fd int) error {
	return k.VM.SetIOEventFD(kvm.IOEventFD{Addr: addr, FD: fd}, true)
}

// Line is a legacy level-triggered interrupt line; *irq.Line implements it.
type Line interface {
	SetLevel(high bool) error
}

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

func (t *Transport) buildConfigSpace() error {
	if err := t.cs.SetBAR(BARIndex, pci.BAR{Kind: pci.BARMem64, Size: t.barSize, Handler: barHandler{t}, OnMove: t.barMoved}); err != nil {
		return fmt.Errorf("pcitransport: %w", err)
	}
	if _, err := t.msix.AddCapability(t.cs); err != nil {
		return fmt.Errorf("pcitransport: %w", err)
	}
	caps := []struct {
		typ         byte
		off, length uint32
	}{
		{CapCommonCfg, CommonCfgOffset, CommonCfgLength},
		{CapISRCfg, ISROffset, ISRLength},
		{CapDeviceCfg, DeviceCfgOffset, DeviceCfgLength},
		{CapNotifyCfg, NotifyOffset, uint32(len(t.queues)) * NotifyMultiplier},
	}
	for _, c := range caps {
		if _, err := t.cs.AddCapability(pci.CapIDVendor, virtioCap(c.typ, c.off, c.length)); err != nil {
			return fmt.Errorf("pcitransport: virtio capability type %d: %w", c.typ, err)
		}
	}
	return nil
}

// virtioCap returns the body (after cap_vndr and cap_next) of a struct
// virtio_pci_cap (§4.1.4), or of struct virtio_pci_notify_cap for
// CapNotifyCfg (§4.1.4.4).
func virtioCap(typ byte, off, length uint32) []byte {
	n := 16
	if typ == CapNotifyCfg {
		n = 20
	}
	b := make([]byte, n-2)
	b[0] = byte(n) // cap_len
	b[1] = typ     // cfg_type
	b[2] = BARIndex
	// b[3] id = 0, b[4:6] padding
	binary.LittleEndian.PutUint32(b[6:], off)
	binary.LittleEndian.PutUint32(b[10:], length)
	if typ == CapNotifyCfg {
		binary.LittleEndian.PutUint32(b[14:], NotifyMultiplier)
	}
	return b
}

func defaultClass(typ uint16) uint32 {
	switch typ {
	case 1:
		return 0x020000 // network controller, ethernet
	case 2:
		return 0x018000 // mass storage, other
	case 3:
		return 0x078000 // communication controller, other
	}
	return 0xFF0000 // device does not fit any defined class
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func nextPow2(v uint64) uint64 {
	p := uint64(1)
	for p < v {
		p <<= 1
	}
	return p
}

// Config returns the PCI config space (pci.Device).
func (t *Transport) Config() *pci.ConfigSpace { return t.cs }

// MSIX returns the MSI-X table (for tests and introspection).
func (t *Transport) MSIX() *msix.Table { return t.msix }

// SetLegacyIRQ gives the transport an INTx line, used while the guest
// keeps MSI-X disabled (§4.1.5.3). Call it after pci.Bridge.Add with
// the GSI from Config().IRQ().
func (t *Transport) SetLegacyIRQ(l Line) {
	if l == nil {
		t.intx.Store(nil)
		return
	}
	t.intx.Store(&l)
}

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

// Interrupts.

// queueInterrupt raises one queue's interrupt (§4.1.5.2 / §4.1.4.5).
type queueInterrupt struct {
	t *Transport
	q *vq
}

func (i *queueInterrupt) Trigger() error {
	return i.t.raise(ISRQueue, &i.q.vector)
}

type configInterrupt struct{ t *Transport }

func (i configInterrupt) Trigger() error {
	return i.t.raise(ISRConfig, &i.t.configVector)
}

// raise sets an ISR bit and delivers through MSI-X when enabled
// (nothing for NoVector), or INTx otherwise.
func (t *Transport) raise(isr uint32, vector *atomic.Uint32) error {
	if t.msix.Enabled() {
		t.isr.Or(isr)
		v := vector.Load()
		if v == NoVector {
			return nil
		}
		if err := t.msix.Trigger(int(v)); err != nil {
			return fmt.Errorf("pcitransport: %w", err)
		}
		return nil
	}
	l := t.intx.Load()
	if l == nil {
		t.isr.Or(isr)
		return nil
	}
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	t.isr.Or(isr)
	if err := (*l).SetLevel(true); err != nil {
		return fmt.Errorf("pcitransport: raising INTx: %w", err)
	}
	return nil
}

// readISR implements the read-to-clear ISR status (§4.1.4.5.1), lowering
// INTx.
func (t *Transport) readISR() uint8 {
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	v := t.isr.Swap(0)
	if l := t.intx.Load(); l != nil {
		if err := (*l).SetLevel(false); err != nil {
			t.log.Error("pcitransport: lowering INTx", "err", err)
		}
	}
	return uint8(v)
}

// Doorbells.

func (t *Transport) currentBellBase() uint64 {
	t.bellMu.Lock()
	defer t.bellMu.Unlock()
	return t.bellBase
}

// barMoved is BAR0's OnMove: it moves every doorbell's ioeventfd to the
// new notification addresses. A registration failure only costs speed:
// the MMIO handler signals the same eventfd.
func (t *Transport) barMoved(oldBase, newBase uint64) {
	if t.bells == nil {
		return
	}
	t.bellMu.Lock()
	defer t.bellMu.Unlock()
	if t.bellBase != pci.Unmapped {
		for i := range t.queues {
			addr := t.bellBase + notifyAddr(i)
			if err := t.bells.Unregister(addr, t.queues[i].doorbell); err != nil {
				t.log.Error("pcitransport: unregistering doorbell", "queue", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
			}
		}
	}
	t.bellBase = pci.Unmapped
	if newBase == pci.Unmapped {
		return
	}
	for i := range t.queues {
		addr := newBase + notifyAddr(i)
		if err := t.bells.Register(addr, t.queues[i].doorbell); err != nil {
			t.log.Warn("pcitransport: registering doorbell, notifications will exit to the VMM", "queue", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
		}
	}
	t.bellBase = newBase
}

func notifyAddr(queue int) uint64 { return NotifyOffset + uint64(queue)*NotifyMultiplier }

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// notify signals queue's doorbell eventfd for a notification that reached
// the MMIO handler.
func (t *Transport) notify(queue int) {
	if _, err := unix.Write(t.queues[queue].doorbell, one); err != nil && !errors.Is(err, unix.EAGAIN) {
		t.log.Error("pcitransport: signalling doorbell", "queue", queue, "err", err)
	}
}

// barHandler is the bus.Device of BAR0.
type barHandler struct{ t *Transport }

// within reports whether [off, off+n) lies in [base, base+length).
func within(off uint64, n int, base, length uint64) bool {
	return n > 0 && off >= base && off-base < length && uint64(n) <= length-(off-base)
}

func (h barHandler) Read(off uint64, data []byte) {
	t := h.t
	clear(data)
	switch {
	case within(off, len(data), CommonCfgOffset, CommonCfgLength):
		t.readCommon(off-CommonCfgOffset, data)
	case within(off, len(data), ISROffset, ISRLength):
		if off == ISROffset {
			data[0] = t.readISR()
		}
	case within(off, len(data), DeviceCfgOffset, DeviceCfgLength):
		t.dev.ReadConfig(off-DeviceCfgOffset, data)
	case t.msix.Claims(off, len(data)):
		t.msix.Read(off, data)
	}
}

func (h barHandler) Write(off uint64, data []byte) {
	t := h.t
	switch {
	case within(off, len(data), CommonCfgOffset, CommonCfgLength):
		t.writeCommon(off-CommonCfgOffset, data)
	case within(off, len(data), NotifyOffset, uint64(len(t.queues))*NotifyMultiplier):
		// Any write within a queue's 4-byte doorbell counts, as an
		// any-length ioeventfd at its base would catch.
		t.notify(int((off - NotifyOffset) / NotifyMultiplier))
	case within(off, len(data), DeviceCfgOffset, DeviceCfgLength):
		t.dev.WriteConfig(off-DeviceCfgOffset, data)
	case t.msix.Claims(off, len(data)):
		t.msix.Write(off, data)
	default:
		t.log.Debug("pcitransport: write to unimplemented BAR offset", "offset", fmt.Sprintf("%#x", off), "len", len(data))
	}
}
