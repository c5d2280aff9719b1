package afxdp

import (
	"errors"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp/xsk"
	"github.com/govmm/govmm/devices/nic/gso"
)

// Transmit implements nic.Model. A frame that follows its virtio_net_hdr
// in one segment goes to the tx ring as the guest wrote it; any other
// (spread over segments, as Linux sends page fragments) is gathered into a
// bounce chunk first. A frame with an offload request (a partial checksum,
// a TCP GSO frame) is finished in bounce chunks, one per wire frame
// (txOffload). Frames the socket cannot carry (a request that was not
// negotiated or does not add up, a length no chunk holds) are dropped and
// completed at once.
func (m *Model) Transmit(frames []nic.Buf) {
	m.mu.Lock()
	sock, hdrLen, off := m.sock, m.hdrLen, m.offload
	m.mu.Unlock()
	m.txMu.Lock()
	m.txDescs, m.txIDs, m.txDone = m.txDescs[:0], m.txIDs[:0], m.txDone[:0]
	for _, f := range frames {
		if sock == nil || hdrLen < gso.HeaderBytes {
			m.drop(f.ID)
			continue
		}
		var hb [gso.HeaderBytes]byte
		gatherSegs(hb[:], f.Segs)
		if h := gso.ParseHeader(hb); !h.Plain() {
			m.txOffload(sock, f, hdrLen, h, off)
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
			if m.lastPart(m.txIDs[n+i]) {
				m.drop(m.txIDs[n+i])
			}
		}
		m.Stats.TxFrames.Add(uint64(n))
	}
	m.txDone = m.reapLocked(sock, m.txDone)
	m.txMu.Unlock()
	m.complete(m.txDone)
}

// offloads is what a guest may ask of a transmitted frame, as negotiated.
type offloads struct{ csum, tso4, tso6 bool }

// allows reports whether h asks only for what was negotiated.
func (o offloads) allows(h gso.Header) bool {
	switch {
	case h.Flags&gso.FlagNeedsCsum != 0 && !o.csum:
		return false
	case h.GSOType == gso.GSONone:
		return true
	case h.GSOType == gso.GSOTCPv4:
		return o.tso4
	case h.GSOType == gso.GSOTCPv6:
		return o.tso6
	}
	return false // UDP, ECN: never offered
}

// txOffload finishes frame f's offload request h in tx bounce chunks, one
// per wire frame, and queues them; m.txMu is held. A GSO frame completes
// when its last wire frame does (txParts).
func (m *Model) txOffload(sock *xsk.Socket, f nic.Buf, hdrLen int, h gso.Header, off offloads) {
	n := f.Len() - hdrLen
	if !off.allows(h) || n < 14 {
		m.refuse(h, errNotNegotiated)
		m.drop(f.ID)
		return
	}
	m.txFrame = appendAfter(m.txFrame[:0], f.Segs, hdrLen)
	p, err := gso.Prepare(h, m.txFrame, n, m.maxFrame())
	if err != nil {
		m.refuse(h, err)
		m.drop(f.ID)
		return
	}
	if len(m.txFree) < p.Segments() {
		m.txDone = m.reapLocked(sock, m.txDone)
	}
	if len(m.txFree) < p.Segments() {
		m.drop(f.ID) // the kernel is behind: a lost frame, which TCP resends
		return
	}
	for i := range p.Segments() {
		c := m.txFree[len(m.txFree)-1]
		m.txFree = m.txFree[:len(m.txFree)-1]
		addr := m.txBounce(c)
		k := p.Build(i, m.txFrame, m.span[addr:addr+chunkSize])
		m.inflight[addr] = txEntry{id: f.ID, bounce: c}
		m.txDescs = append(m.txDescs, xsk.Desc{Addr: addr, Len: uint32(k)})
		m.txIDs = append(m.txIDs, f.ID)
	}
	if p.Segments() > 1 {
		m.txParts[f.ID] = p.Segments()
	}
	m.Stats.TxOffloaded.Add(1)
	m.Stats.TxSegments.Add(uint64(p.Segments()))
	m.Stats.TxCopiedBytes.Add(uint64(n))
}

var errNotNegotiated = errors.New("an offload the guest did not negotiate")

// refuse logs a refused offload request, once per kind of request in a
// row, so a guest cannot flood the log.
func (m *Model) refuse(h gso.Header, err error) {
	key := gso.Header{Flags: h.Flags, GSOType: h.GSOType}
	if m.txBad != key {
		m.txBad = key
		m.log.Warn("afxdp: transmit offload refused, frame dropped", "if", m.cfg.Ifname, "flags", h.Flags, "gso_type", h.GSOType, "err", err)
	}
}

// lastPart accounts for one wire frame of guest frame id leaving flight,
// and reports whether id has none left; m.txMu is held.
func (m *Model) lastPart(id uint16) bool {
	k, multi := m.txParts[id]
	if !multi {
		return true
	}
	if k > 1 {
		m.txParts[id] = k - 1
		return false
	}
	delete(m.txParts, id)
	return true
}

// maxFrame is the longest wire frame: the guest's MTU plus an Ethernet
// header with one VLAN tag, within a chunk.
func (m *Model) maxFrame() int {
	mtu := m.cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	return min(mtu+18, chunkSize)
}

// txBounce is the UMEM address of tx bounce chunk c (after the rx ones).
func (m *Model) txBounce(c int) uint64 { return m.scratch + uint64(rxBounceChunks+c)*chunkSize }

// gatherSegs fills dst from the front of segs.
func gatherSegs(dst []byte, segs [][]byte) {
	w := 0
	for _, s := range segs {
		w += copy(dst[w:], s)
		if w == len(dst) {
			return
		}
	}
}

// appendAfter appends to out the views of segs from byte skip on.
func appendAfter(out, segs [][]byte, skip int) [][]byte {
	for _, s := range segs {
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		out = append(out, s[skip:])
		skip = 0
	}
	return out
}

// txPlace finds the tx descriptor for frame f; m.txMu is held.
func (m *Model) txPlace(f nic.Buf, hdrLen int) (d xsk.Desc, bounce int, ok bool) {
	n := f.Len() - hdrLen
	if n < 14 || n > chunkSize || len(f.Segs) == 0 {
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
	addr := m.txBounce(c)
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
			if m.lastPart(t.id) {
				out = append(out, t.id)
			}
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
