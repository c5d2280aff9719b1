package zerocopy

import (
	"encoding/binary"
	"errors"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/internal/osthread"
)

// Receive path. One goroutine per model: pick where the next frame goes,
// read it from the port (one readv straight into the 82599's descriptor
// views, or into the bounce buffer), let the 82599 write the descriptors
// back, then write the virtio_net_hdr and complete the guest buffers.

type lane uint8

const (
	laneNone lane = iota
	laneZC
	laneBounce
)

func (m *Model) reader(stop, done chan struct{}) {
	defer close(done)
	defer osthread.Own("zc-rx")()
	for m.rxBatch(stop, true, nic.RxBudget) {
	}
}

// rxStep is what one rxOnce did.
type rxStep uint8

const (
	rxMoved  rxStep = iota // a frame went to the guest buffers (or was dropped as a NIC would)
	rxDry                  // the port holds no frame (only without waiting)
	rxNoRoom               // no buffers for a whole frame (only without waiting)
	rxExit                 // the reader must exit
)

// rxBatch moves up to budget frames and reports them to the sink in one
// RxFrames call: one used-ring publish and interrupt decision for all of
// them. Only the first read may wait (with wait set); the rest take what
// the port already holds, so a batch never waits for frames it does not
// have, nor for buffers (completing the frames it has is what makes the
// guest post more). It returns false when the reader must exit. With wait
// unset (benchmarks, tests) it never blocks.
func (m *Model) rxBatch(stop chan struct{}, wait bool, budget int) bool {
	m.batch.Reset()
	defer m.flushRx()
	for i := 0; i < budget; i++ {
		switch m.rxOnce(stop, wait && i == 0) {
		case rxExit:
			return false
		case rxDry, rxNoRoom:
			// Reported now; the next batch waits for a frame or for room.
			return true
		}
	}
	return true
}

// flushRx reports the frames collected so far. Outside m.mu: the device's
// RxFrames takes its rx lock, which it also holds while calling PostRx.
func (m *Model) flushRx() {
	if m.batch.Len() > 0 {
		m.sink.RxFrames(&m.batch)
		m.batch.Reset()
	}
}

// waitRoom waits until the guest posts buffers; false when stopped.
func (m *Model) waitRoom(stop chan struct{}) bool {
	// The sink may be holding buffers back while we held many: they may
	// be too small to make up a frame (nic.Sink.RxStarved).
	m.sink.RxStarved()
	// No room for a whole frame: leave frames queued in the port (a tap
	// drops, and counts, when its queue is full, as a NIC with an empty
	// ring would) until the guest posts more buffers.
	select {
	case <-m.wake:
		return true
	case <-stop:
		return false
	}
}

// rxOnce moves at most one frame into the batch. With wait it blocks for
// a frame, and for buffers when there is no room (then reporting the
// batch first). A read that cannot block (wait unset) runs under m.mu
// with the layout and completion around it: one lock round per frame
// instead of two, and PostRx waits at most one non-blocking readv.
func (m *Model) rxOnce(stop chan struct{}, wait bool) rxStep {
	m.mu.Lock()
	ln := m.pickLane()
	if ln == laneNone {
		m.mu.Unlock()
		if !wait {
			return rxNoRoom
		}
		m.flushRx()
		if !m.waitRoom(stop) {
			return rxExit
		}
		return rxDry
	}
	if wait {
		m.mu.Unlock() // a blocking read must not hold PostRx up
	}
	n, err := m.cfg.Port.ReadFrame(m.hdr, m.iov, wait)
	if wait {
		m.mu.Lock()
	}
	if err != nil {
		m.mu.Unlock()
		if ln == laneZC {
			m.dev.RxAbort(0) // the descriptors stay posted
		}
		select {
		case <-stop:
			return rxExit
		default:
		}
		if errors.Is(err, ErrWouldBlock) || errors.Is(err, ErrInterrupted) {
			return rxDry
		}
		m.cnt.rxPortErr.Add(1)
		m.log.Error("zerocopy: port read failed, receive stopped", "err", err)
		return rxExit
	}
	var used []nic.Used
	if ln == laneZC {
		used = m.completeZC(n)
	} else {
		used = m.completeBounce(n)
	}
	m.mu.Unlock()
	m.batch.Add(used...)
	return rxMoved
}

// pickLane chooses the zero-copy ring when its buffers can take a
// maximum-size frame, else the bounce lane when it can hold one, and
// prepares m.iov. Called with m.mu held.
func (m *Model) pickLane() lane {
	if m.layoutRx() {
		if views, ok := m.dev.RxTarget(0); ok {
			// The views add up to exactly the largest frame; the spill
			// buffer behind them makes a longer one visible (and dropped as
			// oversize) instead of silently truncated.
			m.iov = append(append(m.iov[:0], views...), m.bounceBuf)
			return laneZC
		}
	}
	if m.bounceReady() {
		m.iov = append(m.iov[:0], m.bounceBuf)
		return laneBounce
	}
	return laneNone
}

