package pcitransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
	"github.com/govmm/govmm/vmm/pci/pcitest"
)

const (
	ramSize  = 1 << 20
	ramEnd   = 6 << 30
	netType  = 1
	featMAC  = 1 << 5  // VIRTIO_NET_F_MAC
	featMRG  = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	featCtrl = 1 << 17 // VIRTIO_NET_F_CTRL_VQ (not offered by fakeDev)
)

// fakeDev is a virtio-net-like device: three queues, a 6-byte MAC config,
// and a worker goroutine while active that raises the queue interrupt on
// each doorbell.
type fakeDev struct {
	features    uint64
	sizes       []uint16
	activateErr error

	mu          sync.Mutex
	cfg         [8]byte
	activations []Activation
	resets      int
	stop        chan struct{}
	done        chan struct{}
	running     atomic.Bool
	kicks       atomic.Int64
}

func newFakeDev() *fakeDev {
	d := &fakeDev{
		features: FeatureVersion1 | FeatureEventIdx | FeatureRingPacked | featMAC | featMRG,
		sizes:    []uint16{256, 256, 64},
	}
	copy(d.cfg[:], []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0})
	return d
}

func (d *fakeDev) Type() uint16            { return netType }
func (d *fakeDev) Features() uint64        { return d.features }
func (d *fakeDev) QueueMaxSizes() []uint16 { return d.sizes }

func (d *fakeDev) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.cfg)) {
			data[i] = d.cfg[o]
		}
	}
}

func (d *fakeDev) WriteConfig(uint64, []byte) {}

func (d *fakeDev) Activate(a Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.activations = append(d.activations, a)
	if d.activateErr != nil {
		return d.activateErr
	}
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	d.running.Store(true)
	go d.worker(a, d.stop, d.done)
	return nil
}

// worker polls the doorbells; a kick is answered with the queue's
// interrupt, as a real device completing a request would.
func (d *fakeDev) worker(a Activation, stop, done chan struct{}) {
	defer close(done)
	defer d.running.Store(false)
	fds := make([]unix.PollFd, len(a.Queues))
	for i, q := range a.Queues {
		fds[i] = unix.PollFd{Fd: int32(q.Doorbell), Events: unix.POLLIN}
	}
	var buf [8]byte
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := unix.Poll(fds, 5); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		for i, q := range a.Queues {
			if fds[i].Revents&unix.POLLIN == 0 {
				continue
			}
			if _, err := unix.Read(q.Doorbell, buf[:]); err == nil {
				d.kicks.Add(1)
				_ = q.Interrupt.Trigger()
			}
		}
	}
}

func (d *fakeDev) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resets++
	if d.stop != nil {
		close(d.stop)
		<-d.done
		d.stop, d.done = nil, nil
	}
}

func (d *fakeDev) lastActivation() (Activation, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.activations) == 0 {
		return Activation{}, 0
	}
	return d.activations[len(d.activations)-1], len(d.activations)
}

func (d *fakeDev) resetCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resets
}

// fakeVector is an MSI vector that counts deliveries on an enabled route.
type fakeVector struct {
	mu      sync.Mutex
	addr    uint64
	data    uint32
	enabled bool
	fired   atomic.Int64
}

func (v *fakeVector) Update(addr uint64, data uint32, enabled bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.addr, v.data, v.enabled = addr, data, enabled
	return nil
}

func (v *fakeVector) Trigger() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.enabled {
		v.fired.Add(1)
	}
	return nil
}

// vectors hands out fake vectors and finds them by MSI data value.
type vectors struct {
	mu   sync.Mutex
	all  []*fakeVector
	fail bool
}

func (vs *vectors) alloc() (msix.Vector, error) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v := &fakeVector{}
	vs.all = append(vs.all, v)
	return v, nil
}

// byData returns the number of deliveries of the vector whose message
// data is data.
func (vs *vectors) fired(data uint32) int64 {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	var n int64
	for _, v := range vs.all {
		v.mu.Lock()
		if v.data == data {
			n += v.fired.Load()
		}
		v.mu.Unlock()
	}
	return n
}

// doorbells records ioeventfd registrations and rejects double ones.
type doorbells struct {
	mu  sync.Mutex
	reg map[uint64]int
	log []string
}

func (b *doorbells) Register(addr uint64, fd int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.reg[addr]; ok {
		return fmt.Errorf("doorbell %#x already registered", addr)
	}
	b.reg[addr] = fd
	b.log = append(b.log, fmt.Sprintf("+%#x", addr))
	return nil
}

func (b *doorbells) Unregister(addr uint64, fd int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if got, ok := b.reg[addr]; !ok || got != fd {
		return fmt.Errorf("doorbell %#x/%d not registered", addr, fd)
	}
	delete(b.reg, addr)
	b.log = append(b.log, fmt.Sprintf("-%#x", addr))
	return nil
}

