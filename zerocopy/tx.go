package zerocopy

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"

	"github.com/govmm/govmm/devices/nic"
)

// Transmit path: each guest frame becomes 82599 advanced descriptors (a
// context descriptor when the guest asked for checksum or segmentation
// offload, then data descriptors) pointing at the guest's own tx buffers
// after the virtio_net_hdr. The TDT write runs the 82599's transmit, which
// hands the descriptor views to the wire (portWire → one writev on the
// tap), with the offload request as the tap's vnet header.

// Transmit implements nic.Model. Completion is reported before it returns.
func (m *Model) Transmit(frames []nic.Buf) {
	m.txMu.Lock()
	m.txIDs = m.txIDs[:0]
	for i := range frames {
		m.txOne(&frames[i])
		m.txIDs = append(m.txIDs, frames[i].ID)
	}
	ids := m.txIDs
	m.txMu.Unlock()
	m.mu.Lock()
	sink := m.sink
	m.mu.Unlock()
	if sink != nil {
		sink.TxDone(ids)
	}
}

// txPiece is one run of frame bytes after the virtio_net_hdr.
type txPiece struct {
	gpa uint64
	buf []byte
}

const (
	// maxTxPieces bounds the data descriptors of one frame (Linux sends at
	// most MAX_SKB_FRAGS+2 segments); a frame in more pieces is copied.
	maxTxPieces = 64
	// maxDescData is the most one data descriptor carries here (DTALEN is
	// 16 bits); longer guest segments are split.
	maxDescData = 32 << 10
	// txHdrArea is the private scratch for a TSO frame's rewritten headers.
	txHdrArea = 1024
)

// txOne sends one frame. Called with m.txMu held.
func (m *Model) txOne(f *nic.Buf) {
	var vh [20]byte
	total, zc, ok := m.txGather(f, vh[:m.txHdrLen])
	if !ok || total < 14 {
		m.cnt.txDropped.Add(1) // no full header, or a runt
		return
	}
	pieces := m.txPieces
	plan, err := planTx(parseVnetHdr(vh[:]), func(off int) (byte, bool) { return pieceByte(pieces, off) }, total)
	if err != nil || total > gsoMaxFrame || (!plan.tso && total > txMaxFrame) ||
		((plan.ctx || plan.soft) && !m.txCsum) || (plan.tso && !m.txTSO) {
		// A malformed offload request, one the driver did not negotiate
		// (§5.1.6.2: it must not ask), or longer than any frame.
		m.cnt.txDropped.Add(1)
		return
	}
	if !zc || plan.soft {
		// The RFC's second design, for transmit: copy into the private
		// bounce area and send from there.
		bb := m.priv[m.txBB-PrivateBase:][:total]
		off := 0
		for _, p := range pieces {
			off += copy(bb[off:], p.buf)
		}
		if plan.soft {
			softChecksum(bb, plan.csumStart, plan.csumOffset)
		}
		pieces = pieces[:0]
		for off := 0; off < total; off += maxDescData {
			n := min(maxDescData, total-off)
			pieces = append(pieces, txPiece{gpa: m.txBB + uint64(off), buf: bb[off : off+n]})
		}
		m.cnt.txCopiedBytes.Add(uint64(total))
		zc = false
	}
	if plan.tso {
		pieces = m.tsoHeader(pieces, plan, total)
	}
	m.txPieces = pieces
	m.txPost(plan, total)
	m.wire.err = nil
	m.dev.WriteReg(regTDT, m.txTail) // runs the 82599 transmit synchronously
	m.reportWire(m.wire.err)
	if h := m.dev.ReadReg(regTDH); h != m.txTail || m.wire.err != nil {
		if h != m.txTail {
			m.dev.WriteReg(regTDH, m.txTail) // stalled on a bad descriptor: skip it
		}
		m.cnt.txDropped.Add(1)
		return
	}
	m.cnt.txFrames.Add(1)
	if zc {
		m.cnt.txZC.Add(1)
	}
}

// reportWire logs when sending to the host starts failing (the tap went
// down or away) and when it works again, once each, not per frame.
func (m *Model) reportWire(err error) {
	switch {
	case err != nil && !m.txFailing:
		m.txFailing = true
		m.log.Warn("zerocopy: sending to the host fails; frames are dropped (tx_dropped) until it recovers", "err", err)
	case err == nil && m.txFailing:
		m.txFailing = false
		m.log.Info("zerocopy: sending to the host works again")
	}
}

