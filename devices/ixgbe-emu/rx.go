package ixgbeemu

import (
	"encoding/binary"
	"sync"
)

// Receive path (datasheet §7.1).

type rxQueue struct {
	mu                        sync.Mutex
	idx                       int
	bal, bah, rdlen, rdh, rdt uint32
	srrctl, rxdctl            uint32
	gen                       uint64 // bumped by any ring (re)configuration
	resv                      rxResv
	// dmaBusy is set while a zero-copy receive handed out by RxTarget is
	// in flight (until RxComplete or RxAbort). It survives ring
	// reconfiguration and reset: the caller may still be writing into
	// the buffers.
	dmaBusy bool
	bufs    [][]byte
	descs   [][]byte
	lens    []int
	// ringView caches the DMA view of the whole descriptor ring at
	// ringBase (the DMA space never changes under a device), so the
	// zero-copy path does not translate every descriptor address.
	ringView []byte
	ringBase uint64
}

// descRing returns the view of the ring of size descriptors at base, or
// nil if it does not lie in one piece of the DMA space.
func (q *rxQueue) descRing(dma DMA, base uint64, size uint32) []byte {
	if q.ringView != nil && q.ringBase == base && len(q.ringView) == 16*int(size) {
		return q.ringView
	}
	v, err := dma.Slice(base, 16*uint64(size))
	if err != nil {
		return nil
	}
	q.ringView, q.ringBase = v, base
	return v
}

// rxResv remembers what RxTarget handed out.
type rxResv struct {
	valid bool
	gen   uint64
	head  uint32
	n     int
}

func (q *rxQueue) reset() {
	q.bal, q.bah, q.rdlen, q.rdh, q.rdt, q.rxdctl = 0, 0, 0, 0, 0, 0
	q.srrctl = 0x00000402 // §8.2.3.8.7 default: BSIZEPACKET 2 KB, BSIZEHEADER 256 B
	q.gen++
	q.resv = rxResv{}
}

func (d *Device) readRxQ(key int) uint32 {
	q := d.rxq[key>>8]
	q.mu.Lock()
	defer q.mu.Unlock()
	switch key & 0xFF {
	case qRDBAL:
		return q.bal
	case qRDBAH:
		return q.bah
	case qRDLEN:
		return q.rdlen
	case qRDH:
		return q.rdh
	case qRDT:
		return q.rdt
	case qSRRCTL:
		return q.srrctl
	case qRXDCTL:
		// §4.6.7.1 (disabling a receive queue): RXDCTL.ENABLE reads 1
		// until the queue has actually stopped, which software polls
		// before it frees the ring's buffers (ixgbe_disable_rx_queue). A
		// zero-copy receive still writing into the buffers keeps it set.
		if q.dmaBusy {
			return q.rxdctl | rxdctlEnable
		}
		return q.rxdctl
	}
	return 0
}

func (d *Device) writeRxQ(key int, v uint32) {
	n := key >> 8
	d.writeRxQLocked(n, key&0xFF, v)
	d.rxNotify(n)
}

func (d *Device) writeRxQLocked(n, reg int, v uint32) {
	q := d.rxq[n]
	q.mu.Lock()
	defer q.mu.Unlock()
	switch reg {
	case qRDBAL:
		q.bal = v &^ 0x7F // §8.2.3.8.1: 128-byte aligned
	case qRDBAH:
		q.bah = v
	case qRDLEN:
		q.rdlen = v & 0xFFF80 // §8.2.3.8.3: bits 19:7
	case qRDH:
		q.rdh = v & 0xFFFF
	case qRDT:
		q.rdt = v & 0xFFFF
		return
	case qSRRCTL:
		q.srrctl = v
	case qRXDCTL:
		v &^= rxdctlSWFlsh
		if n >= d.cfg.Queues {
			v &^= rxdctlEnable // queue not implemented: never enables
		}
		q.rxdctl = v
	}
	q.gen++
}

// rxNotify tells the VMM (Config.RxNotify) that the receive state of queue
// (-1: every queue) may have changed: descriptors posted through RDT, a
// queue or the receive unit enabled or disabled, or a reset. It is called
// without any device lock held.
func (d *Device) rxNotify(queue int) {
	if d.cfg.RxNotify != nil {
		d.cfg.RxNotify(queue)
	}
}

