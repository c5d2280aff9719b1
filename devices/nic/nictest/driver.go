package nictest

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Guest memory as the kit lays it out: receive buffers from rxArea, one
// transmit slot of txSlot bytes per transmit ID from txArea.
const (
	memBase = 0x100000
	rxArea  = memBase
	rxSize  = 8 << 20
	txArea  = rxArea + rxSize
	txSlot  = 64 << 10
	txIDs   = 64
	memSize = rxSize + txIDs*txSlot
	// rxIDs is how many receive buffer IDs a driver has (its ring size).
	rxIDs = 256
)

// shape is how a driver cuts its receive buffers.
type shape struct {
	name string
	cfg  nic.Config
	size int // bytes per buffer
	segs int // segments per buffer (the buffer is split evenly)
	post int // buffers posted up front
}

// driver plays the virtio-net device and the guest driver for one model:
// it lends buffers cut from guest memory, is the model's Sink, and keeps
// the ledger that says whether the model kept the contract.
type driver struct {
	t     *testing.T
	mem   *guestmem.Memory
	model nic.Model
	shape shape

	// postMu orders PostRx calls as the ledger numbers them (the sink and
	// a driver goroutine both lend buffers).
	postMu   sync.Mutex
	owed     atomic.Bool // a sink callback wanted buffers lent while postMu was held
	mu       sync.Mutex
	seq      uint64
	lent     map[uint16]uint64 // rx ID → posting sequence, while the model owns it
	free     []uint16          // rx IDs the driver holds
	rx       []rxFrame         // frames reported, in report order
	txBusy   map[uint16]bool   // tx IDs in flight
	txDone   int
	faults   []string    // contract violations seen in sink calls
	refill   atomic.Bool // lend buffers back from inside RxFrames and RxStarved
	stopped  atomic.Bool
	starved  atomic.Int64
	rxSignal chan struct{}
	txSignal chan struct{}
}

// rxFrame is one received frame as the guest would read it.
type rxFrame struct {
	hdr  []byte
	data []byte
	bufs int
}

func newDriver(t *testing.T, mem *guestmem.Memory, m nic.Model, s shape) *driver {
	d := &driver{t: t, mem: mem, model: m, shape: s, lent: map[uint16]uint64{}, txBusy: map[uint16]bool{},
		rxSignal: make(chan struct{}, 1), txSignal: make(chan struct{}, 1)}
	for id := range uint16(rxIDs) {
		d.free = append(d.free, id)
	}
	return d
}

func (d *driver) fault(format string, a ...any) {
	d.faults = append(d.faults, fmt.Sprintf(format, a...))
}

// buf returns the guest buffer for rx ID id.
func (d *driver) buf(id uint16) nic.Buf {
	b := nic.Buf{ID: id}
	gpa := uint64(rxArea) + uint64(id)*uint64(rxSize/rxIDs)
	per := d.shape.size / d.shape.segs
	for i := range d.shape.segs {
		n := per
		if i == d.shape.segs-1 {
			n = d.shape.size - per*(d.shape.segs-1)
		}
		s, err := d.mem.Slice(gpa, uint64(n))
		if err != nil {
			panic(err) // the layout constants are wrong: a bug in the kit
		}
		b.Segs, b.GPAs = append(b.Segs, s), append(b.GPAs, gpa)
		gpa += uint64(n) + 64 // a gap: segments are not contiguous
	}
	return b
}

// post lends up to n free buffers, cleared; it returns how many the model
// took. The ledger records them before PostRx: a model may fill one and
// report it before PostRx returns.
func (d *driver) post(n int) int {
	d.postMu.Lock()
	defer d.postMu.Unlock()
	took := d.postLocked(n)
	for d.owed.Swap(false) {
		d.postLocked(rxIDs)
	}
	return took
}

// tryPost is post from inside a sink callback. If another goroutine is
// lending now, or the model called the sink from inside PostRx, it leaves
// the lending to that one (owed), which lends every free buffer when its
// PostRx returns.
func (d *driver) tryPost(n int) {
	d.owed.Store(true)
	if d.postMu.TryLock() {
		defer d.postMu.Unlock()
		for d.owed.Swap(false) {
			d.postLocked(rxIDs)
		}
	}
}

func (d *driver) postLocked(n int) int {
	d.mu.Lock()
	n = min(n, len(d.free))
	bufs := make([]nic.Buf, 0, n)
	for _, id := range d.free[:n] {
		b := d.buf(id)
		for _, s := range b.Segs {
			clear(s)
		}
		bufs = append(bufs, b)
		d.seq++
		d.lent[id] = d.seq
	}
	d.free = d.free[n:]
	d.mu.Unlock()
	if n == 0 {
		return 0
	}
	took := d.model.PostRx(bufs)
	d.mu.Lock()
	defer d.mu.Unlock()
	if took < 0 || took > n {
		d.fault("PostRx of %d buffers returned %d", n, took)
		took = max(0, min(took, n))
	}
	for _, b := range bufs[took:] { // not taken: the driver keeps them
		delete(d.lent, b.ID)
		d.free = append(d.free, b.ID)
	}
	return took
}