func (b *doorbells) snapshot() map[uint64]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[uint64]int, len(b.reg))
	for k, v := range b.reg {
		m[k] = v
	}
	return m
}

// line is a fake INTx line.
type line struct{ high atomic.Bool }

func (l *line) SetLevel(h bool) error { l.high.Store(h); return nil }

// vcap is a parsed virtio vendor capability.
type vcap struct {
	bar            uint8
	offset, length uint32
	mult           uint32
}

// env is a machine with a PCI bridge, the transport in a slot, and a
// "driver" doing what Linux's virtio_pci_modern does.
type env struct {
	t     *testing.T
	pio   *bus.Bus
	mmio  *bus.Bus
	br    *pci.Bridge
	tr    *Transport
	dev   *fakeDev
	vecs  *vectors
	bells *doorbells
	mem   *guestmem.Memory
	slot  int
	caps  map[byte]vcap
	msix  int // MSI-X capability offset
}

func newEnv(t *testing.T, dev *fakeDev) *env {
	t.Helper()
	e := &env{t: t, pio: bus.New("pio"), mmio: bus.New("mmio"), dev: dev, vecs: &vectors{}, bells: &doorbells{reg: map[uint64]int{}}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := pci.NewBridge(pci.Config{PIO: e.pio, MMIO: e.mmio, RAMEnd: ramEnd, Logger: logger})
	require.NoError(t, err)
	e.br = br
	e.mem, err = guestmem.FromRegions(guestmem.Region{GPA: 0, Host: make([]byte, ramSize)})
	require.NoError(t, err)
	e.tr, err = New(Config{Device: dev, Mem: e.mem, AllocVector: e.vecs.alloc, Doorbells: e.bells, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.tr.Close()) })
	e.slot, err = br.Add(e.tr)
	require.NoError(t, err)
	e.findCaps()
	return e
}

// Config space access through ports 0xCF8/0xCFC.

func (e *env) cfgRead(reg, size int) uint32 {
	v, ok := pcitest.ConfigIO{PIO: e.pio, Slot: e.slot}.Read(reg, size)
	require.True(e.t, ok, "config read %#x unclaimed", reg)
	return v
}

func (e *env) cfgWrite(reg, size int, v uint32) {
	require.True(e.t, pcitest.ConfigIO{PIO: e.pio, Slot: e.slot}.Write(reg, size, v), "config write %#x unclaimed", reg)
}

// findCaps walks the capability list as virtio_pci_find_capability does.
func (e *env) findCaps() {
	e.caps = map[byte]vcap{}
	require.NotZero(e.t, e.cfgRead(pci.RegStatus, 2)&pci.StatusCapList)
	for off, n := int(e.cfgRead(pci.RegCapPointer, 1)), 0; off != 0; off, n = int(e.cfgRead(off+1, 1)), n+1 {
		require.Less(e.t, n, 48, "capability loop")
		switch e.cfgRead(off, 1) {
		case pci.CapIDMSIX:
			e.msix = off
		case pci.CapIDVendor:
			c := vcap{bar: uint8(e.cfgRead(off+4, 1)), offset: e.cfgRead(off+8, 4), length: e.cfgRead(off+12, 4)}
			typ := byte(e.cfgRead(off+3, 1))
			if typ == CapNotifyCfg {
				require.EqualValues(e.t, 20, e.cfgRead(off+2, 1), "cap_len")
				c.mult = e.cfgRead(off+16, 4)
			} else {
				require.EqualValues(e.t, 16, e.cfgRead(off+2, 1), "cap_len")
			}
			_, dup := e.caps[typ]
			require.False(e.t, dup)
			e.caps[typ] = c
		}
	}
}

func (e *env) barBase() uint64 {
	lo := uint64(e.cfgRead(pci.RegBAR0, 4)) &^ 0xF
	hi := uint64(e.cfgRead(pci.RegBAR0+4, 4))
	return hi<<32 | lo
}

func (e *env) addr(typ byte, off uint64) uint64 {
	c, ok := e.caps[typ]
	require.True(e.t, ok, "capability type %d", typ)
	require.EqualValues(e.t, BARIndex, c.bar)
	return e.barBase() + uint64(c.offset) + off
}

func (e *env) rd(addr uint64, n int) uint64 {
	b := make([]byte, n)
	require.True(e.t, e.mmio.Read(addr, b), "mmio read %#x unclaimed", addr)
	var w [8]byte
	copy(w[:], b)
	return binary.LittleEndian.Uint64(w[:])
}

func (e *env) wr(addr uint64, n int, v uint64) {
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], v)
	require.True(e.t, e.mmio.Write(addr, w[:n]), "mmio write %#x unclaimed", addr)
}

// Common config accessors with the field widths Linux uses.
func (e *env) common(off uint64, n int) uint64 { return e.rd(e.addr(CapCommonCfg, off), n) }
func (e *env) setCommon(off uint64, n int, v uint64) {
	e.wr(e.addr(CapCommonCfg, off), n, v)
}