// ring geometry, validated. ok=false for hostile configurations.
func (q *rxQueue) ring() (base uint64, size uint32, ok bool) {
	size = q.rdlen / 16
	base = uint64(q.bah)<<32 | uint64(q.bal)
	ok = size != 0 && q.rdh < size && q.rdt < size
	return
}

func (q *rxQueue) free(size uint32) uint32 { return (q.rdt + size - q.rdh) % size }

func (q *rxQueue) bsize() int { return int(q.srrctl&srrctlBSizePktMask) * 1024 }

func (q *rxQueue) descType() uint32 { return q.srrctl >> srrctlDescTypeSh & 7 }

// maxFrame returns the largest accepted frame excluding the 4-byte FCS
// (§8.2.3.22.13 MAXFRS.MFS counts it; without HLREG0.JUMBOEN the limit is
// 1518; a VLAN tag adds 4).
func (d *Device) maxFrame(vlan bool) int {
	m := 1518
	if d.store[regHLREG0/4]&hlreg0JumboEn != 0 {
		m = int(d.store[regMAXFRS/4] >> 16)
	}
	if vlan {
		m += 4
	}
	return m - 4
}

// admit applies the length checks and the L2 filter (§7.1.1, "Rx
// filtering"). hdr holds at least the first 18 bytes of the frame when
// available. Called with d.mu read-locked.
func (d *Device) admit(hdr []byte, n int) (bcast, mcast bool, err error) {
	if d.store[regRXCTRL/4]&rxctrlRXEN == 0 {
		d.cnt.rxDisabled.Add(1)
		return false, false, ErrRxDisabled
	}
	if n < 14 || len(hdr) < 14 {
		d.cnt.ruc.add(1)
		return false, false, ErrUndersize
	}
	vlan := binary.BigEndian.Uint16(hdr[12:]) == etherTypeVLAN
	if n > d.maxFrame(vlan) {
		d.cnt.roc.add(1)
		return false, false, ErrOversize
	}
	fctrl := d.store[regFCTRL/4]
	dst := hdr[:6]
	switch {
	case dst[0]&1 == 0: // unicast: RAL/RAH perfect match or UPE
		if fctrl&fctrlUPE != 0 || d.rarMatch(dst) {
			return false, false, nil
		}
	case isBroadcast(dst):
		if fctrl&fctrlBAM != 0 {
			return true, false, nil
		}
	default: // multicast: MPE, or the MTA hash (§7.1.1.1.2)
		if fctrl&fctrlMPE != 0 || d.mtaMatch(dst) {
			return false, true, nil
		}
	}
	d.cnt.rxFiltered.Add(1)
	return false, false, ErrFiltered
}

func isBroadcast(a []byte) bool {
	return a[0]&a[1]&a[2]&a[3]&a[4]&a[5] == 0xFF
}

func (d *Device) rarMatch(dst []byte) bool {
	lo := uint32(dst[0]) | uint32(dst[1])<<8 | uint32(dst[2])<<16 | uint32(dst[3])<<24
	hi := uint32(dst[4]) | uint32(dst[5])<<8
	for w := 0; w < 2; w++ {
		m := d.rarValid[w]
		for m != 0 {
			i := trailingZeros(m)
			m &= m - 1
			e := w*64 + i
			if d.store[regRAL/4+uint32(2*e)] == lo && d.store[regRAL/4+uint32(2*e)+1]&0xFFFF == hi {
				return true
			}
		}
	}
	return false
}

func trailingZeros(m uint64) int {
	n := 0
	for m&1 == 0 {
		m >>= 1
		n++
	}
	return n
}

// mtaMatch implements the 4096-bit multicast table lookup selected by
// MCSTCTRL.MO (bits 1:0), exactly as ixgbe_mta_vector computes it.
func (d *Device) mtaMatch(a []byte) bool {
	mc := d.store[regMCSTCTRL/4]
	if mc&mcstctrlMFE == 0 {
		return false
	}
	var v uint32
	switch mc & 3 {
	case 0:
		v = uint32(a[4])>>4 | uint32(a[5])<<4
	case 1:
		v = uint32(a[4])>>3 | uint32(a[5])<<5
	case 2:
		v = uint32(a[4])>>2 | uint32(a[5])<<6
	case 3:
		v = uint32(a[4]) | uint32(a[5])<<8
	}
	v &= 0xFFF
	return d.store[regMTA/4+(v>>5)]>>(v&31)&1 != 0
}