// RxFrames implements nic.Sink: it checks each frame's buffers against the
// ledger and copies the frame out as the guest would read it.
func (d *driver) RxFrames(b *nic.RxBatch) {
	var again int
	d.mu.Lock()
	if d.stopped.Load() {
		d.fault("RxFrames after Stop returned (%d frames)", b.Len())
	}
	hdrLen := d.shape.cfg.HdrLen
	for i := range b.Len() {
		used := b.Frame(i)
		var whole []byte
		last := uint64(0)
		for k, u := range used {
			seq, ok := d.lent[u.ID]
			if !ok {
				d.fault("RxFrames reports buffer %d, which the model does not hold (never lent, or already reported)", u.ID)
				continue
			}
			if seq <= last {
				d.fault("a frame's buffers are not in posting order (buffer %d)", u.ID)
			}
			last = seq
			delete(d.lent, u.ID)
			d.free = append(d.free, u.ID)
			again++
			buf := d.buf0(u.ID)
			switch {
			case int(u.Written) > len(buf):
				d.fault("buffer %d: %d bytes written into %d", u.ID, u.Written, len(buf))
			case k == 0 && int(u.Written) < hdrLen:
				d.fault("buffer %d: a frame's first buffer holds %d bytes, less than the %d-byte header", u.ID, u.Written, hdrLen)
			case !d.shape.cfg.Mergeable && len(used) > 1:
				d.fault("a frame spans %d buffers without VIRTIO_NET_F_MRG_RXBUF", len(used))
			}
			whole = append(whole, buf[:min(int(u.Written), len(buf))]...)
		}
		if len(used) == 0 {
			d.fault("RxFrames reports a frame with no buffers")
			continue
		}
		if len(whole) < hdrLen {
			continue
		}
		d.rx = append(d.rx, rxFrame{hdr: whole[:hdrLen], data: whole[hdrLen:], bufs: len(used)})
	}
	d.mu.Unlock()
	if d.refill.Load() {
		d.tryPost(again) // as virtio-net does: lend what the driver added meanwhile
	}
	signal(d.rxSignal)
}

// buf0 returns rx buffer id's bytes, its segments joined (a copy).
func (d *driver) buf0(id uint16) []byte {
	var out []byte
	for _, s := range d.buf(id).Segs {
		out = append(out, s...)
	}
	return out
}

// TxDone implements nic.Sink.
func (d *driver) TxDone(ids []uint16) {
	d.mu.Lock()
	for _, id := range ids {
		if !d.txBusy[id] {
			d.fault("TxDone reports frame %d, which is not in flight (never sent, or reported twice)", id)
			continue
		}
		delete(d.txBusy, id)
		d.txDone++
	}
	d.mu.Unlock()
	signal(d.txSignal)
}

// RxStarved implements nic.Sink.
func (d *driver) RxStarved() {
	d.starved.Add(1)
	if d.refill.Load() {
		d.tryPost(rxIDs)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// transmit sends frames (each a header and a frame) with free tx IDs,
// copied into guest memory first as a guest's stack would have them, the
// header and the frame in separate segments (Linux's layout).
func (d *driver) transmit(frames [][2][]byte) {
	bufs := make([]nic.Buf, 0, len(frames))
	d.mu.Lock()
	for _, f := range frames {
		id := uint16(0)
		for d.txBusy[id] {
			id++
		}
		if id >= txIDs {
			d.mu.Unlock()
			d.t.Fatalf("nictest: more than %d transmit frames in flight", txIDs)
		}
		d.txBusy[id] = true
		gpa := uint64(txArea) + uint64(id)*txSlot
		h, err := d.mem.Slice(gpa, uint64(len(f[0])))
		if err != nil || len(f[0])+len(f[1])+64 > txSlot {
			d.mu.Unlock()
			d.t.Fatalf("nictest: a %d-byte frame does not fit a transmit slot", len(f[1]))
		}
		p, _ := d.mem.Slice(gpa+uint64(len(f[0]))+64, uint64(len(f[1])))
		copy(h, f[0])
		copy(p, f[1])
		b := nic.Buf{ID: id, Segs: [][]byte{h, p}, GPAs: []uint64{gpa, gpa + uint64(len(f[0])) + 64}}
		if len(f[1]) == 0 {
			b.Segs, b.GPAs = b.Segs[:1], b.GPAs[:1]
		}
		bufs = append(bufs, b)
	}
	d.mu.Unlock()
	d.model.Transmit(bufs)
}

// waitTx waits until no transmit frame is in flight.
func (d *driver) waitTx(timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		n := len(d.txBusy)
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-d.txSignal:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("%d transmitted frames never reported done (Sink.TxDone) within %v", n, timeout)
		}
	}
}

// waitRx waits until pred (called without the driver's lock) holds.
func (d *driver) waitRx(timeout time.Duration, pred func() bool) bool {
	deadline := time.After(timeout)
	for {
		if pred() {
			return true
		}
		select {
		case <-d.rxSignal:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

// received returns the kit's frames received so far, by sequence number,
// with their checksums completed as the guest's stack would.
func (d *driver) received() map[uint32]rxFrame {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[uint32]rxFrame{}
	for _, f := range d.rx {
		if k, ok := identify(f.data); ok {
			out[k.seq] = f
		}
	}
	return out
}

// stop stops the model and checks what it gave back: every buffer it
// held, once, in posting order, and nothing it had reported.
func (d *driver) stop() {
	back := d.model.Stop()
	d.stopped.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	var order []uint64
	for _, b := range back {
		seq, ok := d.lent[b.ID]
		if !ok {
			d.fault("Stop returns buffer %d, which the model does not hold (never lent, reported, or returned twice)", b.ID)
			continue
		}
		order = append(order, seq)
		delete(d.lent, b.ID)
		d.free = append(d.free, b.ID)
	}
	if !slices.IsSorted(order) {
		d.fault("Stop returns buffers out of posting order")
	}
	if len(d.lent) > 0 {
		d.fault("%d lent buffers were neither reported nor returned by Stop (lost)", len(d.lent))
		for id := range d.lent {
			d.free = append(d.free, id)
		}
		clear(d.lent)
	}
}

// check fails the test with every contract violation seen.
func (d *driver) check() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.faults {
		d.t.Errorf("%s: %s", d.model.Name(), f)
	}
	d.faults = nil
}