// txGather copies the virtio_net_hdr into hdr and collects the frame
// behind it in m.txPieces (split at maxDescData). zc is false when a
// piece is not guest RAM the NIC may address, or there are too many.
func (m *Model) txGather(f *nic.Buf, hdr []byte) (total int, zc, ok bool) {
	zc = len(f.GPAs) == len(f.Segs)
	m.txPieces = m.txPieces[:0]
	h := 0
	for i, s := range f.Segs {
		k := copy(hdr[h:], s)
		h += k
		if k == len(s) {
			continue
		}
		gpa := uint64(0)
		if zc {
			gpa = f.GPAs[i] + uint64(k)
			zc = m.cfg.Mem.Contains(gpa, uint64(len(s)-k))
		}
		for run := s[k:]; len(run) > 0; {
			n := min(len(run), maxDescData)
			m.txPieces = append(m.txPieces, txPiece{gpa: gpa, buf: run[:n]})
			total += n
			run, gpa = run[n:], gpa+uint64(n)
		}
	}
	if len(m.txPieces) > maxTxPieces {
		zc = false
	}
	return total, zc, h == len(hdr)
}

// pieceByte reads frame byte off.
func pieceByte(pieces []txPiece, off int) (byte, bool) {
	for _, p := range pieces {
		if off < len(p.buf) {
			return p.buf[off], true
		}
		off -= len(p.buf)
	}
	return 0, false
}

// tsoHeader moves a TSO frame's headers into the private header area and
// rewrites the TCP checksum seed the way an 82599 driver leaves it: the
// guest's partial checksum includes the L4 length, the 82599 adds each
// segment's itself (§7.2.4.5; Linux ixgbe_tso removes it likewise). The
// payload stays in guest memory.
func (m *Model) tsoHeader(pieces []txPiece, p txPlan, total int) []txPiece {
	n := p.hdrLen()
	hb := m.priv[m.txHdr-PrivateBase:][:n]
	rest := m.txRest[:0]
	off := 0
	for _, pc := range pieces {
		c := copy(hb[off:], pc.buf)
		off += c
		if c < len(pc.buf) {
			rest = append(rest, txPiece{gpa: pc.gpa + uint64(c), buf: pc.buf[c:]})
		}
	}
	l4 := p.maclen + p.iplen
	seed := binary.BigEndian.Uint16(hb[l4+16:])
	binary.BigEndian.PutUint16(hb[l4+16:], csum.Fold(uint64(seed)+uint64(^uint16(total-l4))))
	m.txRest = rest
	return append(append(pieces[:0], txPiece{gpa: m.txHdr, buf: hb}), rest...)
}

// txPost writes the descriptors for m.txPieces: the context descriptor
// if the plan has one, then advanced data descriptors (§7.2.3.2.4):
// DTALEN, DTYP=data, DEXT, IFCS, TSE; EOP and RS on the last; PAYLEN and
// the checksum options in every one.
func (m *Model) txPost(p txPlan, total int) {
	cmdx, olinfo := uint32(0), uint64(total)<<txdPaylenSh
	if p.ctx {
		d := m.ring(m.txRing, m.txTail)
		binary.LittleEndian.PutUint64(d, uint64(p.maclen)<<9|uint64(p.iplen))
		binary.LittleEndian.PutUint32(d[8:], txdDTypCtxt|txdCmdDEXT|p.tucmd)
		binary.LittleEndian.PutUint32(d[12:], uint32(p.mss)<<16|uint32(p.l4len)<<8)
		m.txTail = (m.txTail + 1) % m.txSize
		olinfo |= txdPoptsTXSM
	}
	if p.tso {
		cmdx |= txdCmdTSE
		olinfo = uint64(total-p.hdrLen())<<txdPaylenSh | txdPoptsTXSM
		if p.tucmd&tucmdIPv4 != 0 {
			olinfo |= txdPoptsIXSM
		}
	}
	for i, pc := range m.txPieces {
		cmd := uint32(len(pc.buf)) | txdDTypData | txdCmdDEXT | txdCmdIFCS | cmdx
		if i == len(m.txPieces)-1 {
			cmd |= txdCmdEOP | txdCmdRS
		}
		d := m.ring(m.txRing, m.txTail)
		binary.LittleEndian.PutUint64(d, pc.gpa)
		binary.LittleEndian.PutUint64(d[8:], uint64(cmd)|olinfo<<32)
		m.txTail = (m.txTail + 1) % m.txSize
	}
}

// portWire is the 82599's Wire: it prepends the virtio_net_hdr the tap
// expects and writes the frame to the port.
type portWire struct {
	port Port
	zero []byte
	hdr  [20]byte
	iov  [][]byte
	err  error // of the last Send, read under the model's txMu
}

func (w *portWire) setHdrLen(n int) { w.zero = make([]byte, n) }

// Send implements ixgbeemu.Wire: a finished frame (an all-zero header).
// It is only called from ProcessTx, which only runs on the model's
// TDT/TXDCTL writes, under txMu.
func (w *portWire) Send(segs [][]byte) error {
	w.iov = append(append(w.iov[:0], w.zero), segs...)
	w.err = w.port.Writev(w.iov)
	return w.err
}
