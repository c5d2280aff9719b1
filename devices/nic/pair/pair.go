// Package pair connects two NIC models back to back in one process: a frame
// transmitted on one end is received on the other. It links two VMs in one
// govmm, or a VM and a Go peer in tests. Crossing between two guests' memory
// needs exactly one copy (from the sender's frame into the receiver's
// buffers); there is no other buffer.
package pair

import (
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/devices/nic"
)

// End is one side of a pair; it implements nic.Model.
type End struct {
	name string
	peer *End

	mu      sync.Mutex
	cfg     nic.Config
	sink    nic.Sink
	running bool
	// delivering counts frames taken from bufs whose RxFrames call has
	// not returned yet: Stop waits for them, so every buffer is reported
	// or returned before it returns (nic.Model).
	delivering sync.WaitGroup
	bufs       []nic.Buf
	used       []nic.Used

	// Dropped counts frames that arrived while this end had no room.
	Dropped atomic.Uint64
}

// New returns two connected ends.
func New() (*End, *End) {
	a, b := &End{name: "pair"}, &End{name: "pair"}
	a.peer, b.peer = b, a
	return a, b
}

// Name implements nic.Model.
func (e *End) Name() string { return e.name }

// Capabilities implements nic.Model. Frames keep their virtio_net_hdr end
// to end, so checksum and GSO metadata pass through unchanged.
func (e *End) Capabilities() nic.Capabilities { return nic.Capabilities{Csum: true, TSO: true} }

// Start implements nic.Model.
func (e *End) Start(cfg nic.Config, sink nic.Sink) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg, e.sink, e.running = cfg, sink, true
	return nil
}

// PostRx implements nic.Model.
func (e *End) PostRx(bufs []nic.Buf) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return 0 // stopped: Stop may already have handed back what it held
	}
	e.bufs = append(e.bufs, bufs...)
	return len(bufs)
}

// Transmit implements nic.Model: each frame is delivered to the peer.
func (e *End) Transmit(frames []nic.Buf) {
	e.mu.Lock()
	sink, hdrLen := e.sink, e.cfg.HdrLen
	e.mu.Unlock()
	ids := make([]uint16, 0, len(frames))
	for _, f := range frames {
		e.peer.deliver(f.Segs, hdrLen)
		ids = append(ids, f.ID)
	}
	if sink != nil {
		sink.TxDone(ids)
	}
}

// Stop implements nic.Model.
func (e *End) Stop() []nic.Buf {
	e.mu.Lock()
	e.running = false
	e.mu.Unlock()
	// A delivery in flight may still report buffers (and its sink may lend
	// more, which PostRx now refuses): take what is held only after it.
	e.delivering.Wait() // no Add after running went false
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.bufs
	e.bufs = nil
	return b
}

func frameLen(segs [][]byte) int {
	n := 0
	for _, s := range segs {
		n += len(s)
	}
	return n
}

// deliver copies a frame whose header is peerHdr bytes into this end's
// posted buffers. The header sizes of the two ends may differ (10 vs 12
// bytes): the frame is re-headed. The sink is called without the lock held,
// since it may post buffers back.
func (e *End) deliver(segs [][]byte, peerHdr int) {
	e.mu.Lock()
	if !e.running || frameLen(segs) < peerHdr {
		e.mu.Unlock()
		e.Dropped.Add(1)
		return
	}
	src := newReader(segs)
	hdr := make([]byte, 12)
	src.read(hdr[:peerHdr])
	if peerHdr == 12 {
		hdr[10], hdr[11] = 0, 0 // num_buffers is the receiver's business
	}
	need := e.cfg.HdrLen + frameLen(segs) - peerHdr
	n, room := 0, 0
	for n < len(e.bufs) && room < need && (e.cfg.Mergeable || n == 0) {
		room += e.bufs[n].Len()
		n++
	}
	if room < need {
		e.mu.Unlock()
		e.Dropped.Add(1)
		return
	}
	e.used = e.used[:0]
	first := true
	for i := 0; i < n && need > 0; i++ {
		w := 0
		for _, d := range e.bufs[i].Segs {
			if first {
				k := copy(d, hdr[:e.cfg.HdrLen])
				d = d[k:]
				w += k
				first = false
			}
			w += src.read(d)
		}
		w = min(w, need)
		need -= w
		e.used = append(e.used, nic.Used{ID: e.bufs[i].ID, Written: uint32(w)})
	}
	e.bufs = e.bufs[len(e.used):]
	var b nic.RxBatch // its own copy: e.used is reused once the lock is dropped
	b.Add(e.used...)
	sink := e.sink
	e.delivering.Add(1)
	e.mu.Unlock()
	sink.RxFrames(&b)
	e.delivering.Done()
}

// reader walks a scatter list.
type reader struct {
	segs [][]byte
}

// newReader copies the segment list so reading never mutates the caller's.
func newReader(segs [][]byte) *reader { return &reader{segs: append([][]byte(nil), segs...)} }

func (r *reader) read(p []byte) int {
	n := 0
	for len(p) > 0 && len(r.segs) > 0 {
		k := copy(p, r.segs[0])
		p, n = p[k:], n+k
		r.segs[0] = r.segs[0][k:]
		if len(r.segs[0]) == 0 {
			r.segs = r.segs[1:]
		}
	}
	return n
}
