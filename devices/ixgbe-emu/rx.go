// Copying receive (§7.1): Receive places a frame in the next free descriptors.

package ixgbeemu

import "encoding/binary"

// splitLen returns where header split cuts the frame, per PSRTYPE
// (§7.1.10 "Header splitting"; the PF uses PSRTYPE(0)). 0 = no split.
func (d *Device) splitLen(p *pktInfo, n int) int {
	psr := d.store[regPSRTYPE/4]
	switch {
	case p.l4end != 0 && (p.l4proto == protoTCP && psr&psrtypeTCPHdr != 0 || p.l4proto == protoUDP && psr&psrtypeUDPHdr != 0):
		return p.l4end
	case p.ipv4 && psr&psrtypeIPv4Hdr != 0, p.ipv6 && psr&psrtypeIPv6Hdr != 0:
		return p.l4off
	case p.l3off != 0 && psr&psrtypeL2Hdr != 0:
		return p.l3off
	}
	return 0
}

func (d *Device) checkQueue(queue int) error {
	if queue < 0 || queue >= d.cfg.Queues {
		return ErrBadQueue
	}
	return nil
}

// Receive delivers one frame (without FCS) to rx queue queue, copying it into
// the buffers of the next free descriptors. It returns nil when the frame
// was written back, or why it was dropped (each drop is counted).
func (d *Device) Receive(queue int, frame []byte) error {
	if err := d.checkQueue(queue); err != nil {
		return err
	}
	d.mu.RLock()
	bcast, mcast, err := d.admit(frame, len(frame))
	if err == nil && d.loopback() {
		d.cnt.rxDisabled.Add(1) // MAC loopback: the port is not listened to
		err = ErrRxDisabled
	}
	if err == nil {
		q := d.rxq[queue]
		q.mu.Lock()
		err = d.rxPlace(q, frame)
		q.mu.Unlock()
		if err == nil {
			d.rxCount(queue, len(frame), bcast, mcast)
		}
	}
	d.mu.RUnlock()
	if err == nil {
		d.imu.Lock()
		d.ic.raiseQueue(queue, false)
		d.imu.Unlock()
	}
	return err
}

func (d *Device) rxCount(queue, n int, bcast, mcast bool) {
	c := &d.cnt
	c.gprc.add(1)         // and tpr, rxnfgpc, rxdgpc (counters.init)
	c.gorc.add(uint64(n)) // and tor
	c.prc[sizeBucket(n)].add(1)
	if bcast {
		c.bprc.add(1)
	}
	if mcast {
		c.mprc.add(1)
	}
	i := d.statIdx(regRQSMR, queue)
	c.qprc[i].add(1)
	c.qbrc[i].add(uint64(n))
}

// rxMissed counts a frame dropped for lack of descriptors (§8.2.3.23.4 MPC;
// QPRDC with SRRCTL.DROP_EN). Called with d.mu read-locked and q.mu held.
func (d *Device) rxMissed(q *rxQueue) {
	d.cnt.mpc[0].add(1) // no DCB: all traffic is in packet buffer 0
	if q.srrctl&srrctlDropEn != 0 {
		d.cnt.qprdc[d.statIdx(regRQSMR, q.idx)].add(1)
	}
}

// rxCheck validates the queue for a frame and returns the ring geometry.
func (d *Device) rxCheck(q *rxQueue) (base uint64, size uint32, bsize int, err error) {
	if q.rxdctl&rxdctlEnable == 0 {
		d.cnt.rxDisabled.Add(1)
		return 0, 0, 0, ErrRxDisabled
	}
	base, size, ok := q.ring()
	bsize = q.bsize()
	if !ok || bsize == 0 {
		d.cnt.rxErrors.Add(1)
		return 0, 0, 0, ErrBadRing
	}
	return base, size, bsize, nil
}

// rxPlace copies frame into the ring (one-buffer or header split) and
// writes the descriptors back. Called with d.mu read-locked and q.mu held.
func (d *Device) rxPlace(q *rxQueue, frame []byte) error {
	base, size, bsize, err := d.rxCheck(q)
	if err != nil {
		return err
	}
	n := len(frame)
	segs := [][]byte{frame}
	pktType, status, errs, p := rxOffload(segs, n)

	dt := q.descType()
	hlen, hdrErr := 0, uint32(0)
	if dt == descTypeAdvHdrSplit || dt == descTypeAdvHSAlways {
		hlen = d.splitLen(&p, n)
		if hmax := int(q.srrctl&srrctlBSizeHdrMask>>8) * 64; hlen > hmax {
			hlen, hdrErr = 0, rxdErrHBO // header buffer overflow: no split
		}
	}
	payload := n - hlen
	need := max(1, (payload+bsize-1)/bsize)
	if q.free(size) < uint32(need) {
		d.rxMissed(q)
		return ErrNoDescriptors
	}
	// Resolve every descriptor and buffer before touching guest memory.
	q.descs, q.bufs, q.lens = q.descs[:0], q.bufs[:0], q.lens[:0]
	var hbuf []byte
	rem := payload
	for i := 0; i < need; i++ {
		idx := (q.rdh + uint32(i)) % size
		desc, err := d.dma.Slice(base+16*uint64(idx), 16)
		if err != nil {
			d.cnt.rxErrors.Add(1)
			return ErrDMA
		}
		chunk := min(bsize, rem)
		rem -= chunk
		buf, err := d.dma.Slice(binary.LittleEndian.Uint64(desc), uint64(chunk))
		if err == nil && i == 0 && hlen > 0 {
			hbuf, err = d.dma.Slice(binary.LittleEndian.Uint64(desc[8:])&^1, uint64(hlen))
		}
		if err != nil {
			d.rxSkip(q, append(q.descs, desc), size, dt == descTypeLegacy)
			return ErrDMA
		}
		q.descs = append(q.descs, desc)
		q.bufs = append(q.bufs, buf)
		q.lens = append(q.lens, chunk)
	}
	if hlen > 0 {
		copy(hbuf, frame[:hlen])
	}
	off := hlen
	for _, b := range q.bufs {
		off += copy(b, frame[off:])
	}
	var sph uint32
	if hlen > 0 {
		sph = 1
	}
	d.rxWriteBack(q, size, pktType, status, errs|hdrErr, uint32(hlen), sph, d.rssOf(frame, &p), dt == descTypeLegacy)
	return nil
}
