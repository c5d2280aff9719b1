package virtionet

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
)

// batch bounds how many chains move per call into the model.
const batch = 64

// activeState is the device between DRIVER_OK and reset. Two workers run:
// the rx worker lends new receive buffers to the model when the driver
// kicks the receive queue; the tx worker pops frames and hands them to the
// model. The model completes receive buffers from its own goroutine
// (RxFrame), so the receive queue is shared and guarded by rxMu; the
// transmit queue belongs to the tx worker alone.
type activeState struct {
	n      *Net
	mem    *guestmem.Memory
	rx, tx pcitransport.ActiveQueue
	cfg    nic.Config

	rxMu    sync.Mutex
	lent    [][][]byte // segments of each lent rx buffer, by head index
	lentGPA [][]uint64 // their guest-physical addresses (for models that post them to a NIC)
	rxChain queue.Chain
	rxBufs  []nic.Buf

	txChain  queue.Chain
	txFrames []nic.Buf
	txDoneMu sync.Mutex
	txDone   []uint16
	txWake   int // eventfd: asynchronous TxDone happened

	stopFD int
	wg     sync.WaitGroup
}

func newActive(n *Net, mem *guestmem.Memory, rx, tx *pcitransport.ActiveQueue, cfg nic.Config) (*activeState, error) {
	st := &activeState{n: n, mem: mem, rx: *rx, tx: *tx, cfg: cfg, lent: make([][][]byte, rx.Queue.Size()), lentGPA: make([][]uint64, rx.Queue.Size())}
	var err error
	if st.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	if st.txWake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(st.stopFD)
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	return st, nil
}

func (st *activeState) startWorkers() {
	st.wg.Add(2)
	go st.worker(st.rx.Doorbell, st.postRx)
	go st.worker(st.tx.Doorbell, st.processTx)
}

func (st *activeState) stopWorkers() {
	signalFD(st.stopFD)
	st.wg.Wait()
	unix.Close(st.stopFD)
	unix.Close(st.txWake)
}

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

func signalFD(fd int) { _, _ = unix.Write(fd, one) }

// worker runs fn once at start (buffers may already be waiting) and then
// on every doorbell (or tx completion wake-up) until stopped.
func (st *activeState) worker(doorbell int, fn func()) {
	defer st.wg.Done()
	fds := []unix.PollFd{
		{Fd: int32(doorbell), Events: unix.POLLIN},
		{Fd: int32(st.stopFD), Events: unix.POLLIN},
		{Fd: int32(st.txWake), Events: unix.POLLIN},
	}
	var drain [8]byte
	fn()
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			st.n.log.Error("virtio-net: poll", "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 {
			_, _ = unix.Read(doorbell, drain[:])
		}
		if fds[2].Revents != 0 && doorbell == st.tx.Doorbell {
			_, _ = unix.Read(st.txWake, drain[:])
		}
		fn()
	}
}

// postRx lends every available receive chain to the model.
func (st *activeState) postRx() {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	q := st.rx.Queue
	returned := false
	for {
		st.rxBufs = st.rxBufs[:0]
		empty := false
		for len(st.rxBufs) < batch {
			ok, err := q.PopInto(st.mem, &st.rxChain)
			if err != nil {
				if ce, isChain := errChain(err); isChain {
					st.n.Stats.RxBadChains.Add(1)
					_ = q.PutUsed(st.mem, ce.Head, 0)
					returned = true
					continue
				}
				st.n.log.Warn("virtio-net: receive queue broken by the driver", "err", err)
				return
			}
			if !ok {
				empty = true
				break
			}
			c := &st.rxChain
			if len(c.Readable) > 0 || c.WritableLen() < hdrLen {
				// A receive buffer must be device-writable and hold at least
				// the header (§5.1.6.3.1).
				st.n.Stats.RxBadChains.Add(1)
				_ = q.PutUsed(st.mem, c.Head, 0)
				returned = true
				continue
			}
			segs, gpas := st.lent[c.Head][:0], st.lentGPA[c.Head][:0]
			for _, s := range c.Writable {
				segs, gpas = append(segs, s.Buf), append(gpas, s.GPA)
			}
			st.lent[c.Head], st.lentGPA[c.Head] = segs, gpas
			st.rxBufs = append(st.rxBufs, nic.Buf{ID: c.Head, Segs: segs, GPAs: gpas})
		}
		if len(st.rxBufs) > 0 {
			if k := st.n.cfg.Model.PostRx(st.rxBufs); k < len(st.rxBufs) {
				// The model is full: the rest stay in the avail ring.
				_ = q.Undo(uint16(len(st.rxBufs) - k))
				break
			}
		}
		if empty {
			more, err := q.EnableNotification(st.mem)
			if err != nil || !more {
				break
			}
		}
	}
	if returned {
		st.publish(q, st.rx.Interrupt)
	}
}

