package virtionet

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
)

// batch bounds how many chains move per call into the model.
const batch = 64

// rxLowWater is how many receive buffers the model must hold for the
// device to leave the driver's refill kicks off. Above it, completed frames
// pull the driver's new buffers from the avail ring (as QEMU's virtio-net
// reads the ring only when it needs a buffer); below it, kicks are on, so
// a model running dry is always woken. 64 Linux mergeable buffers (1.5 KiB
// at least) hold a 64 KiB GSO frame; a model that counts its room
// differently says when they do not (nic.Sink.RxStarved).
const rxLowWater = 64

// maxChainDescs bounds the descriptors of one receive or transmit chain.
// Linux's virtio_net never uses more than MAX_SKB_FRAGS+2 (19 by default,
// 47 at the largest CONFIG_MAX_SKB_FRAGS): a transmit skb's header, linear
// part and fragments; a "big packets" receive buffer likewise. A longer
// chain goes back to the driver as a bad chain. Without the bound a guest
// could post 65,536-descriptor indirect chains, each held as segment
// arrays while lent (tens of MiB of host heap per ring).
const maxChainDescs = 64

// keepLentSegs is the segment capacity kept per receive head once its
// buffer is back: what a Linux chain needs, no more.
const keepLentSegs = 4

// txLinger is how long the tx worker, having drained the ring, keeps the
// driver's kicks off and waits before looking again. A sending guest keeps
// adding frames: they are picked up without a kick (an exit), and their
// completions are published together (fewer interrupts), as QEMU's
// bottom-half transmit and vhost-net's busy polling do. Only when a look
// after the wait finds nothing are kicks turned back on. The first frame
// after a pause is sent at once; one arriving in the window waits at most
// this long.
const txLinger = 50 * time.Microsecond

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
	held    []uint16   // postings of each head collected for or held by the model
	// rxRefused: the model refused buffers (its pin cap), which stay in
	// the avail ring. The driver will not kick for buffers it already made
	// available, so the next completed frame, which frees room in the
	// model, re-runs postRx instead.
	rxRefused bool
	rxChain   queue.Chain
	rxBufs    []nic.Buf
	// rxLent counts buffers the model holds; rxLow is the kick threshold
	// (rxLowWater, or half the ring if smaller); rxQuiet: kicks are off.
	rxLent, rxLow int
	rxQuiet       bool
	// rxCo defers receive interrupts that come too soon (Moderation.RxCoalesce).
	rxCo coalescer
	// rxLimit is the receive rate limit (nil: none), charged for what
	// landed; while it is in debt no buffers are lent, and the rx worker
	// (woken through rxWake) looks again after rxPause.
	rxLimit *ratelimit.Limiter
	rxPause time.Duration
	rxWake  int // eventfd
	// rxStarved: the model said it cannot take a frame with what it holds
	// (Sink.RxStarved); until it completes one, kicks stay on whatever
	// rxLent says (its buffers may be too small to count on).
	rxStarved bool

	txChain  queue.Chain
	txFrames []nic.Buf
	txDoneMu sync.Mutex
	txDone   []uint16
	// inTransmit: the tx worker is inside Model.Transmit and will publish
	// completions when it returns (under txDoneMu).
	inTransmit bool
	txSpare    []uint16 // publishTx's other list (tx worker only)
	txSegs     [][]byte // segment arena of the current batch (tx worker only)
	txGPAs     []uint64
	// txOwed: a completion interrupt was due for the used entries from
	// txOwedSince on and is deferred to the tx worker's next round (tx
	// worker only): see resolveTxInterrupt.
	txOwed      bool
	txOwedSince uint16
	txWake      int // eventfd: asynchronous TxDone happened
	txPoll      txPoller
	txLimit     *ratelimit.Limiter // transmit rate limit (nil: none; tx worker only)

	// needsReset tells the driver that a queue it broke needs a device
	// reset (pcitransport.Activation.NeedsReset); rxBroken/txBroken make
	// that, and its log line, happen once per queue.
	needsReset         func()
	rxBroken, txBroken atomic.Bool

	// stopped is set, under both rxMu and txDoneMu, when the device is
	// reset; completions the model reports after that are dropped.
	stopped bool

	// Interrupts sent per queue, for the state dump: set against the
	// guest's /proc/interrupts they tell a lost interrupt from a guest
	// that stopped processing.
	rxIRQs, txIRQs atomic.Uint64

	stopFD int
	wg     sync.WaitGroup
}

