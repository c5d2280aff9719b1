// Package nic is the seam between a virtio-net device and the thing that
// moves its frames: a NIC model. A model is handed guest receive buffers
// ahead of time and writes frames straight into them (the way a NIC DMAs
// into posted descriptors), and is handed guest transmit frames as views of
// guest memory it may send without copying. It completes both through a
// Sink. The tap model (readv/writev on a Linux tap), the in-process pair,
// and the zero-copy 82599 path are all Models; a device author adds one by
// implementing the six methods below and checks it with package nictest.
//
// Frame format at this interface: every frame, in both directions, starts
// with a virtio_net_hdr of Config.HdrLen bytes (10, or 12 with
// VIRTIO_NET_F_MRG_RXBUF / VERSION_1). On receive the model writes that
// header (a zeroed one is fine; the device fills in num_buffers); on
// transmit the model consumes it (a tap with IFF_VNET_HDR takes it as is,
// a NIC model turns it into offload descriptors).
package nic

// Buf is one guest buffer lent to a model. Segs are views into guest RAM
// (already bounds-checked by the device); ID is the device's token (the
// virtqueue head index) and comes back in the completion.
type Buf struct {
	ID   uint16
	Segs [][]byte
	// GPAs optionally holds the guest-physical address of each segment,
	// parallel to Segs. Models that only touch the host views leave it
	// unused; a model that programs a DMA engine with guest addresses (the
	// zero-copy 82599 path) needs it, and falls back to copying without it.
	GPAs []uint64
}

// Len returns the buffer's capacity in bytes.
func (b *Buf) Len() int {
	n := 0
	for _, s := range b.Segs {
		n += len(s)
	}
	return n
}

// Used reports how many bytes of one lent buffer a model wrote.
type Used struct {
	ID      uint16
	Written uint32
}

// RxBatch is a run of received frames, each spread over one or more lent
// buffers in the order they were posted (only a frame's first buffer
// carries the virtio_net_hdr). A model keeps one and reuses it: Reset and
// Add do not allocate once it has grown to the model's budget.
type RxBatch struct {
	used []Used
	ends []int // ends[i]: one past frame i's last entry in used
}

// RxBudget is how many frames a model should read before it reports a
// batch even if more are waiting (NAPI's weight): a batch covers at most
// this many frames' latency.
const RxBudget = 64

// Reset empties the batch, keeping its storage.
func (b *RxBatch) Reset() { b.used, b.ends = b.used[:0], b.ends[:0] }

// Add appends one frame that landed in bufs (at least one).
func (b *RxBatch) Add(bufs ...Used) {
	if len(bufs) == 0 {
		return
	}
	b.used = append(b.used, bufs...)
	b.ends = append(b.ends, len(b.used))
}

// Len returns the number of frames.
func (b *RxBatch) Len() int { return len(b.ends) }

// Buffers returns the number of buffers all frames used.
func (b *RxBatch) Buffers() int { return len(b.used) }

// Frame returns the buffers of frame i (0 <= i < Len()).
func (b *RxBatch) Frame(i int) []Used {
	start := 0
	if i > 0 {
		start = b.ends[i-1]
	}
	return b.used[start:b.ends[i]:b.ends[i]]
}

// Config is what the device negotiated with the guest driver, given to the
// model at Start.
type Config struct {
	HdrLen    int  // virtio_net_hdr bytes at the start of each frame
	Mergeable bool // a received frame may span several buffers (VIRTIO_NET_F_MRG_RXBUF)
	// Guest offloads the driver accepted: frames to the guest may carry
	// partial checksums (GuestCsum) and be GSO frames (GuestTSO4/6, up to
	// 64 KiB); frames from the guest likewise (HostCsum, HostTSO4/6).
	GuestCsum, GuestTSO4, GuestTSO6 bool
	HostCsum, HostTSO4, HostTSO6    bool
}

// Capabilities is what a model can honour; the device offers the guest only
// the matching virtio-net features.
type Capabilities struct {
	Csum bool // can carry partial-checksum frames both ways
	TSO  bool // can carry GSO frames (TCP over IPv4/IPv6) both ways
	// HostCsum and HostTSO: the model takes partial-checksum / GSO frames
	// from the guest and finishes them itself (package gso), but delivers
	// only complete frames of at most the MTU. Csum and TSO imply them.
	HostCsum, HostTSO bool
}

