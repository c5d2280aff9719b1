// The receive path: lending the driver's buffers to the model and
// publishing the frames it reports (nic.Sink.RxFrames, RxStarved).

package virtionet

import (
	"time"

	"github.com/govmm/govmm/devices/nic"
)

// postRx lends every available receive chain to the model (rx worker, on
// a kick or a wake-up). It returns how long a receive rate limit wants to
// wait before lending more (0: not limited).
// worked reports whether the kick found chains to take.
func (st *activeState) postRx() (again time.Duration, worked bool) {
	st.rxMu.Lock()
	defer st.rxMu.Unlock()
	worked = st.pullRx(0) > 0
	return st.rxPause, worked
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
// model refuses again, on every frame. It returns how many chains it
// popped. Called with rxMu held.
func (st *activeState) pullRx(limit int) (popped int) {
	if st.rxLimited() {
		return 0 // the model keeps what it holds; nothing more until the debt is paid
	}
	q := st.rx.Queue
	returned := false
	st.rxBufs = st.rxBufs[:0]
	st.rxRefused = false
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
					return popped
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
			// The model is at its cap: the rest stay in the avail ring, and
			// the driver's kicks stay off, since it has room again only when
			// it completes a frame, and RxFrames pulls then. A kick per
			// refill would be an exit, and a walk of chains it refuses
			// again, for nothing (a Linux driver without mergeable buffers
			// posts 72 KiB chains, of which a 1 MiB cap holds 14).
			st.rxRefused = true
			_ = q.DisableNotification(st.mem)
			st.rxQuiet = true
			break
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
	return popped
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
		k = st.model.PostRx(st.rxBufs)
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
	// (Models call RxFrames without the lock their PostRx takes: nic.Sink.)
	switch {
	case st.rxRefused:
		// The model refused buffers for its cap and has room for about
		// as many as it just used. First: a model whose cap holds fewer
		// buffers than rxLow would otherwise walk (and have refused) a
		// whole batch of chains on every frame.
		st.pullRx(b.Buffers())
	case st.rxLent < st.rxLow:
		// The model runs low with kicks off: take what the driver added
		// since. This also turns kicks back on when the ring is empty, so
		// the model is never left waiting for buffers nobody will fetch.
		st.pullRx(0)
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
