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

// Queue indices (§5.1.2): receiveq N is 2(N-1), transmitq N is 2(N-1)+1,
// and the control queue follows the last pair.
func rxIndex(pair int) int { return 2 * pair }
func txIndex(pair int) int { return 2*pair + 1 }

// QueueSize is the maximum size of each virtqueue (what Linux uses).
const QueueSize = 256

// ctrlQueueSize is the control queue's maximum size (QEMU's is 64).
const ctrlQueueSize = 64

// MaxPairs bounds the queue pairs of one device: each pair takes two
// MSI-X vectors, and a tap queue per pair.
const MaxPairs = 8

// Config configures a device.
type Config struct {
	MAC       net.HardwareAddr
	MTU       uint16 // 0: do not offer VIRTIO_NET_F_MTU
	Mergeable bool   // offer VIRTIO_NET_F_MRG_RXBUF
	// NoOffloads: offer no checksum or segmentation offload whatever the
	// model can do (QEMU's csum=off,guest_csum=off), for debugging and A/B
	// runs.
	NoOffloads bool
	// Model is the backend of a single-pair device; Models, instead, one
	// per queue pair: with more than one the device offers VIRTIO_NET_F_MQ
	// and the control queue, and each pair's receive and transmit queues
	// go to its own model (a queue of the host interface each). They must
	// be models of one kind (their capabilities are the first one's).
	Model  nic.Model
	Models []nic.Model
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
	cfg    Config
	log    *slog.Logger
	models []nic.Model // one per queue pair
	Stats  Stats

	mu      sync.Mutex     // activation state
	running bool           // between Activate and Reset
	active  []*activeState // by pair; nil for a pair the driver did not enable
	ctrl    *ctrlState     // nil without the control queue

	pairsMu sync.Mutex // the pairs the driver uses (the control queue's worker, Activate, Reset)
	pairs   int
}

