package zerocopy

import (
	"errors"
	"sync"

	"github.com/govmm/govmm/devices/nic"
)

// Port is the host side of the NIC: where received frames come from and
// transmitted ones go. Each frame carries a virtio_net_hdr in front (a tap
// with IFF_VNET_HDR).
type Port interface {
	// ReadFrame scatters the next frame's virtio_net_hdr into hdr and the
	// Ethernet frame across bufs (one readv on a tap) and returns the
	// frame length. A frame longer than bufs is truncated and reported
	// with its full length. With wait it blocks until a frame arrives;
	// without, it returns ErrWouldBlock when none is queued (the model
	// reads a batch that way). It returns ErrInterrupted after Interrupt,
	// ErrClosed once the port is closed.
	ReadFrame(hdr []byte, bufs [][]byte, wait bool) (int, error)
	// Writev sends one frame given as segments, virtio_net_hdr first.
	Writev(segs [][]byte) error
	// Interrupt makes one pending or the next ReadFrame return ErrInterrupted.
	Interrupt()
}

// HdrLenSetter is implemented by ports that must be told the
// virtio_net_hdr size (TUNSETVNETHDRSZ).
type HdrLenSetter interface {
	SetHdrLen(n int) error
}

// OffloadSetter is implemented by ports that must be told which offloads
// the guest accepts in received frames (TUNSETOFFLOAD).
type OffloadSetter interface {
	SetOffload(cfg nic.Config) error
}

// Port errors.
var (
	ErrInterrupted = errors.New("zerocopy: port read interrupted")
	ErrWouldBlock  = errors.New("zerocopy: no frame queued")
	ErrClosed      = errors.New("zerocopy: port closed")
)

// MemPort is an in-process Port: Inject queues a received frame, Sent
// returns what was transmitted. It is for tests and benchmarks.
type MemPort struct {
	mu     sync.Mutex
	cond   *sync.Cond
	rx     [][]byte // hdr+frame
	intr   bool
	closed bool
	tx     [][]byte // hdr+frame
	hdrLen int
}

// NewMemPort returns an empty MemPort for a virtio_net_hdr of hdrLen bytes.
func NewMemPort(hdrLen int) *MemPort {
	p := &MemPort{hdrLen: hdrLen}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// SetHdrLen implements HdrLenSetter.
func (p *MemPort) SetHdrLen(n int) error {
	p.mu.Lock()
	p.hdrLen = n
	p.mu.Unlock()
	return nil
}

// Inject queues one frame with the virtio_net_hdr vnet (zero-padded or cut
// to the header length) in front.
func (p *MemPort) Inject(vnet, frame []byte) {
	p.mu.Lock()
	b := make([]byte, p.hdrLen+len(frame))
	copy(b[:p.hdrLen], vnet)
	copy(b[p.hdrLen:], frame)
	p.rx = append(p.rx, b)
	p.mu.Unlock()
	p.cond.Signal()
}

// Pending reports how many injected frames have not been read.
func (p *MemPort) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rx)
}

// ReadFrame implements Port. The copy stands for the kernel's copy into
// the readv iovec (the one write of the payload).
func (p *MemPort) ReadFrame(hdr []byte, bufs [][]byte, wait bool) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !wait && len(p.rx) == 0 && !p.intr && !p.closed {
		return 0, ErrWouldBlock
	}
	for len(p.rx) == 0 && !p.intr && !p.closed {
		p.cond.Wait()
	}
	switch {
	case p.intr:
		p.intr = false
		return 0, ErrInterrupted
	case p.closed:
		return 0, ErrClosed
	}
	b := p.rx[0]
	p.rx = p.rx[1:]
	copy(hdr, b[:min(p.hdrLen, len(b))])
	f := b[min(p.hdrLen, len(b)):]
	n := 0
	for _, d := range bufs {
		n += copy(d, f[n:])
	}
	return len(f), nil
}

// Writev implements Port; the frame is stored with its header.
func (p *MemPort) Writev(segs [][]byte) error {
	var f []byte
	for _, s := range segs {
		f = append(f, s...)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.tx = append(p.tx, f)
	return nil
}

// Sent returns the transmitted frames (without virtio_net_hdr).
func (p *MemPort) Sent() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][]byte, len(p.tx))
	for i, f := range p.tx {
		out[i] = f[min(p.hdrLen, len(f)):]
	}
	return out
}

// SentFrame returns transmitted frame i (0 is the first) with the
// virtio_net_hdr it was sent with, and whether there is one.
func (p *MemPort) SentFrame(i int) (hdr, frame []byte, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.tx) {
		return nil, nil, false
	}
	f := p.tx[i]
	h := min(p.hdrLen, len(f))
	return f[:h], f[h:], true
}

// Interrupt implements Port.
func (p *MemPort) Interrupt() {
	p.mu.Lock()
	p.intr = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Close makes every ReadFrame fail with ErrClosed.
func (p *MemPort) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}