// layoutRx points the m.need descriptors from RDH into the zero-copy
// buffers, in posting order, and moves RDT behind them. With MRG_RXBUF a
// buffer gets as many NIC buffers (SRRCTL.BSIZEPKT, 1 KiB) as fit in it:
// the first buffer of a frame from its packet address (after the
// virtio_net_hdr), the next ones from offset 0, since only the first
// carries a header (§5.1.6.4); a 4 KiB Linux buffer is thus filled, not
// used for one 1 KiB piece. Which buffer starts a frame is only known now,
// so the layout is redone before every frame. That is race-free: the
// ring is VMM-private and the NIC reads descriptors only inside RxTarget,
// which follows under m.mu. Without MRG_RXBUF a frame fits one buffer
// (m.need is 1). It reports false when the buffers cannot take a
// maximum-size frame yet. Called with m.mu held.
func (m *Model) layoutRx() bool {
	bs := uint64(m.req.MinBuf)
	need := int(m.need)
	m.lay = m.lay[:0]
	for b := 0; b < m.zcq.len() && len(m.lay) < need; b++ {
		p := m.zcq.at(b)
		addr, room := p.dec.PktAddr, uint64(p.dec.PktRoom)
		if b > 0 {
			addr, room = p.dec.ContAddr, room+uint64(m.layout.HdrLen)
		}
		for off := uint64(0); off+bs <= room && len(m.lay) < need; off += bs {
			d := m.ring(m.rxRing, (m.rxHead+uint32(len(m.lay)))%m.rxSize)
			binary.LittleEndian.PutUint64(d, addr+off)
			binary.LittleEndian.PutUint64(d[8:], 0)
			m.lay = append(m.lay, uint16(b))
		}
		if !m.layout.Mergeable {
			break // a frame never spans chains
		}
	}
	tail := (m.rxHead + m.need) % m.rxSize
	if len(m.lay) < need {
		tail = m.rxHead // the NIC owns nothing until a whole frame fits
	}
	m.dev.WriteReg(regRDT, tail)
	return tail != m.rxHead
}

func (m *Model) bounceReady() bool {
	if !m.layout.Mergeable {
		return len(m.bounce) > 0
	}
	room := 0
	for i := range m.bounce {
		if room += m.bounce[i].buf.Len(); room >= int(m.layout.HdrLen+m.layout.MaxFrame) {
			return true
		}
	}
	return false
}

// completeZC hands a frame of n bytes, already in the guest buffers, to the
// 82599 and turns its write-back into used buffers. Called with m.mu held.
func (m *Model) completeZC(n int) []nic.Used {
	if err := m.dev.RxComplete(0, n); err != nil {
		// Rejected as a NIC would (runt, oversize, filter): the descriptors
		// stay posted and the bytes already written are overwritten later.
		m.cnt.rxNIC.Add(1)
		return nil
	}
	// Read the write-back like a driver (§7.1.6.2): DD, EOP, length.
	m.lens = m.lens[:0]
	eop := false
	for i := 0; i < len(m.lay) && !eop; i++ {
		wb := binary.LittleEndian.Uint64(m.ring(m.rxRing, (m.rxHead+uint32(i))%m.rxSize)[8:])
		if uint32(wb)&rxdStatDD == 0 {
			break
		}
		m.lens = append(m.lens, int(uint16(wb>>32)))
		eop = uint32(wb)&rxdStatEOP != 0
	}
	if !eop || sum(m.lens) != n {
		// Never expected from our own programming; resynchronise on RDH so
		// no buffer is lost, and hand the touched ones back empty.
		m.cnt.rxNIC.Add(1)
		m.log.Warn("zerocopy: inconsistent rx write-back", "n", n, "lens", m.lens)
		k := int((m.dev.ReadReg(regRDH) + m.rxSize - m.rxHead) % m.rxSize)
		m.lens = append(m.lens[:0], make([]int, min(k, len(m.lay)))...)
		if len(m.lens) == 0 {
			return nil
		}
	}
	// Descriptors → buffers: every buffer up to the one holding the last
	// descriptor is used (a mergeable buffer carries one frame's bytes only),
	// each with the bytes of its descriptors, which it holds contiguously.
	hdr := int(m.layout.HdrLen)
	nb := int(m.lay[len(m.lens)-1]) + 1
	m.used = m.used[:0]
	for b := range nb {
		m.used = append(m.used, nic.Used{ID: m.zcq.at(b).buf.ID})
	}
	m.used[0].Written = uint32(hdr)
	for i, l := range m.lens {
		m.used[m.lay[i]].Written += uint32(l)
	}
	// Decide checked the first segment holds the header; the scatter form
	// stays safe even if that ever stopped being true.
	m.putHdrScatter(m.zcq.at(0).buf.Segs, nb, true)
	for b := range nb {
		m.pin.release(m.zcq.at(b).size)
	}
	m.zcq.pop(nb)
	m.rxHead = (m.rxHead + uint32(len(m.lens))) % m.rxSize
	m.cnt.rxFrames.Add(1)
	m.cnt.rxZC.Add(1)
	return m.used
}

