// Rx queue state: the ring registers (§8.2.3.8) and the ring they describe.

package ixgbeemu

import "sync"

// rxQueue is one receive queue: its registers and any zero-copy receive
// in flight.
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