// statIdx maps a queue to its per-queue statistics register set through
// RQSMR (rx) or TQSM (tx) (§8.2.3.8.9, §8.2.3.9.13).
func (d *Device) statIdx(base uint32, q int) int {
	return int(d.store[base/4+uint32(q/4)] >> (8 * uint(q%4)) & 0xF)
}

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
	d.rxWriteBack(q, size, pktType, status, errs|hdrErr, uint32(hlen), sph, dt == descTypeLegacy)
	return nil
}

// rxSkip drops a frame whose last descriptor, descs[len-1], has a buffer
// outside the DMA space: it consumes descs (those from RDH up to the bad
// one) in order, each written back with DD and length 0, the last with
// EOP and RXE, and counts an error. Consuming only the bad descriptor
// would leave the one at RDH without DD, and the driver waits for
// descriptors in ring order (§7.1.6.2).
func (d *Device) rxSkip(q *rxQueue, descs [][]byte, size uint32, legacy bool) {
	d.cnt.rxErrors.Add(1)
	for i, desc := range descs {
		// Advanced layout (§7.1.6.2): status and errors in bits 31:0.
		// Legacy layout (§7.1.5): status 39:32, errors 47:40 (RXE: 47).
		wb := uint64(rxdStatDD)
		if legacy {
			wb <<= 32
		}
		if i == len(descs)-1 {
			wb = uint64(rxdStatDD | rxdStatEOP | rxdErrRXE)
			if legacy {
				wb = (rxdStatDD|rxdStatEOP)<<32 | 1<<47
			}
		}
		binary.LittleEndian.PutUint64(desc, 0)
		store64(desc[8:], wb)
	}
	q.rdh = (q.rdh + uint32(len(descs))) % size
}

// rxWriteBack writes back q.descs with q.lens and advances RDH. The lower
// qword is written first and the upper qword (status, errors, length,
// VLAN) last with one 64-bit store, so a driver that sees DD or a non-zero
// length sees the whole descriptor (§7.1.6.2; Linux ixgbe_clean_rx_irq polls
// wb.upper.length, then dma_rmb()).
func (d *Device) rxWriteBack(q *rxQueue, size uint32, pktType, status, errs, hlen, sph uint32, legacy bool) {
	last := len(q.descs) - 1
	for i, desc := range q.descs {
		st := uint32(rxdStatDD)
		var er uint32
		if i == last {
			st |= rxdStatEOP | status
			er = errs
		}
		plen := uint64(q.lens[i])
		if legacy {
			// Legacy write-back (§7.1.5): length 15:0, checksum 31:16,
			// status 39:32, errors 47:40, VLAN 63:48.
			lst := uint64(st & 3)
			if st&rxdStatIPCS != 0 {
				lst |= 1 << 6
			}
			if st&rxdStatL4CS != 0 {
				lst |= 1 << 5
			}
			var ler uint64
			if er&rxdErrTCPE != 0 {
				ler |= 1 << 5
			}
			if er&rxdErrIPE != 0 {
				ler |= 1 << 6
			}
			binary.LittleEndian.PutUint64(desc, 0)
			store64(desc[8:], plen|lst<<32|ler<<40)
			continue
		}
		dw0 := pktType << 4
		if i == 0 {
			dw0 |= (hlen&0x3FF)<<21 | sph<<31
		}
		binary.LittleEndian.PutUint64(desc, uint64(dw0))
		store64(desc[8:], uint64(st|er)|plen<<32)
	}
	q.rdh = (q.rdh + uint32(len(q.descs))) % size
}

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
	if d.store[regRXCTRL/4]&rxctrlRXEN == 0 || q.rxdctl&rxdctlEnable == 0 {
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
	d.rxWriteBack(q, size, pktType, status, errs, 0, 0, q.descType() == descTypeLegacy)
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
