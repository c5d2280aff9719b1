package zerocopy

import (
	"encoding/binary"
	"errors"

	"github.com/govmm/govmm/devices/nic"
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
	for m.rxOnce(stop, true) {
	}
}

// rxOnce moves at most one frame. It returns false when the reader must
// exit. With wait unset it does not block for buffers (benchmarks).
func (m *Model) rxOnce(stop chan struct{}, wait bool) bool {
	m.mu.Lock()
	ln := m.pickLane()
	wake := m.wake
	m.mu.Unlock()
	if ln == laneNone {
		if !wait {
			return true
		}
		// No room for a whole frame: leave frames queued in the port (a tap
		// drops, and counts, when its queue is full, as a NIC with an empty
		// ring would) until the guest posts more buffers.
		select {
		case <-wake:
			return true
		case <-stop:
			return false
		}
	}
	n, err := m.cfg.Port.ReadFrame(m.hdr, m.iov)
	if err != nil {
		if ln == laneZC {
			m.dev.RxAbort(0) // the descriptors stay posted
		}
		select {
		case <-stop:
			return false
		default:
		}
		if errors.Is(err, ErrInterrupted) {
			return true
		}
		m.cnt.rxPortErr.Add(1)
		m.log.Error("zerocopy: port read failed, receive stopped", "err", err)
		return false
	}
	var used []nic.Used
	m.mu.Lock()
	if ln == laneZC {
		used = m.completeZC(n)
	} else {
		used = m.completeBounce(n)
	}
	sink := m.sink
	m.mu.Unlock()
	if len(used) > 0 {
		// Outside m.mu: the device's RxFrame takes its rx lock, which it also
		// holds while calling PostRx.
		sink.RxFrame(used)
	}
	return true
}

// pickLane chooses the zero-copy ring when it holds enough descriptors for
// a maximum-size frame, else the bounce lane when it can hold one, and
// prepares m.iov. Called with m.mu held.
func (m *Model) pickLane() lane {
	if (m.rxTail+m.rxSize-m.rxHead)%m.rxSize >= m.need {
		m.rebind()
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

// rebind points the descriptors a frame may use at their final offsets.
// With MRG_RXBUF only the first buffer of a frame starts with a
// virtio_net_hdr; the rest carry data from offset 0 (§5.1.6.4), and which
// buffer comes first is only known when the frame starts. The ring is
// VMM-private and the NIC reads a descriptor only inside RxTarget, under
// m.mu, so re-pointing posted descriptors here is race-free.
func (m *Model) rebind() {
	if !m.layout.Mergeable {
		return
	}
	for i := uint32(0); i < m.need; i++ {
		idx := (m.rxHead + i) % m.rxSize
		addr := m.slots[idx].dec.ContAddr
		if i == 0 {
			addr = m.slots[idx].dec.PktAddr
		}
		binary.LittleEndian.PutUint64(m.ring(m.rxRing, idx), addr)
	}
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
	for i := uint32(0); i < m.need && !eop; i++ {
		wb := binary.LittleEndian.Uint64(m.ring(m.rxRing, (m.rxHead+i)%m.rxSize)[8:])
		if uint32(wb)&rxdStatDD == 0 {
			break
		}
		m.lens = append(m.lens, int(uint16(wb>>32)))
		eop = uint32(wb)&rxdStatEOP != 0
	}
	if !eop || sum(m.lens) != n {
		// Never expected from our own programming; resynchronise on RDH so
		// no buffer is lost, and hand the consumed ones back empty.
		m.cnt.rxNIC.Add(1)
		m.log.Warn("zerocopy: inconsistent rx write-back", "n", n, "lens", m.lens)
		rdh := m.dev.ReadReg(regRDH) % m.rxSize
		m.lens = m.lens[:0]
		for i := m.rxHead; i != rdh; i = (i + 1) % m.rxSize {
			m.lens = append(m.lens, 0)
		}
		if len(m.lens) == 0 {
			return nil
		}
	}
	hdr := int(m.layout.HdrLen)
	m.used = m.used[:0]
	for i, l := range m.lens {
		p := &m.slots[m.rxHead]
		w := l
		if i == 0 {
			w += hdr
			m.putHdr(p.buf.Segs[0][:hdr], len(m.lens))
		}
		m.used = append(m.used, nic.Used{ID: p.buf.ID, Written: uint32(w)})
		m.pin.release(p.size)
		*p = posted{}
		m.rxHead = (m.rxHead + 1) % m.rxSize
	}
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