// New creates a device. The MAC must be 6 bytes.
func New(cfg Config) (*Net, error) {
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("virtionet: MAC %q is not 6 bytes", cfg.MAC)
	}
	models := cfg.Models
	switch {
	case cfg.Model != nil && len(models) > 0:
		return nil, errors.New("virtionet: Model and Models both set")
	case cfg.Model != nil:
		models = []nic.Model{cfg.Model}
	case len(models) == 0:
		return nil, errors.New("virtionet: no NIC model")
	case len(models) > MaxPairs:
		return nil, fmt.Errorf("virtionet: %d queue pairs, at most %d", len(models), MaxPairs)
	}
	for _, m := range models {
		if m == nil {
			return nil, errors.New("virtionet: no NIC model")
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Net{cfg: cfg, log: cfg.Logger, models: models}
	// Until a driver sets more, only the first pair receives (§5.1.6.5.5).
	if err := n.setPairs(1); err != nil {
		return nil, err
	}
	return n, nil
}

// Pairs returns the queue pairs the device offers.
func (n *Net) Pairs() int { return len(n.models) }

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
	if len(n.models) > 1 {
		f |= FeatCtrlVQ | FeatMQ
	}
	caps := n.models[0].Capabilities()
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

// QueueMaxSizes implements pcitransport.Device: the pairs' receive and
// transmit queues, then the control queue if there is more than one pair.
func (n *Net) QueueMaxSizes() []uint16 {
	sizes := make([]uint16, 0, 2*len(n.models)+1)
	for range n.models {
		sizes = append(sizes, QueueSize, QueueSize)
	}
	if len(n.models) > 1 {
		sizes = append(sizes, ctrlQueueSize)
	}
	return sizes
}

// config space layout (§5.1.4): mac[6], status u16, max_virtqueue_pairs
// u16, mtu u16.
func (n *Net) configBytes() [12]byte {
	var b [12]byte
	copy(b[0:6], n.cfg.MAC)
	binary.LittleEndian.PutUint16(b[6:], 1)                     // VIRTIO_NET_S_LINK_UP
	binary.LittleEndian.PutUint16(b[8:], uint16(len(n.models))) // max_virtqueue_pairs
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
	if n.running {
		return errors.New("virtionet: already active")
	}
	f := a.Features
	pairs := 1
	if f&FeatMQ != 0 {
		pairs = len(n.models)
	}
	enabled := make(map[int]*pcitransport.ActiveQueue, len(a.Queues))
	for i := range a.Queues {
		enabled[a.Queues[i].Index] = &a.Queues[i]
	}
	if enabled[rxIndex(0)] == nil || enabled[txIndex(0)] == nil {
		return errors.New("virtionet: driver did not enable both the receive and transmit queues")
	}
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
	// A pair the driver left disabled (§4.1.4.3.2 allows it) is not
	// started, and the driver cannot set it in use (ctrlState.usable).
	active := make([]*activeState, pairs)
	for i := range pairs {
		rx, tx := enabled[rxIndex(i)], enabled[txIndex(i)]
		if rx == nil || tx == nil {
			continue
		}
		st, err := newActive(n, i, a.Mem, rx, tx, mcfg)
		if err == nil {
			st.needsReset = a.NeedsReset
			if err = n.models[i].Start(mcfg, st); err != nil {
				st.stopWorkers()
				err = fmt.Errorf("virtionet: start %s model: %w", n.models[i].Name(), err)
			}
		}
		if err != nil {
			n.stopPairs(active)
			return err
		}
		active[i] = st
	}
	if f&FeatCtrlVQ != 0 {
		if q := enabled[2*pairs]; q != nil {
			usable := 0 // the pairs from the first on that run: the most the driver may set
			for usable < pairs && active[usable] != nil {
				usable++
			}
			c, err := newCtrl(n, a.Mem, q, f, usable, a.NeedsReset)
			if err != nil {
				n.stopPairs(active)
				return err
			}
			n.ctrl = c
		}
	}
	for _, st := range active {
		if st != nil {
			st.startWorkers()
		}
	}
	if n.ctrl != nil {
		n.ctrl.start()
	}
	n.active, n.running = active, true
	n.log.Info("virtio-net active", "model", n.models[0].Name(), "mac", n.cfg.MAC.String(), "features", FeatureString(f), "pairs", pairs)
	if n.cfg.OnActivate != nil {
		n.cfg.OnActivate(n.models[0].Name(), f)
	}
	return nil
}

// stopPairs stops the activations in active and takes their models'
// buffers back (a failed Activate, or Reset).
func (n *Net) stopPairs(active []*activeState) {
	for i, st := range active {
		if st == nil {
			continue
		}
		st.stop()
		n.models[i].Stop()
	}
}

// Reset implements pcitransport.Device: it stops the workers and takes the
// lent buffers back from the models before the transport resets the
// queues, and leaves the first pair alone receiving for the next driver.
func (n *Net) Reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	if n.ctrl != nil {
		n.ctrl.stop()
		n.ctrl = nil
	}
	n.stopPairs(n.active)
	n.active, n.running = nil, false
	if err := n.setPairs(1); err != nil {
		n.log.Warn("virtio-net: queue pairs not reset", "err", err)
	}
}

// setPairs lets the first k pairs receive and turns the others' host
// queues off (nic.QueueSwitch).
func (n *Net) setPairs(k int) error {
	n.pairsMu.Lock()
	defer n.pairsMu.Unlock()
	if len(n.models) == 1 {
		n.pairs = 1
		return nil
	}
	var errs []error
	for i, m := range n.models {
		if s, ok := m.(nic.QueueSwitch); ok {
			if err := s.SetQueueEnabled(i < k); err != nil {
				errs = append(errs, fmt.Errorf("pair %d: %w", i, err))
			}
		}
	}
	n.pairs = k
	return errors.Join(errs...)
}

// ActivePairs returns the queue pairs the driver set (1 until it sets more).
func (n *Net) ActivePairs() int {
	n.pairsMu.Lock()
	defer n.pairsMu.Unlock()
	return n.pairs
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
// the model, and the model's own state; with more than one pair, each
// pair's, and the pairs in use.
func (n *Net) DebugState() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return "not active (no driver)"
	}
	if len(n.active) == 1 {
		return n.active[0].debugState()
	}
	s := fmt.Sprintf("queue pairs: %d of %d in use", n.ActivePairs(), len(n.models))
	for i, st := range n.active {
		if st == nil {
			s += fmt.Sprintf("\npair %d: not enabled by the driver", i)
			continue
		}
		s += fmt.Sprintf("\npair %d:\n%s", i, st.debugState())
	}
	if n.ctrl != nil {
		s += "\n" + n.ctrl.debugState()
	}
	return s
}