func (e *env) status() uint8        { return uint8(e.common(RegDeviceStatus, 1)) }
func (e *env) addStatus(bits uint8) { e.setCommon(RegDeviceStatus, 1, uint64(e.status()|bits)) }

// deviceFeatures reads both feature words as vp_modern_get_features does.
func (e *env) deviceFeatures() uint64 {
	e.setCommon(RegDeviceFeatureSelect, 4, 0)
	lo := e.common(RegDeviceFeature, 4)
	e.setCommon(RegDeviceFeatureSelect, 4, 1)
	hi := e.common(RegDeviceFeature, 4)
	return hi<<32 | lo
}

func (e *env) setDriverFeatures(f uint64) {
	e.setCommon(RegDriverFeatureSelect, 4, 0)
	e.setCommon(RegDriverFeature, 4, f&0xFFFF_FFFF)
	e.setCommon(RegDriverFeatureSelect, 4, 1)
	e.setCommon(RegDriverFeature, 4, f>>32)
}

// negotiate does reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK and
// returns the status read back.
func (e *env) negotiate(f uint64) uint8 {
	e.setCommon(RegDeviceStatus, 1, 0)
	require.Zero(e.t, e.status(), "reset completes synchronously")
	e.addStatus(StatusAcknowledge)
	e.addStatus(StatusDriver)
	e.deviceFeatures()
	e.setDriverFeatures(f)
	e.addStatus(StatusFeaturesOK)
	return e.status()
}

// enableMSIX sets MSI-X Enable, programs entry i with data 0x40+i and
// unmasks it, as pci_alloc_irq_vectors + request_irq do.
func (e *env) enableMSIX(entries int) {
	ctl := e.cfgRead(e.msix+2, 2)
	e.cfgWrite(e.msix+2, 2, ctl|msix.CtlEnable)
	tableBIR := e.cfgRead(e.msix+4, 4)
	require.EqualValues(e.t, BARIndex, tableBIR&7)
	table := e.barBase() + uint64(tableBIR&^7)
	for i := range entries {
		ent := table + uint64(i)*msix.EntrySize
		e.wr(ent+msix.EntryAddrLo, 4, 0xFEE0_0000)
		e.wr(ent+msix.EntryAddrHi, 4, 0)
		e.wr(ent+msix.EntryData, 4, uint64(0x40+i))
		e.wr(ent+msix.EntryControl, 4, 0)
	}
}

// Ring addresses for queue i inside the 1 MiB test RAM.
func descAddr(i int) uint64   { return 0x10000 + uint64(i)*0x8000 }
func driverAddr(i int) uint64 { return descAddr(i) + 0x4000 }
func deviceAddr(i int) uint64 { return descAddr(i) + 0x5000 }

// setupQueue programs queue i as vp_modern find_vqs does and returns the
// vector read back.
func (e *env) setupQueue(i int, size uint16, vector uint16) uint16 {
	e.setCommon(RegQueueSelect, 2, uint64(i))
	max := e.common(RegQueueSize, 2)
	require.NotZero(e.t, max)
	require.Zero(e.t, e.common(RegQueueEnable, 2))
	e.setCommon(RegQueueSize, 2, uint64(size))
	e.setCommon(RegQueueDesc, 4, descAddr(i)&0xFFFF_FFFF)
	e.setCommon(RegQueueDesc+4, 4, descAddr(i)>>32)
	e.setCommon(RegQueueDriver, 4, driverAddr(i)&0xFFFF_FFFF)
	e.setCommon(RegQueueDriver+4, 4, driverAddr(i)>>32)
	e.setCommon(RegQueueDevice, 4, deviceAddr(i)&0xFFFF_FFFF)
	e.setCommon(RegQueueDevice+4, 4, deviceAddr(i)>>32)
	e.setCommon(RegQueueMSIXVector, 2, uint64(vector))
	return uint16(e.common(RegQueueMSIXVector, 2))
}

func (e *env) enableQueue(i int) {
	e.setCommon(RegQueueSelect, 2, uint64(i))
	e.setCommon(RegQueueEnable, 2, 1)
}

// notifyAddr is where the driver kicks queue i (vp_modern_map_vq_notify).
func (e *env) notifyAddr(i int) uint64 {
	e.setCommon(RegQueueSelect, 2, uint64(i))
	off := e.common(RegQueueNotifyOff, 2)
	return e.addr(CapNotifyCfg, off*uint64(e.caps[CapNotifyCfg].mult))
}

// drain reads an eventfd; it reports the counter (0 if not signalled).
func drain(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	if errors.Is(err, unix.EAGAIN) {
		return 0
	}
	require.NoError(t, err)
	require.Equal(t, 8, n)
	return binary.LittleEndian.Uint64(b[:])
}
