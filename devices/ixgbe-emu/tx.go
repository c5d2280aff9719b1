package ixgbeemu

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"hash/crc32"
	"sync"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Transmit path (datasheet §7.2).

// Advanced tx descriptor fields (§7.2.3.2.3/4; ixgbe_type.h).
const (
	txdDTypShift = 20
	txdDTypCtxt  = 2
	txdDTypData  = 3
	txdCmdEOP    = 1 << 24
	txdCmdRS     = 1 << 27
	txdCmdDEXT   = 1 << 29
	txdCmdVLE    = 1 << 30
	txdCmdTSE    = 1 << 31
	txdPoptsIXSM = 1 << 8 // in olinfo_status (dword 3)
	txdPoptsTXSM = 1 << 9
	txdStatDD    = 1 << 0

	tucmdIPv4   = 1 << 10
	tucmdL4TTCP = 1 << 11
	tucmdL4TSCT = 2 << 11

	maxTxFrame = 256 << 10 // TSO limit (§7.2.4.1: up to 256 KB)
)

type txCtx struct {
	vlanMacIP, tucmd, mssL4 uint32
}

type txQueue struct {
	mu                        sync.Mutex
	idx                       int
	bal, bah, tdlen, tdh, tdt uint32
	txdctl, wbal, wbah        uint32
	ctx                       [2]txCtx
	segs                      [][]byte
	rs                        []uint32
	scratch, seg              []byte
	one                       [1][]byte
	hdr                       []byte   // rewritten headers of a TSO hand-off
	hsegs                     [][]byte // hdr + the frame's views after it
	lb                        []byte   // gathered frame for MAC loopback
	lbRx                      bool     // a looped-back frame reached rx queue 0
}

func (q *txQueue) reset() {
	q.bal, q.bah, q.tdlen, q.tdh, q.tdt, q.txdctl, q.wbal, q.wbah = 0, 0, 0, 0, 0, 0, 0, 0
	q.ctx = [2]txCtx{}
}

func (d *Device) readTxQ(key int) uint32 {
	q := d.txq[key>>8]
	q.mu.Lock()
	defer q.mu.Unlock()
	switch key & 0xFF {
	case qRDBAL:
		return q.bal
	case qRDBAH:
		return q.bah
	case qRDLEN:
		return q.tdlen
	case qRDH:
		return q.tdh
	case qRDT:
		return q.tdt
	case qRXDCTL:
		return q.txdctl
	case qTDWBAL:
		return q.wbal
	case qTDWBAH:
		return q.wbah
	}
	return 0
}

func (d *Device) writeTxQ(key int, v uint32) {
	n := key >> 8
	q := d.txq[n]
	q.mu.Lock()
	kick := false
	switch key & 0xFF {
	case qRDBAL:
		q.bal = v &^ 0x7F
	case qRDBAH:
		q.bah = v
	case qRDLEN:
		q.tdlen = v & 0xFFF80
	case qRDH:
		q.tdh = v & 0xFFFF
	case qRDT:
		q.tdt = v & 0xFFFF
		kick = true
	case qRXDCTL:
		v &^= txdctlSWFlsh
		if n >= d.cfg.Queues {
			v &^= txdctlEnable
		}
		q.txdctl = v
		kick = v&txdctlEnable != 0
	case qTDWBAL:
		q.wbal = v
	case qTDWBAH:
		q.wbah = v
	}
	q.mu.Unlock()
	if kick {
		_ = d.ProcessTx(n)
	}
}

// ProcessTx transmits every complete frame between TDH and TDT of queue
// (§7.2.1): it is called from the TDT/TXDCTL register write path and may be
// called from any goroutine (e.g. a VMM tx thread); it is safe for
// concurrent use. A frame whose EOP descriptor is not yet behind TDT is left
// for the next call.
func (d *Device) ProcessTx(queue int) error {
	if err := d.checkQueue(queue); err != nil {
		return err
	}
	d.mu.RLock()
	q := d.txq[queue]
	q.mu.Lock()
	did, err := d.processTx(q)
	lbRx := q.lbRx
	q.lbRx = false
	q.mu.Unlock()
	d.mu.RUnlock()
	if did || lbRx {
		d.imu.Lock()
		if did {
			d.ic.raiseQueue(queue, true)
		}
		if lbRx {
			d.ic.raiseQueue(loopbackQueue, false)
		}
		d.imu.Unlock()
	}
	return err
}

