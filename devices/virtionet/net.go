package virtionet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
)

// Queue indices (§5.1.2): receiveq1, transmitq1; no control queue.
const (
	rxQ = 0
	txQ = 1
)

// QueueSize is the maximum size of each virtqueue (what Linux uses).
const QueueSize = 256

// Config configures a device.
type Config struct {
	MAC       net.HardwareAddr
	MTU       uint16 // 0: do not offer VIRTIO_NET_F_MTU
	Mergeable bool   // offer VIRTIO_NET_F_MRG_RXBUF
	// NoOffloads: offer no checksum or segmentation offload whatever the
	// model can do (QEMU's csum=off,guest_csum=off), for debugging and A/B
	// runs.
	NoOffloads bool
	Model      nic.Model
	// Moderation: transmit polling and receive interrupt coalescing (the
	// zero value polls once and coalesces nothing).
	Moderation Moderation
	// WorkerThread, if set, runs on each device worker's own locked OS
	// thread before it starts (the machine's CPU placement: a worker that
	// polls with timers must not fire them on a vCPU's CPU).
	WorkerThread func()
	// RxLimit and TxLimit rate-limit each direction (nil: unlimited). The
	// device keeps their state across resets, so a guest cannot reset its
	// way to a fresh one-time burst.
	RxLimit, TxLimit *ratelimit.Limiter
	Logger           *slog.Logger
	// OnActivate, if set, is told the negotiated features (govmm run
	// prints them).
	OnActivate func(model string, features uint64)
}

// Stats are the device's counters, safe to read at any time.
type Stats struct {
	RxFrames, RxBytes, TxFrames, TxBytes atomic.Uint64
	RxBadChains, TxBadChains             atomic.Uint64
	// BrokenQueues counts queues the driver broke (each sets
	// DEVICE_NEEDS_RESET once until the device is reset).
	BrokenQueues atomic.Uint64
	// KickThrottles counts doorbell storms met: times a worker stopped
	// listening to its doorbell after spuriousBudget kicks with nothing new
	// in spuriousWindow.
	KickThrottles atomic.Uint64
	// SpuriousKicks counts doorbells that found nothing new: each cost the
	// device a look.
	SpuriousKicks atomic.Uint64
	// RxBatches counts the model's receive batches (RxFrames calls): frames
	// per batch is what one used-ring publish and interrupt decision cover.
	RxBatches atomic.Uint64
}

// Net is a virtio-net device; it implements pcitransport.Device.
type Net struct {
	cfg   Config
	log   *slog.Logger
	Stats Stats

	mu     sync.Mutex // activation state
	active *activeState
}

// New creates a device. The MAC must be 6 bytes.
func New(cfg Config) (*Net, error) {
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("virtionet: MAC %q is not 6 bytes", cfg.MAC)
	}
	if cfg.Model == nil {
		return nil, errors.New("virtionet: no NIC model")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Net{cfg: cfg, log: cfg.Logger}, nil
}

// Type implements pcitransport.Device.
func (n *Net) Type() uint16 { return 1 }

// Features implements pcitransport.Device: what the device offers depends
// on what the model can honour; offloads are negotiated, never assumed.
func (n *Net) Features() uint64 {
	f := uint64(FeatVersion1 | FeatMAC | FeatStatus | FeatEventIdx | FeatIndirect)
	if n.cfg.MTU != 0 {
		f |= FeatMTU
	}
	if n.cfg.Mergeable {
		f |= FeatMrgRxbuf
	}
	caps := n.cfg.Model.Capabilities()
	if n.cfg.NoOffloads {
		caps = nic.Capabilities{}
	}
	if caps.Csum {
		f |= FeatGuestCsum
		if caps.TSO {
			f |= FeatGuestTSO4 | FeatGuestTSO6 | FeatGuestECN | FeatHostECN
		}
	}
	if caps.TakesCsum() {
		f |= FeatCsum
	}
	if caps.TakesTSO() {
		f |= FeatHostTSO4 | FeatHostTSO6
	}
	return f
}

