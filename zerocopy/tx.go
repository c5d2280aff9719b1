package zerocopy

import (
	"encoding/binary"

	"github.com/govmm/govmm/devices/nic"
)

// Transmit path: each guest frame becomes 82599 advanced data descriptors
// pointing at the guest's own tx buffers (after the virtio_net_hdr); the
// TDT write runs the 82599's transmit, which hands the descriptor views to
// the wire (portWire → one writev on the tap). No offloads: the guest sends
// finished frames, so the vnet header it wrote carries nothing to map.

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

// txPiece is one run of frame bytes after the header.
type txPiece struct {
	gpa uint64
	buf []byte
}

// txOne sends one frame. Called with m.txMu held.
func (m *Model) txOne(f *nic.Buf) {
	zc := len(f.GPAs) == len(f.Segs)
	var pieces [maxTxPieces]txPiece
	np, total, skip := 0, 0, m.txHdrLen
	for i, s := range f.Segs {
		k := min(skip, len(s))
		skip -= k
		if k == len(s) {
			continue
		}
		run := s[k:]
		total += len(run)
		if np == len(pieces) {
			zc = false // more segments than one frame may use: copy
			continue
		}
		p := txPiece{buf: run}
		if zc {
			p.gpa = f.GPAs[i] + uint64(k)
			zc = m.cfg.Mem.Contains(p.gpa, uint64(len(run)))
		}
		pieces[np] = p
		np++
	}
	if skip > 0 || total < 14 || total > txMaxFrame {
		m.cnt.txDropped.Add(1) // no full header, runt, or larger than any non-TSO frame
		return
	}
	if !zc {
		// The RFC's second design, for transmit: copy into the private
		// bounce area and send from there.
		bb := m.priv[m.txBB-PrivateBase:][:total]
		off, skip := 0, m.txHdrLen
		for _, s := range f.Segs {
			k := min(skip, len(s))
			skip -= k
			off += copy(bb[off:], s[k:])
		}
		pieces[0], np = txPiece{gpa: m.txBB, buf: bb}, 1
		m.cnt.txCopiedBytes.Add(uint64(total))
	}
	// Advanced data descriptors (§7.2.3.2.4): DTALEN, DTYP=data, DEXT,
	// IFCS; EOP and RS on the last; PAYLEN in every one.
	for i := 0; i < np; i++ {
		cmd := uint32(len(pieces[i].buf)) | txdDTypData | txdCmdDEXT | txdCmdIFCS
		if i == np-1 {
			cmd |= txdCmdEOP | txdCmdRS
		}
		d := m.ring(m.txRing, m.txTail)
		binary.LittleEndian.PutUint64(d, pieces[i].gpa)
		binary.LittleEndian.PutUint64(d[8:], uint64(cmd)|uint64(total)<<(32+txdPaylenSh))
		m.txTail = (m.txTail + 1) % m.txSize
	}
	m.wire.err = nil
	m.dev.WriteReg(regTDT, m.txTail) // runs the 82599 transmit synchronously
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

// maxTxPieces bounds the descriptors of one frame (Linux sends at most
// MAX_SKB_FRAGS+2 segments); more are copied.
const maxTxPieces = 32

// portWire is the 82599's Wire: it prepends the virtio_net_hdr the tap
// expects (all zero: no offloads) and writes the frame to the port.
type portWire struct {
	port Port
	zero []byte
	iov  [][]byte
	err  error // of the last Send, read under the model's txMu
}

func (w *portWire) setHdrLen(n int) { w.zero = make([]byte, n) }

// Send implements ixgbeemu.Wire. It is only called from ProcessTx, which
// only runs on the model's TDT/TXDCTL writes, under txMu.
func (w *portWire) Send(segs [][]byte) error {
	w.iov = append(append(w.iov[:0], w.zero), segs...)
	w.err = w.port.Writev(w.iov)
	return w.err
}