func newActive(n *Net, mem *guestmem.Memory, rx, tx *pcitransport.ActiveQueue, cfg nic.Config) (*activeState, error) {
	qs := int(rx.Queue.Size())
	st := &activeState{n: n, mem: mem, rx: *rx, tx: *tx, cfg: cfg, lent: make([][][]byte, qs), lentGPA: make([][]uint64, qs), held: make([]uint16, qs),
		rxLow: min(rxLowWater, qs/2), rxCo: coalescer{gap: n.cfg.Moderation.RxCoalesce}, txPoll: newTxPoller(n.cfg.Moderation.TxPoll)}
	st.rxLimit, st.txLimit = n.cfg.RxLimit, n.cfg.TxLimit
	rx.Queue.SetMaxChainDescs(maxChainDescs)
	tx.Queue.SetMaxChainDescs(maxChainDescs)
	var err error
	if st.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	if st.txWake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(st.stopFD)
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	if st.rxWake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(st.stopFD)
		unix.Close(st.txWake)
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	return st, nil
}

func (st *activeState) startWorkers() {
	st.wg.Add(2)
	go st.worker(st.rx.Doorbell, st.rxWake, st.postRx)
	go st.worker(st.tx.Doorbell, st.txWake, st.processTx)
}

// stop ends the activation. A model may report completions after its Stop
// returned (pair delivers a frame it took before Stop and calls the sink
// after dropping its lock): those must not write used elements into queues
// the transport is about to reset and guest memory the driver may reuse,
// nor signal txWake once it is closed, so they are dropped from here on.
// Then the workers stop.
func (st *activeState) stop() {
	st.rxMu.Lock()
	st.txDoneMu.Lock()
	st.stopped = true
	st.txDoneMu.Unlock()
	st.rxCo.stop()
	st.rxMu.Unlock()
	st.stopWorkers()
}

func (st *activeState) stopWorkers() {
	signalFD(st.stopFD)
	st.wg.Wait()
	unix.Close(st.stopFD)
	unix.Close(st.txWake)
	unix.Close(st.rxWake)
}

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

func signalFD(fd int) { _, _ = unix.Write(fd, one) }