func (d *Device) processTx(q *txQueue) (did bool, err error) {
	if d.store[regDMATXCTL/4]&dmatxctlTE == 0 || q.txdctl&txdctlEnable == 0 {
		return false, nil
	}
	size := q.tdlen / 16
	if size == 0 || q.tdt >= size || q.tdh >= size {
		d.cnt.txErrors.Add(1)
		return false, ErrBadRing
	}
	base := uint64(q.bah)<<32 | uint64(q.bal)
	for q.tdh != q.tdt {
		q.segs, q.rs = q.segs[:0], q.rs[:0]
		idx := q.tdh
		var cmd, olinfo uint32
		first, eop, bad := true, false, false
		total := 0
		for idx != q.tdt && !eop {
			desc, e := d.dma.Slice(base+16*uint64(idx), 16)
			if e != nil {
				d.cnt.txErrors.Add(1)
				return did, ErrDMA // ring unreadable: stop, head stays
			}
			lo := binary.LittleEndian.Uint64(desc)
			dw2 := binary.LittleEndian.Uint32(desc[8:])
			dw3 := binary.LittleEndian.Uint32(desc[12:])
			cur := idx
			idx = (idx + 1) % size
			dtyp := dw2 >> txdDTypShift & 0xF
			if dw2&txdCmdDEXT != 0 && dtyp == txdDTypCtxt {
				// Advanced context descriptor (§7.2.3.2.3).
				q.ctx[dw3>>4&1] = txCtx{vlanMacIP: uint32(lo), tucmd: dw2, mssL4: dw3}
				continue
			}
			if dw2&txdCmdRS != 0 {
				q.rs = append(q.rs, cur)
			}
			if dw2&txdCmdDEXT != 0 && dtyp != txdDTypData {
				bad = true
			}
			if first {
				cmd, olinfo, first = dw2, dw3, false
				if dw2&txdCmdDEXT == 0 {
					cmd &^= txdCmdVLE | txdCmdTSE // legacy descriptor: no offloads modelled
					olinfo = 0
				}
			}
			eop = dw2&txdCmdEOP != 0
			n := int(dw2 & 0xFFFF)
			if n == 0 || bad {
				continue
			}
			buf, e := d.dma.Slice(lo, uint64(n))
			if e != nil {
				bad = true
				continue
			}
			total += n
			q.segs = append(q.segs, buf)
		}
		if !eop {
			if first && idx == q.tdt {
				q.tdh = idx // only context descriptors: consumed
				did = true
			}
			break // frame incomplete: wait for more descriptors
		}
		if bad || total == 0 || total > maxTxFrame {
			d.cnt.txErrors.Add(1)
		} else if e := d.txSend(q, total, cmd, olinfo); e != nil {
			d.cnt.txErrors.Add(1)
		}
		// Descriptor write-back (§7.2.3.5.2): DD in the status of every
		// descriptor with RS; Linux polls the EOP descriptor's wb.status.
		for _, r := range q.rs {
			if desc, e := d.dma.Slice(base+16*uint64(r)+12, 4); e == nil {
				store32(desc, txdStatDD)
			}
		}
		q.tdh = idx
		did = true
	}
	if did && q.wbal&1 != 0 {
		// Head write-back (§7.2.3.5.1, TDWBAL.Head_WB_En).
		if b, e := d.dma.Slice(uint64(q.wbah)<<32|uint64(q.wbal&^3), 4); e == nil {
			store32(b, q.tdh)
		}
	}
	return did, nil
}