// completeBounce copies a frame of n bytes from the bounce buffer into the
// fallback lane (the RFC's second design). Called with m.mu held.
func (m *Model) completeBounce(n int) []nic.Used {
	if n < 14 || n > int(m.layout.MaxFrame) || n > len(m.bounceBuf) {
		m.cnt.rxNIC.Add(1) // what the 82599 would reject as runt/oversize
		return nil
	}
	hdr := int(m.layout.HdrLen)
	m.used = m.used[:0]
	if !m.layout.Mergeable && m.bounce[0].buf.Len() < hdr+n {
		// A buffer the driver sized below a frame: hand it back holding an
		// empty frame (Linux counts a length error) rather than truncate.
		b := m.bounce[0].buf
		m.putHdrScatter(b.Segs, 1, false)
		m.used = append(m.used, nic.Used{ID: b.ID, Written: uint32(hdr)})
		m.popBounce(1)
		m.cnt.rxNoBuf.Add(1)
		return m.used
	}
	frame := m.bounceBuf[:n]
	// Count the buffers the frame needs first: num_buffers goes in the header.
	k, room := 0, 0
	for room < hdr+n && k < len(m.bounce) {
		room += m.bounce[k].buf.Len()
		k++
	}
	if room < hdr+n {
		m.cnt.rxNoBuf.Add(1) // bounceReady guarantees room; kept as a guard
		return nil
	}
	m.putHdrScatter(m.bounce[0].buf.Segs, k, true)
	off := -hdr // frame offset of the next byte position; negative inside the header
	for i := 0; i < k; i++ {
		b := m.bounce[i].buf
		w := 0
		for _, s := range b.Segs {
			if off < 0 {
				skip := min(-off, len(s))
				s, off, w = s[skip:], off+skip, w+skip
				if off < 0 {
					continue
				}
			}
			c := copy(s, frame[off:])
			off, w = off+c, w+c
		}
		m.used = append(m.used, nic.Used{ID: b.ID, Written: uint32(w)})
	}
	m.popBounce(k)
	m.cnt.rxFrames.Add(1)
	m.cnt.rxCopied.Add(1)
	m.cnt.rxCopiedBytes.Add(uint64(n))
	return m.used
}

func (m *Model) popBounce(k int) {
	for i := 0; i < k; i++ {
		m.pin.release(m.bounce[i].size)
	}
	rest := copy(m.bounce, m.bounce[k:])
	clear(m.bounce[rest:])
	m.bounce = m.bounce[:rest]
}

// putHdr writes the virtio_net_hdr for a frame in nbufs buffers into dst
// (HdrLen bytes): the port's header, keeping only the offload metadata the
// guest negotiated, and num_buffers.
func (m *Model) putHdr(dst []byte, nbufs int) {
	copy(dst, m.hdr)
	c := &m.ncfg
	if !c.GuestCsum {
		dst[0] = 0       // flags: NEEDS_CSUM / DATA_VALID
		clear(dst[6:10]) // csum_start, csum_offset
	}
	if !c.GuestTSO4 && !c.GuestTSO6 {
		clear(dst[1:6]) // gso_type, hdr_len, gso_size
	}
	if len(dst) >= 12 {
		binary.LittleEndian.PutUint16(dst[hdrNumBufs:], uint16(nbufs))
	}
	if len(dst) > 12 {
		clear(dst[12:]) // hash report: VIRTIO_NET_HASH_REPORT_NONE
	}
}

// putHdrScatter writes the header across segs (a chain whose first segment
// may be shorter than the header). keep=false writes an all-zero header.
func (m *Model) putHdrScatter(segs [][]byte, nbufs int, keep bool) {
	var h [20]byte
	hd := h[:m.layout.HdrLen]
	m.putHdr(hd, nbufs)
	if !keep {
		clear(hd)
	}
	for _, s := range segs {
		if len(hd) == 0 {
			return
		}
		hd = hd[copy(s, hd):]
	}
}

func sum(v []int) int {
	t := 0
	for _, x := range v {
		t += x
	}
	return t
}