// TakesCsum reports whether the guest may send partial-checksum frames.
func (c Capabilities) TakesCsum() bool { return c.Csum || c.HostCsum }

// TakesTSO reports whether the guest may send GSO frames (which need a
// partial checksum as well, as virtio's HOST_TSO4/6 need CSUM).
func (c Capabilities) TakesTSO() bool { return c.TakesCsum() && (c.TSO || c.HostTSO) }

// Sink receives a model's completions. Calls may come from any goroutine
// the model runs, but never concurrently from one model. A sink may call
// the model's PostRx from inside RxFrames and RxStarved (to lend the
// buffers the driver added meanwhile), so a model must not hold the lock
// PostRx takes while it calls them.
type Sink interface {
	// RxFrames reports the frames a model received in one go (it drained
	// its wire until empty or a budget), in arrival order. The sink
	// publishes them together and decides once whether the driver gets an
	// interrupt, as a NAPI poll or an 82599 write-back burst does: a model
	// should report a batch as soon as its wire runs dry, never hold one
	// back waiting for more frames. b is only valid during the call.
	RxFrames(b *RxBatch)
	// TxDone reports that the frames with these IDs were sent (or dropped)
	// and their guest memory is no longer referenced. ids is only valid
	// during the call.
	TxDone(ids []uint16)
	// RxStarved reports that the model's receive buffers cannot take the
	// largest frame it may receive (or that it holds none). A sink may
	// hold new buffers back while the model has plenty (virtio-net does, to
	// spare the driver's kicks); this tells it to lend them, and to be
	// woken for more. A model that waits for buffers calls it before each
	// wait; one that drops the frame instead need not.
	RxStarved()
}

// Model is a NIC backend.
type Model interface {
	// Name identifies the model in logs and stats ("tap", "pair", "ixgbe-zerocopy").
	Name() string
	// Capabilities is called before feature negotiation.
	Capabilities() Capabilities
	// Start begins operation with the negotiated configuration.
	Start(cfg Config, sink Sink) error
	// PostRx lends receive buffers. The model owns them until it reports
	// them in a Sink.RxFrames call or returns them from Stop. It must not
	// block. It reports how many of bufs it accepted (a model with a
	// bounded ring may take fewer; the device keeps the rest). A model
	// that is not running (before Start, or once Stop has begun) takes
	// none: a sink may still lend from a callback racing with Stop.
	PostRx(bufs []Buf) int
	// Transmit sends frames. Each Buf is one frame (header first). The
	// model reports completion through Sink.TxDone, possibly before
	// Transmit returns. The Segs and GPAs slices are only valid during
	// the call (the device reuses them); the guest memory they name stays
	// valid until TxDone. Calls never overlap (the device has one transmit
	// worker).
	Transmit(frames []Buf)
	// Stop ends operation and returns the receive buffers it still holds,
	// in posting order, so the device can give them back to the guest.
	// Every buffer lent comes back exactly once: in a Sink.RxFrames call
	// made before Stop returns, or from Stop. After Stop returns the model
	// makes no Sink call until the next Start (the queues are being reset
	// under it). Start may follow Stop. Package nictest checks all this.
	Stop() []Buf
}

// Debugger is implemented by models that can describe their state for a
// state dump (govmm's SIGUSR1): buffers held, ring positions. It must be
// safe to call from any goroutine while the model runs.
type Debugger interface {
	DebugState() string
}

// QueueSwitch is implemented by a model that serves one queue of a
// multi-queue host interface (one descriptor of an IFF_MULTI_QUEUE tap).
// A multi-queue virtio-net device turns off the queues of the pairs its
// driver does not use (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET), so that the host
// steers no flow to them: the device must not place frames on receive
// queues above the pairs the driver set (virtio 1.2 §5.1.6.5.5). It is
// called from a device goroutine, never concurrently with itself, and the
// model may be started or stopped at the time.
type QueueSwitch interface {
	SetQueueEnabled(on bool) error
}