// worker runs fn once at start (buffers may already be waiting) and then
// on every doorbell, or wake-up from the device itself (a transmit
// completion, a receive rate limit that wants a look later), until
// stopped. When fn returns a duration, it wants to run again after that
// long even without a doorbell (kicks are off, or a rate limit is in debt).
func (st *activeState) worker(doorbell, wake int, fn func() time.Duration) {
	defer st.wg.Done()
	if st.n.cfg.WorkerThread != nil {
		runtime.LockOSThread() // the thread exits with the goroutine: its placement goes too
		st.n.cfg.WorkerThread()
	}
	fds := []unix.PollFd{
		{Fd: int32(doorbell), Events: unix.POLLIN},
		{Fd: int32(st.stopFD), Events: unix.POLLIN},
		{Fd: int32(wake), Events: unix.POLLIN},
	}
	var drain [8]byte
	again := fn()
	for {
		var timeout *unix.Timespec
		if again > 0 {
			ts := unix.NsecToTimespec(int64(again))
			timeout = &ts
		}
		for i := range fds {
			fds[i].Revents = 0
		}
		if _, err := unix.Ppoll(fds, timeout, nil); err != nil {
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
		if fds[2].Revents != 0 {
			_, _ = unix.Read(wake, drain[:])
		}
		again = fn()
	}
}

// postRx lends every available receive chain to the model (rx worker, on
// a kick or a wake-up). It returns how long a receive rate limit wants to
// wait before lending more (0: not limited).
func (st *activeState) postRx() time.Duration {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	st.pullRx(0)
	return st.rxPause
}

// rxLimited reports whether the receive rate limit is in debt; the rx
// worker is then woken to wait it out (rxPause) and lend again.
func (st *activeState) rxLimited() bool {
	if !st.rxLimit.Limited() {
		return false
	}
	wasPaused := st.rxPause > 0
	st.rxPause = st.rxLimit.Wait(time.Now())
	if st.rxPause > 0 && !wasPaused {
		signalFD(st.rxWake)
	}
	return st.rxPause > 0
}

// pullRx lends every available receive chain to the model, then turns the
// driver's kicks off while the model holds plenty of buffers and on when
// it runs low. limit > 0 pops at most that many chains: after the model
// refused buffers, each completed frame frees room for about as many as it
// used, and popping (walking) more would only walk chains again that the
// model refuses again, on every frame. Called with rxMu held.
func (st *activeState) pullRx(limit int) {
	if st.rxLimited() {
		return // the model keeps what it holds; nothing more until the debt is paid
	}
	q := st.rx.Queue
	returned := false
	st.rxBufs = st.rxBufs[:0]
	st.rxRefused = false
	popped := 0
	for {
		empty, full := false, false
		for len(st.rxBufs) < batch {
			if limit > 0 && popped == limit {
				// More may wait: the next completed frame pulls again.
				st.rxRefused = true
				break
			}
			popped++
			ok, err := q.PopInto(st.mem, &st.rxChain)
			if err != nil {
				ce, isChain := errChain(err)
				if !isChain {
					st.queueBroken(&st.rxBroken, "receive", err)
					return
				}
				if full = !st.returnBad(ce.Head); full {
					break
				}
				returned = true
				continue
			}
			if !ok {
				empty = true
				break
			}
			c := &st.rxChain
			if len(c.Readable) > 0 || c.WritableLen() < hdrLen {
				// A receive buffer must be device-writable and hold at least
				// the header (§5.1.6.3.1).
				if full = !st.returnBad(c.Head); full {
					break
				}
				returned = true
				continue
			}
			segs, gpas := st.lent[c.Head][:0], st.lentGPA[c.Head][:0]
			if st.held[c.Head] > 0 {
				// The driver made this head available again while an earlier
				// posting is still with the model, whose Buf shares these
				// arrays: build the new one elsewhere, or the model's
				// segments would change under it (the zero-copy model then
				// writes the header through a segment it never checked).
				segs, gpas = nil, nil
			}
			for _, s := range c.Writable {
				segs, gpas = append(segs, s.Buf), append(gpas, s.GPA)
			}
			st.lent[c.Head], st.lentGPA[c.Head] = segs, gpas
			st.held[c.Head]++
			st.rxBufs = append(st.rxBufs, nic.Buf{ID: c.Head, Segs: segs, GPAs: gpas})
		}
		if full || !st.lend(0) {
			st.rxRefused = true
			break // the model is full: the rest stay in the avail ring
		}
		if limit > 0 && popped == limit {
			break
		}
		if empty {
			if st.rxLent >= st.rxLow && !st.rxStarved {
				// Plenty: RxFrame pulls what the driver adds meanwhile, a
				// kick per refill would be an exit for nothing.
				_ = q.DisableNotification(st.mem)
				st.rxQuiet = true
				break
			}
			st.rxQuiet = false
			more, err := q.EnableNotification(st.mem)
			if err != nil || !more {
				break
			}
		}
	}
	if returned {
		st.publish(q, st.rx.Interrupt, &st.rxIRQs)
	}
}

// returnBad gives a chain that cannot be a receive buffer back to the
// driver with length 0. The buffers popped before it are lent first: the
// ones the model refuses are put back with Undo, which may only rewind
// over chains not yet returned, so then this chain goes back on the avail
// ring with them (returning it first made it come back twice and lost a
// good buffer) and returnBad reports false.
func (st *activeState) returnBad(head uint16) bool {
	if !st.lend(1) {
		return false
	}
	st.n.Stats.RxBadChains.Add(1)
	_ = st.rx.Queue.PutUsed(st.mem, head, 0)
	return true
}

// lend hands the collected receive buffers to the model. Those it refuses
// go back on the avail ring, together with the extra chains popped after
// them; lend reports whether the model took them all.
func (st *activeState) lend(extra uint16) bool {
	k := len(st.rxBufs)
	if k > 0 {
		k = st.n.cfg.Model.PostRx(st.rxBufs)
	}
	for _, b := range st.rxBufs[k:] {
		st.held[b.ID]--
		st.releaseLent(b.ID)
	}
	st.rxLent += k
	refused := len(st.rxBufs) - k
	st.rxBufs = st.rxBufs[:0]
	if refused == 0 {
		return true
	}
	_ = st.rx.Queue.Undo(uint16(refused) + extra)
	return false
}

// releaseLent drops the segment arrays of a receive head no longer lent
// if a large chain grew them, so host memory follows what the model holds
// now, not the largest chains the driver ever posted.
func (st *activeState) releaseLent(head uint16) {
	if st.held[head] == 0 && cap(st.lent[head]) > keepLentSegs {
		st.lent[head], st.lentGPA[head] = nil, nil
	}
}

// RxFrames implements nic.Sink: each frame landed in its buffers; all of
// them are published with one used idx store and one interrupt decision.
func (st *activeState) RxFrames(b *nic.RxBatch) {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	if st.stopped || b.Len() == 0 {
		return
	}
	q := st.rx.Queue
	var bytes uint64
	for i := range b.Len() {
		bufs := b.Frame(i)
		putNumBuffers(st.lent[bufs[0].ID], uint16(len(bufs)))
		for _, u := range bufs {
			if st.held[u.ID] > 0 {
				st.held[u.ID]--
			}
			st.releaseLent(u.ID)
			if err := q.PutUsed(st.mem, u.ID, u.Written); err != nil {
				st.queueBroken(&st.rxBroken, "receive", err)
			}
			bytes += uint64(u.Written)
		}
	}
	st.rxLent = max(0, st.rxLent-b.Buffers())
	st.rxStarved = false
	st.rxLimit.Charge(bytes-uint64(b.Len())*hdrLen, uint64(b.Len()), time.Now())
	st.n.Stats.RxFrames.Add(uint64(b.Len()))
	st.n.Stats.RxBatches.Add(1)
	st.n.Stats.RxBytes.Add(bytes - uint64(b.Len())*hdrLen)
	since := q.UsedIdx()
	if st.publishUsed(q) && st.rxCo.allow(time.Now(), since, st.rxCoalesced) {
		_ = st.rx.Interrupt.Trigger()
		st.rxIRQs.Add(1)
	}
	switch {
	case st.rxLent < st.rxLow:
		// The model runs low with kicks off: take what the driver added
		// since. This also turns kicks back on when the ring is empty, so
		// the model is never left waiting for buffers nobody will fetch.
		// (Models call RxFrames without the lock their PostRx takes:
		// nic.Sink.)
		st.pullRx(0)
	case st.rxRefused:
		// The model refused buffers for its cap and has room for about
		// as many as it just used.
		st.pullRx(b.Buffers())
	}
}

// rxCoalesced sends the receive interrupt the coalescer deferred, unless
// the driver reaped the frames meanwhile (timer goroutine).
func (st *activeState) rxCoalesced() {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	since, ok := st.rxCo.take()
	if st.stopped || !ok {
		return
	}
	if due, err := st.rx.Queue.StillNeedsNotification(st.mem, since); err == nil && due {
		_ = st.rx.Interrupt.Trigger()
		st.rxIRQs.Add(1)
		st.rxCo.sent(time.Now())
	}
}

// RxStarved implements nic.Sink: the model cannot fit a frame into the
// buffers it holds (64 Linux mergeable buffers of 1.5 KiB are 64 KiB of
// NIC room to the 82599 model, one short of a 64 KiB GSO frame), so the
// buffers the driver added while kicks were off are lent now, and kicks go
// back on until the model completes a frame.
func (st *activeState) RxStarved() {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	if st.stopped {
		return
	}
	st.rxStarved = true
	st.pullRx(0)
}

// TxDone implements nic.Sink. It may be called from inside Transmit (on
// the tx worker) or from a model goroutine; either way the tx worker
// publishes the used entries, so the transmit queue has one owner.
func (st *activeState) TxDone(ids []uint16) {
	st.txDoneMu.Lock()
	defer st.txDoneMu.Unlock()
	if st.stopped {
		return
	}
	st.txDone = append(st.txDone, ids...)
	if !st.inTransmit {
		// Otherwise the tx worker publishes these right after Transmit
		// returns: waking it again would cost an eventfd write, a poll
		// wake-up and a read per batch for nothing.
		signalFD(st.txWake)
	}
}

// processTx sends every available frame and publishes completions. It
// returns when to look again while it leaves kicks off (the adaptive
// polling window, txPoller), 0 when kicks are on again.
func (st *activeState) processTx() time.Duration {
	q := st.tx.Queue
	st.resolveTxInterrupt()
	sent := false
	for {
		_ = q.DisableNotification(st.mem)
		st.txFrames = st.txFrames[:0]
		st.txSegs, st.txGPAs = st.txSegs[:0], st.txGPAs[:0]
		popped := false
		var limited time.Duration
		for len(st.txFrames) < batch {
			if st.txLimit.Limited() {
				// Frames over the limit stay in the guest's ring, kicks
				// off, until the bucket has refilled: nothing queues here.
				if limited = st.txLimit.Wait(time.Now()); limited > 0 {
					break
				}
			}
			ok, err := q.PopInto(st.mem, &st.txChain)
			if err != nil {
				if ce, isChain := errChain(err); isChain {
					st.n.Stats.TxBadChains.Add(1)
					st.completeTx(ce.Head)
					continue
				}
				st.queueBroken(&st.txBroken, "transmit", err)
				return 0
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
			// Every frame's segments live in one arena per batch, reused: a
			// model may use them only during Transmit (nic.Model). Sub-slices
			// taken before the arena grows keep pointing at the old array,
			// which still holds them.
			start := len(st.txSegs)
			var n uint64
			for _, s := range c.Readable {
				st.txSegs, st.txGPAs = append(st.txSegs, s.Buf), append(st.txGPAs, s.GPA)
				n += uint64(len(s.Buf))
			}
			end := len(st.txSegs)
			st.txFrames = append(st.txFrames, nic.Buf{ID: c.Head, Segs: st.txSegs[start:end:end], GPAs: st.txGPAs[start:end:end]})
			st.n.Stats.TxFrames.Add(1)
			st.n.Stats.TxBytes.Add(n - hdrLen)
			st.txLimit.Charge(n-hdrLen, 1, time.Now())
		}
		if len(st.txFrames) > 0 {
			st.txDoneMu.Lock()
			st.inTransmit = true // cleared by publishTx, under the same lock
			st.txDoneMu.Unlock()
			st.n.cfg.Model.Transmit(st.txFrames)
		}
		st.publishTx()
		if limited > 0 {
			return limited
		}
		if popped {
			sent = true
			continue
		}
		now := time.Now()
		if sent {
			return st.txPoll.sent(now)
		}
		if next := st.txPoll.idle(now); next > 0 {
			return next
		}
		if st.txOwed {
			return txLinger // resolved first: kicks come back on at the next look
		}
		more, err := q.EnableNotification(st.mem)
		if err != nil || !more {
			return 0
		}
	}
}

// resolveTxInterrupt sends the completion interrupt deferred by the
// previous round if the driver still wants it. Completing a frame at once
// made every transmit with nothing else pending cost an interrupt: Linux's
// start_xmit re-arms used_event for its pending frames (none left), so the
// next completion crosses it. Deferred by up to txLinger, the completions
// are usually reaped by the guest's next start_xmit, which re-arms
// used_event past them, and the interrupt is not needed (as QEMU's later,
// batched completions avoid it).
func (st *activeState) resolveTxInterrupt() {
	if !st.txOwed {
		return
	}
	st.txOwed = false
	if due, err := st.tx.Queue.StillNeedsNotification(st.mem, st.txOwedSince); err == nil && due {
		_ = st.tx.Interrupt.Trigger()
		st.txIRQs.Add(1)
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
	// Two lists take turns, so completions cost no allocation: TxDone
	// fills one while this goroutine (the only user of txSpare) drains the
	// other.
	done := st.txDone
	st.txDone = st.txSpare[:0]
	st.inTransmit = false
	st.txDoneMu.Unlock()
	defer func() { st.txSpare = done }()
	if len(done) == 0 {
		return
	}
	q := st.tx.Queue
	for _, id := range done {
		if err := q.PutUsed(st.mem, id, 0); err != nil {
			st.queueBroken(&st.txBroken, "transmit", err)
		}
	}
	// Published at once (the guest reaps them on its next transmit), the
	// interrupt deferred to the next round (resolveTxInterrupt).
	since := q.UsedIdx()
	if st.publishUsed(q) && !st.txOwed {
		st.txOwed, st.txOwedSince = true, since
	}
}

// queueBroken reports a queue the driver broke (a ring-level violation,
// latched by package queue until reset): logged once, and the device asks
// for a reset (DEVICE_NEEDS_RESET with a configuration-change interrupt,
// §2.1.2) instead of warning on every buffer of every frame.
func (st *activeState) queueBroken(once *atomic.Bool, which string, err error) {
	if once.Swap(true) {
		return
	}
	st.n.Stats.BrokenQueues.Add(1)
	st.n.log.Warn("virtio-net: "+which+" queue broken by the driver; device needs reset", "err", err)
	if st.needsReset != nil {
		st.needsReset()
	}
}

// publish makes put used entries visible and interrupts the driver if it
// asked to be (EVENT_IDX).
func (st *activeState) publish(q *queue.Queue, irq pcitransport.Interrupt, sent *atomic.Uint64) {
	if st.publishUsed(q) {
		_ = irq.Trigger()
		sent.Add(1)
	}
}

// publishUsed makes put used entries visible and reports whether the
// driver asked to be interrupted for them.
func (st *activeState) publishUsed(q *queue.Queue) bool {
	if err := q.PublishUsed(st.mem); err != nil {
		if q == st.rx.Queue {
			st.queueBroken(&st.rxBroken, "receive", err)
		} else {
			st.queueBroken(&st.txBroken, "transmit", err)
		}
		return false
	}
	need, err := q.NeedsNotification(st.mem)
	return err == nil && need
}

// debugState describes the activation for a state dump.
func (st *activeState) debugState() string {
	st.rxMu.Lock()
	held := 0
	for _, h := range st.held {
		held += int(h)
	}
	rx := fmt.Sprintf("rx: %s; interrupts sent %d; lent to the model %d (counted %d, kicks off above %d: off %v), refused pending %v",
		st.rx.Queue.Debug(st.mem), st.rxIRQs.Load(), held, st.rxLent, st.rxLow, st.rxQuiet, st.rxRefused)
	st.rxMu.Unlock()
	st.txDoneMu.Lock()
	pending := len(st.txDone)
	st.txDoneMu.Unlock()
	// The tx queue's private state belongs to the tx worker: only the
	// rings are read.
	tx := fmt.Sprintf("tx: %s; interrupts sent %d; completions not yet published %d", st.tx.Queue.DriverView(st.mem), st.txIRQs.Load(), pending)
	s := rx + "\n" + tx
	if d, ok := st.n.cfg.Model.(nic.Debugger); ok {
		s += "\nmodel: " + d.DebugState()
	}
	return s
}