// RxFrame implements nic.Sink: one frame landed in len(bufs) buffers.
func (st *activeState) RxFrame(bufs []nic.Used) {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	q := st.rx.Queue
	putNumBuffers(st.lent[bufs[0].ID], uint16(len(bufs)))
	var bytes uint64
	for _, u := range bufs {
		if err := q.PutUsed(st.mem, u.ID, u.Written); err != nil {
			st.n.log.Warn("virtio-net: rx used", "err", err)
		}
		bytes += uint64(u.Written)
	}
	st.n.Stats.RxFrames.Add(1)
	st.n.Stats.RxBytes.Add(bytes - hdrLen)
	st.publish(q, st.rx.Interrupt)
}

// TxDone implements nic.Sink. It may be called from inside Transmit (on
// the tx worker) or from a model goroutine; either way the tx worker
// publishes the used entries, so the transmit queue has one owner.
func (st *activeState) TxDone(ids []uint16) {
	st.txDoneMu.Lock()
	st.txDone = append(st.txDone, ids...)
	st.txDoneMu.Unlock()
	signalFD(st.txWake)
}

// processTx sends every available frame and publishes completions.
func (st *activeState) processTx() {
	q := st.tx.Queue
	for {
		_ = q.DisableNotification(st.mem)
		st.txFrames = st.txFrames[:0]
		popped := false
		for len(st.txFrames) < batch {
			ok, err := q.PopInto(st.mem, &st.txChain)
			if err != nil {
				if ce, isChain := errChain(err); isChain {
					st.n.Stats.TxBadChains.Add(1)
					st.completeTx(ce.Head)
					continue
				}
				st.n.log.Warn("virtio-net: transmit queue broken by the driver", "err", err)
				return
			}
			if !ok {
				break
			}
			popped = true
			c := &st.txChain
			if len(c.Writable) > 0 || c.ReadableLen() < hdrLen {
				st.n.Stats.TxBadChains.Add(1)
				st.completeTx(c.Head)
				continue
			}
			segs := make([][]byte, 0, len(c.Readable))
			gpas := make([]uint64, 0, len(c.Readable))
			var n uint64
			for _, s := range c.Readable {
				segs, gpas = append(segs, s.Buf), append(gpas, s.GPA)
				n += uint64(len(s.Buf))
			}
			st.txFrames = append(st.txFrames, nic.Buf{ID: c.Head, Segs: segs, GPAs: gpas})
			st.n.Stats.TxFrames.Add(1)
			st.n.Stats.TxBytes.Add(n - hdrLen)
		}
		if len(st.txFrames) > 0 {
			st.n.cfg.Model.Transmit(st.txFrames)
		}
		st.publishTx()
		if !popped {
			more, err := q.EnableNotification(st.mem)
			if err != nil || !more {
				return
			}
		}
	}
}

func (st *activeState) completeTx(head uint16) {
	st.txDoneMu.Lock()
	st.txDone = append(st.txDone, head)
	st.txDoneMu.Unlock()
}

// publishTx returns completed transmit chains to the driver.
func (st *activeState) publishTx() {
	st.txDoneMu.Lock()
	done := st.txDone
	st.txDone = nil
	st.txDoneMu.Unlock()
	if len(done) == 0 {
		return
	}
	q := st.tx.Queue
	for _, id := range done {
		if err := q.PutUsed(st.mem, id, 0); err != nil {
			st.n.log.Warn("virtio-net: tx used", "err", err)
		}
	}
	st.publish(q, st.tx.Interrupt)
}

// publish makes put used entries visible and interrupts the driver if it
// asked to be (EVENT_IDX).
func (st *activeState) publish(q *queue.Queue, irq pcitransport.Interrupt) {
	if err := q.PublishUsed(st.mem); err != nil {
		st.n.log.Warn("virtio-net: publish used", "err", err)
		return
	}
	if need, err := q.NeedsNotification(st.mem); err == nil && need {
		_ = irq.Trigger()
	}
}
