package afxdp

import (
	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp/xsk"
)

// Transmit implements nic.Model. A frame that follows its virtio_net_hdr
// in one segment goes to the tx ring as the guest wrote it; any other
// (spread over segments, as Linux sends page fragments) is gathered into a
// bounce chunk first. Frames the socket cannot carry (an offload request,
// which was never offered, or a length no chunk holds) are dropped and
// completed at once.
func (m *Model) Transmit(frames []nic.Buf) {
	m.mu.Lock()
	sock, hdrLen := m.sock, m.hdrLen
	m.mu.Unlock()
	m.txMu.Lock()
	m.txDescs, m.txIDs, m.txDone = m.txDescs[:0], m.txIDs[:0], m.txDone[:0]
	for _, f := range frames {
		if sock == nil {
			m.drop(f.ID)
			continue
		}
		d, bounce, ok := m.txPlace(f, hdrLen)
		if !ok {
			m.drop(f.ID)
			continue
		}
		if _, busy := m.inflight[d.Addr]; busy {
			// The same guest bytes already in flight: a confused driver.
			m.releaseBounce(bounce)
			m.drop(f.ID)
			continue
		}
		m.inflight[d.Addr] = txEntry{id: f.ID, bounce: bounce}
		m.txDescs = append(m.txDescs, d)
		m.txIDs = append(m.txIDs, f.ID)
	}
	if len(m.txDescs) > 0 {
		n := sock.Transmit(m.txDescs)
		for i, d := range m.txDescs[n:] {
			t := m.inflight[d.Addr]
			delete(m.inflight, d.Addr)
			m.releaseBounce(t.bounce)
			m.drop(m.txIDs[n+i])
		}
		m.Stats.TxFrames.Add(uint64(n))
	}
	m.txDone = m.reapLocked(sock, m.txDone)
	m.txMu.Unlock()
	m.complete(m.txDone)
}

// txPlace finds the tx descriptor for frame f; m.txMu is held.
func (m *Model) txPlace(f nic.Buf, hdrLen int) (d xsk.Desc, bounce int, ok bool) {
	n := f.Len() - hdrLen
	if n < 14 || n > chunkSize || len(f.Segs) == 0 || !m.plainHeader(f, hdrLen) {
		return xsk.Desc{}, -1, false
	}
	// Where the frame starts: in the header's segment, or the next.
	seg, skip := 0, hdrLen
	for seg < len(f.Segs) && skip >= len(f.Segs[seg]) {
		skip -= len(f.Segs[seg])
		seg++
	}
	if seg < len(f.Segs) && len(f.Segs[seg])-skip == n && len(f.GPAs) == len(f.Segs) {
		if off, err := m.cfg.Mem.SpanOffset(f.GPAs[seg]+uint64(skip), uint64(n)); err == nil {
			m.Stats.TxZeroCopyFrames.Add(1)
			return xsk.Desc{Addr: off, Len: uint32(n)}, -1, true
		}
	}
	if len(m.txFree) == 0 {
		return xsk.Desc{}, -1, false
	}
	c := m.txFree[len(m.txFree)-1]
	m.txFree = m.txFree[:len(m.txFree)-1]
	addr := m.scratch + uint64(bounceChunks+c)*chunkSize
	dst := m.span[addr : addr+uint64(n)]
	w, skip := 0, hdrLen
	for _, s := range f.Segs {
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		w += copy(dst[w:], s[skip:])
		skip = 0
	}
	m.Stats.TxCopiedFrames.Add(1)
	m.Stats.TxCopiedBytes.Add(uint64(n))
	return xsk.Desc{Addr: addr, Len: uint32(n)}, c, true
}

// plainHeader reports whether the frame's virtio_net_hdr asks for nothing
// (flags and gso_type 0): nothing else was negotiated.
func (m *Model) plainHeader(f nic.Buf, hdrLen int) bool {
	var h [2]byte
	w := 0
	for _, s := range f.Segs {
		w += copy(h[w:], s)
		if w == len(h) {
			break
		}
	}
	return hdrLen >= 2 && w == 2 && h[0] == 0 && h[1] == 0
}

// drop completes a frame that is not sent (Transmit only).
func (m *Model) drop(id uint16) {
	m.Stats.TxDropped.Add(1)
	m.txDone = append(m.txDone, id)
}

func (m *Model) releaseBounce(c int) {
	if c >= 0 {
		m.txFree = append(m.txFree, c)
	}
}

// reap reports the transmits the kernel completed (the receive loop, and
// Stop once it has ended).
func (m *Model) reap(sock *xsk.Socket) {
	if sock == nil {
		return
	}
	m.txMu.Lock()
	m.rxDone = m.reapLocked(sock, m.rxDone[:0])
	if len(m.rxDone) > 0 && len(m.inflight) > 0 {
		// A full completion ring stops the kernel's transmit: with room
		// again, let it go on.
		_ = sock.KickTx()
	}
	m.txMu.Unlock()
	m.complete(m.rxDone)
}

// reapLocked appends completed transmits' IDs to out; m.txMu is held.
func (m *Model) reapLocked(sock *xsk.Socket, out []uint16) []uint16 {
	if sock == nil || len(m.inflight) == 0 {
		return out
	}
	if cap(m.comp) < ringSize {
		m.comp = make([]uint64, ringSize)
	}
	for {
		n := sock.Completed(m.comp[:ringSize])
		if n == 0 {
			return out
		}
		for _, a := range m.comp[:n] {
			t, ok := m.inflight[a]
			if !ok {
				continue
			}
			delete(m.inflight, a)
			m.releaseBounce(t.bounce)
			out = append(out, t.id)
		}
	}
}

// complete reports done transmits. Transmit and the receive loop each
// have their own list (txDone, rxDone), so neither rewrites the other's
// while the sink reads it.
func (m *Model) complete(done []uint16) {
	if len(done) == 0 {
		return
	}
	m.sinkMu.Lock()
	m.sink.TxDone(done)
	m.sinkMu.Unlock()
}
