package virtionet

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/internal/osthread"
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
	pair   int       // queue pair index (receiveq pair+1, transmitq pair+1)
	model  nic.Model // this pair's backend
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
	txWorked    bool               // this round popped a chain (tx worker only)

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

func newActive(n *Net, pair int, mem *guestmem.Memory, rx, tx *pcitransport.ActiveQueue, cfg nic.Config) (*activeState, error) {
	qs := int(rx.Queue.Size())
	st := &activeState{n: n, pair: pair, model: n.models[pair], mem: mem, rx: *rx, tx: *tx, cfg: cfg, lent: make([][][]byte, qs), lentGPA: make([][]uint64, qs), held: make([]uint16, qs),
		rxLow: min(rxLowWater, qs/2), rxCo: coalescer{gap: n.cfg.Moderation.RxCoalesce}, txPoll: newTxPoller(n.cfg.Moderation.TxPoll, n.cfg.Moderation.linger())}
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
	go st.worker("vnet-rx", st.rx.Doorbell, st.rxWake, st.postRx)
	go st.worker("vnet-tx", st.tx.Doorbell, st.txWake, st.txRound)
}

// stop ends the activation. A model that breaks the nic.Model contract may
// still report completions after its Stop returned (nictest catches that):
// those must not write used elements into queues
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

func signalFD(fd int) { _ = osthread.Signal(fd) }

// worker runs fn once at start (buffers may already be waiting) and then
// on every doorbell, or wake-up from the device itself (a transmit
// completion, a receive rate limit that wants a look later), until
// stopped. When fn returns a duration, it wants to run again after that
// long even without a doorbell (kicks are off, or a rate limit is in
// debt); it also says whether it found work, so that a doorbell storm
// (kicks with nothing new) costs a bounded share of a CPU (doorbellGuard).
func (st *activeState) worker(name string, doorbell, wake int, fn func() (time.Duration, bool)) {
	defer st.wg.Done()
	// The worker lives in its wait: a thread of its own that blocks
	// without waking the Go runtime's monitor each round (osthread).
	defer osthread.Own(name)()
	if st.n.cfg.WorkerThread != nil {
		st.n.cfg.WorkerThread()
	}
	fds := []unix.PollFd{
		{Fd: int32(doorbell), Events: unix.POLLIN},
		{Fd: int32(st.stopFD), Events: unix.POLLIN},
		{Fd: int32(wake), Events: unix.POLLIN},
	}
	var guard doorbellGuard
	var w osthread.Waiter
	again, _ := fn()
	var due time.Time // when fn wants to run again without an event (zero: never)
	if again > 0 {
		due = time.Now().Add(again)
	}
	for {
		// While the guard holds the doorbell shut, kicks pile up in its
		// eventfd counter and are taken together when it opens.
		now := time.Now()
		wait, shut := guard.shut(now)
		fds[0].Events = unix.POLLIN
		timeout := time.Duration(-1)
		if !due.IsZero() {
			timeout = max(0, due.Sub(now))
		}
		if shut {
			fds[0].Events = 0
			if timeout < 0 || wait < timeout {
				timeout = wait
			}
		}
		for i := range fds {
			fds[i].Revents = 0
		}
		n, err := w.Wait(fds, timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			st.n.log.Error("virtio-net: poll", "err", err)
			return
		}
		if n == 0 && (due.IsZero() || time.Now().Before(due)) && !shut {
			continue // the wait's own bound, not fn's time
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 {
			osthread.Drain(doorbell)
		}
		if fds[2].Revents != 0 {
			osthread.Drain(wake)
		}
		kicked := fds[0].Revents != 0
		var worked bool
		again, worked = fn()
		due = time.Time{}
		if again > 0 {
			due = time.Now().Add(again)
		}
		if kicked && !worked {
			st.n.Stats.SpuriousKicks.Add(1)
			if guard.spurious(time.Now()) {
				st.n.Stats.KickThrottles.Add(1)
			}
		}
	}
}

// A doorbell storm: a guest ringing a doorbell with nothing new behind it,
// in a loop. Every kick wakes the worker for a look that finds nothing;
// with the doorbell's exit handled in the kernel (ioeventfd), nothing else
// bounds how often. The guard lets spuriousBudget such kicks through per
// spuriousWindow and then stops listening to the doorbell for the rest of
// the window: kicks are not lost (the eventfd counts them) and a real one
// waits at most the window. Linux drivers kick only for new buffers, so
// they never meet it. Measured in the nested test host (TestHostileGuest,
// 15,500 kicks/s): a budget of 64 still let the device threads spend half
// a core (6,000 looks/s at ~80 µs each there); 8 keeps them to 800 looks/s.
const (
	spuriousWindow = 10 * time.Millisecond
	spuriousBudget = 8
)

// doorbellGuard counts one worker's spurious kicks (worker goroutine only).
type doorbellGuard struct {
	start time.Time // the current window
	n     int       // spurious kicks in it
}

// spurious records a kick that found nothing and reports whether it used
// up the window's budget (the doorbell is shut for the rest of it).
func (g *doorbellGuard) spurious(now time.Time) bool {
	if now.Sub(g.start) >= spuriousWindow {
		g.start, g.n = now, 0
	}
	g.n++
	return g.n == spuriousBudget
}

// shut reports whether the doorbell is shut now, and for how long.
func (g *doorbellGuard) shut(now time.Time) (time.Duration, bool) {
	if g.n < spuriousBudget {
		return 0, false
	}
	left := spuriousWindow - now.Sub(g.start)
	if left <= 0 {
		g.start, g.n = now, 0
		return 0, false
	}
	return left, true
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
	st.n.log.Warn("virtio-net: "+which+" queue broken by the driver; device needs reset", "pair", st.pair, "err", err)
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
	if d, ok := st.model.(nic.Debugger); ok {
		s += "\nmodel: " + d.DebugState()
	}
	return s
}