// txSend applies the offloads and hands the frame to the wire. Without
// offloads the descriptor buffers are passed as-is (zero copy).
func (d *Device) txSend(q *txQueue, total int, cmd, olinfo uint32) error {
	if cmd&(txdCmdTSE|txdCmdVLE) == 0 && olinfo&(txdPoptsIXSM|txdPoptsTXSM) == 0 {
		return d.emit(q, q.segs, total)
	}
	if w, ok := d.wire.(OffloadWire); ok && cmd&txdCmdVLE == 0 && !d.loopback() {
		if handled, err := d.txHandOff(q, w, total, cmd, olinfo); handled {
			return err
		}
	}
	if cap(q.scratch) < total {
		q.scratch = make([]byte, total)
	}
	f := q.scratch[:total]
	off := 0
	for _, s := range q.segs {
		off += copy(f[off:], s)
	}
	ctx := q.ctx[olinfo>>4&1]
	maclen := int(ctx.vlanMacIP >> 9 & 0x7F)
	iplen := int(ctx.vlanMacIP & 0x1FF)
	l4t := ctx.tucmd & (3 << 11)
	ipv4 := ctx.tucmd&tucmdIPv4 != 0
	var vlan []byte
	if cmd&txdCmdVLE != 0 {
		vlan = []byte{0x81, 0x00, byte(ctx.vlanMacIP >> 24), byte(ctx.vlanMacIP >> 16)}
	}
	if cmd&txdCmdTSE != 0 {
		return d.tso(q, f, ctx, maclen, iplen, ipv4, vlan)
	}
	if olinfo&txdPoptsIXSM != 0 {
		if !ipv4 || maclen+iplen > total || iplen < 20 {
			return ErrBadRing
		}
		ipChecksum(f[maclen : maclen+iplen])
	}
	if olinfo&txdPoptsTXSM != 0 && l4t == tucmdL4TSCT {
		// SCTP CRC32c offload (§7.2.5, transmit checksum offload; Linux
		// advertises NETIF_F_SCTP_CRC on 82599): CRC-32C over the whole
		// SCTP packet with the checksum field taken as 0, stored in the
		// checksum field in little-endian byte order, as Linux
		// sctp_compute_cksum does.
		l4 := maclen + iplen
		if l4+12 > total {
			return ErrBadRing
		}
		clear(f[l4+8 : l4+12])
		binary.LittleEndian.PutUint32(f[l4+8:], crc32.Checksum(f[l4:], castagnoli))
	}
	if olinfo&txdPoptsTXSM != 0 && l4t != tucmdL4TSCT {
		l4 := maclen + iplen
		co := l4 + 6 // UDP
		if l4t == tucmdL4TTCP {
			co = l4 + 16
		}
		if co+2 > total {
			return ErrBadRing
		}
		// The driver seeds the checksum field with the pseudo-header sum
		// (§7.2.5.1); the hardware sums from the L4 header to the end.
		c := ^csum.Fold(csum.Sum(f[l4:], 0))
		if c == 0 && l4t != tucmdL4TTCP {
			c = 0xFFFF
		}
		binary.BigEndian.PutUint16(f[co:], c)
	}
	return d.emitOne(q, f, vlan)
}

func ipChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[10:], 0)
	binary.BigEndian.PutUint16(h[10:], ^csum.Fold(csum.Sum(h, 0)))
}

// tso segments a TCP frame (§7.2.4 "TCP segmentation"): every segment gets
// the MACLEN+IPLEN+L4LEN header with IPv4 total length / ID (+1 per
// segment) and header checksum, or the IPv6 payload length, the TCP
// sequence number advanced by the payload already sent, the TCP flags
// masked by DTXTCPFLGL/H (first/middle/last), and the TCP checksum
// completed from the pseudo-header seed (without length) the driver left in
// the header.
func (d *Device) tso(q *txQueue, f []byte, ctx txCtx, maclen, iplen int, ipv4 bool, vlan []byte) error {
	mss := int(ctx.mssL4 >> 16)
	l4len := int(ctx.mssL4 >> 8 & 0xFF)
	hdr := maclen + iplen + l4len
	if ctx.tucmd&(3<<11) != tucmdL4TTCP || mss == 0 || l4len < 20 || iplen < 20 || hdr > len(f) {
		return ErrBadRing
	}
	payload := f[hdr:]
	nseg := max(1, (len(payload)+mss-1)/mss)
	l4 := maclen + iplen
	seq := binary.BigEndian.Uint32(f[l4+4:])
	ipid := uint16(0)
	if ipv4 {
		ipid = binary.BigEndian.Uint16(f[maclen+4:])
	}
	flgl := d.store[regDTXTCPFLGL/4]
	flgh := d.store[regDTXTCPFLGH/4]
	flags := binary.BigEndian.Uint16(f[l4+12:])
	if cap(q.seg) < hdr+mss {
		q.seg = make([]byte, hdr+mss)
	}
	for i := 0; i < nseg; i++ {
		chunk := payload[min(i*mss, len(payload)):min((i+1)*mss, len(payload))]
		s := q.seg[:hdr+len(chunk)]
		copy(s, f[:hdr])
		copy(s[hdr:], chunk)
		if ipv4 {
			binary.BigEndian.PutUint16(s[maclen+2:], uint16(iplen+l4len+len(chunk)))
			binary.BigEndian.PutUint16(s[maclen+4:], ipid+uint16(i))
			ipChecksum(s[maclen : maclen+iplen])
		} else {
			binary.BigEndian.PutUint16(s[maclen+4:], uint16(iplen-40+l4len+len(chunk)))
		}
		binary.BigEndian.PutUint32(s[l4+4:], seq+uint32(i*mss))
		m := uint16(0xFFF)
		if i == 0 {
			m &= uint16(flgl & 0xFFF)
		}
		if i == nseg-1 {
			m &= uint16(flgh & 0xFFF)
		}
		if i != 0 && i != nseg-1 {
			m &= uint16(flgl >> 16 & 0xFFF)
		}
		binary.BigEndian.PutUint16(s[l4+12:], flags&0xF000|flags&m)
		sum := csum.Sum(s[l4:], uint64(l4len+len(chunk)))
		binary.BigEndian.PutUint16(s[l4+16:], ^csum.Fold(sum))
		if err := d.emitOne(q, s, vlan); err != nil {
			return err
		}
	}
	return nil
}

