// Zero-copy receive: RxState, RxTarget, RxComplete and RxAbort.

package ixgbeemu

import "encoding/binary"

// RxState says what a frame arriving at an rx queue now would meet. The
// VMM's port reader uses it to decide whether to read from the host side
// at all.
type RxState int

const (
	// RxReady: RxTarget would hand out buffers for a maximum-size frame.
	RxReady RxState = iota
	// RxNoRoom: the queue is enabled and well formed but the driver has
	// not posted enough free descriptors yet. A reader should wait for
	// Config.RxNotify (the host side buffers frames meanwhile, as the
	// 82599's 512 KB receive packet buffer would) rather than drop.
	RxNoRoom
	// RxDrop: receive is disabled (RXCTRL.RXEN, RXDCTL.ENABLE), the ring
	// is misconfigured, or the queue uses a descriptor type the zero-copy
	// path does not serve (header split). Frames go through Receive,
	// which copies them or drops and counts them.
	RxDrop
)

func (s RxState) String() string {
	switch s {
	case RxReady:
		return "ready"
	case RxNoRoom:
		return "no-room"
	case RxDrop:
		return "drop"
	}
	return "RxState(?)"
}

// RxState reports the receive state of queue (RxDrop for a bad queue).
func (d *Device) RxState(queue int) RxState {
	if d.checkQueue(queue) != nil {
		return RxDrop
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	q := d.rxq[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	_, _, _, _, st := d.rxTargetCheck(q)
	return st
}

// rxTargetCheck validates queue q for the zero-copy path. Called with d.mu
// read-locked and q.mu held.
func (d *Device) rxTargetCheck(q *rxQueue) (base uint64, size uint32, bsize, need int, st RxState) {
	if d.store[regRXCTRL/4]&rxctrlRXEN == 0 || q.rxdctl&rxdctlEnable == 0 || d.loopback() {
		return 0, 0, 0, 0, RxDrop
	}
	base, size, ok := q.ring()
	bsize = q.bsize()
	if dt := q.descType(); !ok || bsize == 0 || (dt != descTypeAdvOneBuf && dt != descTypeLegacy) {
		return 0, 0, 0, 0, RxDrop
	}
	need = (d.maxFrame(true) + bsize - 1) / bsize
	if q.free(size) < uint32(need) {
		return 0, 0, 0, 0, RxNoRoom
	}
	return base, size, bsize, need, RxReady
}

// RxTarget is the zero-copy receive entry point: it returns the packet
// buffers (views of DMA memory) of the next free descriptors of queue, as
// many as a maximum-size frame needs, so a tap reader can readv straight
// into them, then call RxComplete (or RxAbort if nothing was received).
// The views add up to exactly the largest frame the MAC accepts (the last
// one is cut short): the 82599 never writes more than the frame into a
// buffer, and Linux (build_skb) keeps other data right behind the
// maximum frame, so a reader must not be able to write past it. A reader
// that wants to detect longer frames appends its own spill buffer.
//
// ok is false when RxState is not RxReady or a buffer is outside the DMA
// space; the caller then reads the frame into a scratch buffer and passes
// it to Receive (which counts the drop, e.g. MPC for an empty ring). The
// returned slice is reused by the next call.
//
// Until RxComplete or RxAbort, the queue's RXDCTL.ENABLE keeps reading 1
// even if the driver disables the queue (§4.6.7.1), so a driver that
// waits for the queue to stop does not free buffers still being written.
func (d *Device) RxTarget(queue int) (bufs [][]byte, ok bool) {
	if d.checkQueue(queue) != nil {
		return nil, false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	q := d.rxq[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resv.valid = false
	base, size, bsize, need, st := d.rxTargetCheck(q)
	if st != RxReady {
		return nil, false
	}
	ring := q.descRing(d.dma, base, size)
	if ring == nil {
		// A ring straddling the DMA space: the caller takes the Receive
		// path, which checks descriptor by descriptor.
		return nil, false
	}
	limit := d.maxFrame(true)
	q.bufs, q.descs, q.lens = q.bufs[:0], q.descs[:0], q.lens[:0]
	idx := q.rdh
	for i := 0; i < need; i++ {
		desc := ring[16*idx : 16*idx+16 : 16*idx+16]
		if idx++; idx == size {
			idx = 0
		}
		n := min(bsize, limit-i*bsize)
		buf, err := d.dma.Slice(binary.LittleEndian.Uint64(desc), uint64(n))
		if err != nil {
			return nil, false
		}
		q.descs = append(q.descs, desc)
		q.bufs = append(q.bufs, buf)
	}
	q.resv = rxResv{valid: true, gen: q.gen, head: q.rdh, n: need}
	q.dmaBusy = true
	return q.bufs, true
}

// RxAbort ends a zero-copy receive started by RxTarget without delivering
// a frame (e.g. the read found nothing, or the frame was too long): the
// descriptors stay free.
func (d *Device) RxAbort(queue int) {
	if d.checkQueue(queue) != nil {
		return
	}
	q := d.rxq[queue]
	q.mu.Lock()
	q.resv.valid = false
	q.dmaBusy = false
	q.mu.Unlock()
}

// RxComplete writes back the descriptors for a frame of n bytes that the
// caller placed into the buffers returned by the preceding RxTarget(queue)
// (spanning descriptors, EOP on the last), advances RDH and raises the rx
// interrupt. A frame the filters reject, or a reservation invalidated by a
// ring reconfiguration in between, is dropped: the descriptors stay free.
func (d *Device) RxComplete(queue int, n int) error {
	if err := d.checkQueue(queue); err != nil {
		return err
	}
	d.mu.RLock()
	q := d.rxq[queue]
	q.mu.Lock()
	err := d.rxComplete(q, n)
	q.resv.valid = false
	q.dmaBusy = false
	q.mu.Unlock()
	d.mu.RUnlock()
	if err == nil {
		d.imu.Lock()
		d.ic.raiseQueue(queue, false)
		d.imu.Unlock()
	}
	return err
}

func (d *Device) rxComplete(q *rxQueue, n int) error {
	r := q.resv
	if !r.valid || r.gen != q.gen || r.head != q.rdh || len(q.bufs) != r.n || q.rxdctl&rxdctlEnable == 0 {
		return ErrStale
	}
	if d.loopback() {
		d.cnt.rxDisabled.Add(1)
		return ErrRxDisabled
	}
	_, size, ok := q.ring()
	if !ok {
		d.cnt.rxErrors.Add(1)
		return ErrBadRing
	}
	bsize := q.bsize()
	if n <= 0 {
		d.cnt.ruc.add(1)
		return ErrUndersize
	}
	if n > bufsLen(q.bufs) {
		d.cnt.roc.add(1)
		return ErrOversize
	}
	first := q.bufs[0]
	bcast, mcast, err := d.admit(first[:min(len(first), n)], n)
	if err != nil {
		return err
	}
	need := (n + bsize - 1) / bsize
	if q.free(size) < uint32(need) {
		// RDT moved back over the reservation (an RDT write does not
		// bump gen): the descriptors are the driver's again. Writing
		// them back would move RDH past RDT, after which the whole ring
		// would look free (§7.1.9: hardware owns only RDH..RDT-1).
		return ErrStale
	}
	q.descs, q.bufs = q.descs[:need], q.bufs[:need]
	q.lens = q.lens[:0]
	for i := 0; i < need; i++ {
		q.lens = append(q.lens, min(len(q.bufs[i]), n-i*bsize))
		q.bufs[i] = q.bufs[i][:q.lens[i]]
	}
	var pktType, status, errs uint32
	if d.cfg.SkipRxChecksum {
		pktType = rxPktType(q.bufs[0], n)
	} else {
		pktType, status, errs, _ = rxOffload(q.bufs, n)
	}
	var rss rssResult
	if d.rssEnabled() {
		p := parseFrame(q.bufs[0], n)
		rss = d.rssOf(q.bufs[0], &p)
	}
	d.rxWriteBack(q, size, pktType, status, errs, 0, 0, rss, q.descType() == descTypeLegacy)
	d.rxCount(q.idx, n, bcast, mcast)
	return nil
}

func bufsLen(b [][]byte) int {
	n := 0
	for _, s := range b {
		n += len(s)
	}
	return n
}
