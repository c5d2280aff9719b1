// The transmit path: the tx worker's rounds and the completions the model
// reports (nic.Sink.TxDone).

package virtionet

import (
	"time"

	"github.com/govmm/govmm/devices/nic"
)

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

// txRound is the tx worker's round: processTx, and whether it found
// frames (a kick that found none is spurious: doorbellGuard).
func (st *activeState) txRound() (time.Duration, bool) {
	st.txWorked = false
	again := st.processTx()
	return again, st.txWorked
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
			st.txWorked = true
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
			st.model.Transmit(st.txFrames)
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
			if next := st.txPoll.sent(now); next > 0 {
				return next
			}
			sent = false // no linger: the look is now
		}
		if next := st.txPoll.idle(now); next > 0 {
			return next
		}
		if st.txOwed {
			if l := st.txPoll.linger; l > 0 {
				return l // resolved first: kicks come back on at the next look
			}
			st.resolveTxInterrupt()
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