// QueueMaxSizes implements pcitransport.Device.
func (n *Net) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// config space layout (§5.1.4): mac[6], status u16, max_virtqueue_pairs
// u16, mtu u16.
func (n *Net) configBytes() [12]byte {
	var b [12]byte
	copy(b[0:6], n.cfg.MAC)
	binary.LittleEndian.PutUint16(b[6:], 1) // VIRTIO_NET_S_LINK_UP
	binary.LittleEndian.PutUint16(b[8:], 1)
	binary.LittleEndian.PutUint16(b[10:], n.cfg.MTU)
	return b
}

// ReadConfig implements pcitransport.Device; bytes past the end read 0.
func (n *Net) ReadConfig(offset uint64, data []byte) {
	b := n.configBytes()
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < uint64(len(b)) {
			data[i] = b[o]
		}
	}
}

// WriteConfig implements pcitransport.Device. The MAC is writable only
// with the legacy interface; modern drivers never write it. Ignored.
func (n *Net) WriteConfig(offset uint64, data []byte) {}

// Activate implements pcitransport.Device.
func (n *Net) Activate(a pcitransport.Activation) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active != nil {
		return errors.New("virtionet: already active")
	}
	var rx, tx *pcitransport.ActiveQueue
	for i := range a.Queues {
		switch a.Queues[i].Index {
		case rxQ:
			rx = &a.Queues[i]
		case txQ:
			tx = &a.Queues[i]
		}
	}
	if rx == nil || tx == nil {
		return errors.New("virtionet: driver did not enable both the receive and transmit queues")
	}
	f := a.Features
	mcfg := nic.Config{
		HdrLen:    hdrLen,
		Mergeable: f&FeatMrgRxbuf != 0,
		GuestCsum: f&FeatGuestCsum != 0,
		GuestTSO4: f&FeatGuestTSO4 != 0,
		GuestTSO6: f&FeatGuestTSO6 != 0,
		HostCsum:  f&FeatCsum != 0,
		HostTSO4:  f&FeatHostTSO4 != 0,
		HostTSO6:  f&FeatHostTSO6 != 0,
	}
	st, err := newActive(n, a.Mem, rx, tx, mcfg)
	if err != nil {
		return err
	}
	st.needsReset = a.NeedsReset
	if err := n.cfg.Model.Start(mcfg, st); err != nil {
		st.stopWorkers()
		return fmt.Errorf("virtionet: start %s model: %w", n.cfg.Model.Name(), err)
	}
	st.startWorkers()
	n.active = st
	n.log.Info("virtio-net active", "model", n.cfg.Model.Name(), "mac", n.cfg.MAC.String(), "features", FeatureString(f))
	if n.cfg.OnActivate != nil {
		n.cfg.OnActivate(n.cfg.Model.Name(), f)
	}
	return nil
}

// Reset implements pcitransport.Device: it stops the workers and takes the
// lent buffers back from the model before the transport resets the queues.
func (n *Net) Reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active == nil {
		return
	}
	n.active.stop()
	n.cfg.Model.Stop()
	n.active = nil
}

// errChain reports whether err is a per-chain error (the chain goes back
// to the driver with length 0) rather than a broken queue.
func errChain(err error) (*queue.ChainError, bool) {
	var ce *queue.ChainError
	ok := errors.As(err, &ce)
	return ce, ok
}

// putNumBuffers writes num_buffers (little-endian) into a header that may
// span segments.
func putNumBuffers(segs [][]byte, n uint16) {
	v := [2]byte{byte(n), byte(n >> 8)}
	for i, b := range v {
		off := numBuffersOff + i
		for _, s := range segs {
			if off < len(s) {
				s[off] = b
				break
			}
			off -= len(s)
		}
	}
}

// DebugState describes the device for a state dump (govmm's SIGUSR1):
// queue indices as the device and the driver see them, buffers lent to
// the model, and the model's own state.
func (n *Net) DebugState() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active == nil {
		return "not active (no driver)"
	}
	return n.active.debugState()
}