// emitOne sends one contiguous frame, inserting the 802.1Q tag after the
// MAC addresses when VLE asked for it (§7.2.3.2.4, DCMD.VLE).
func (d *Device) emitOne(q *txQueue, f []byte, vlan []byte) error {
	if vlan != nil && len(f) >= 12 {
		q.segs = append(q.segs[:0], f[:12], vlan, f[12:])
		return d.emit(q, q.segs, len(f)+4)
	}
	q.one[0] = f
	return d.emit(q, q.one[:], len(f))
}

func (d *Device) emit(q *txQueue, segs [][]byte, n int) error {
	d.countTx(q, segs, n, 1, 0)
	if d.loopback() {
		d.loopBack(q, segs, n)
		return nil
	}
	if d.wire == nil {
		return nil
	}
	return d.wire.Send(segs)
}

// countTx counts a frame of n bytes that leaves as nseg packets, each
// after the first repeating hdr header bytes (TSO, §7.2.4), in the
// statistics registers (§8.2.3.23).
func (d *Device) countTx(q *txQueue, segs [][]byte, n, nseg, hdr int) {
	bytes := uint64(n + (nseg-1)*hdr)
	c := &d.cnt
	c.gptc.add(uint64(nseg))
	c.gotc.add(bytes)
	c.tpt.add(uint64(nseg))
	c.ptc[sizeBucket(int(bytes)/nseg)].add(uint64(nseg))
	if dst := segs[0]; len(dst) >= 6 && dst[0]&1 != 0 {
		if isBroadcast(dst) {
			c.bptc.add(uint64(nseg))
		} else {
			c.mptc.add(uint64(nseg))
		}
	}
	i := d.statIdx(regTQSM, q.idx)
	c.qptc[i].add(uint64(nseg))
	c.qbtc[i].add(bytes)
}

// loopbackQueue is the rx queue looped-back frames go to (no RSS: the
// queue every frame goes to).
const loopbackQueue = 0

// loopback reports HLREG0.LPBK (MAC loopback). Called with d.mu held.
func (d *Device) loopback() bool { return d.store[regHLREG0/4]&hlreg0Lpbk != 0 }

// loopBack receives a transmitted frame on rx queue 0 instead of sending
// it (HLREG0.LPBK). Called with d.mu read-locked and tq.mu held; takes the
// rx queue lock (lock order: tx queue, then rx queue).
func (d *Device) loopBack(tq *txQueue, segs [][]byte, n int) {
	// The receive filter first, on the header alone: a frame it drops
	// (oversize included) costs no gathering, and the buffer below never
	// outgrows the largest frame receive accepts.
	var hdr [14]byte
	gather(hdr[:], segs)
	bcast, mcast, err := d.admit(hdr[:], n)
	if err != nil {
		return // counted by admit
	}
	if cap(tq.lb) < n {
		tq.lb = make([]byte, n)
	}
	f := tq.lb[:n]
	gather(f, segs)
	q := d.rxq[loopbackQueue]
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dmaBusy {
		// A port frame is being read into the next buffers (reserved
		// before LPBK was set): do not write them too.
		d.rxMissed(q)
		return
	}
	if d.rxPlace(q, f) == nil {
		d.rxCount(loopbackQueue, n, bcast, mcast)
		tq.lbRx = true
	}
}
