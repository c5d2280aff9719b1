package ixgbeemu

import "sync/atomic"

// counter is one statistics register (§8.2.3.23: all statistics registers
// are clear-on-read). The cumulative count (for Stats) is own, or the
// count of the register it moves with (of), so registers that always count
// the same events cost the receive path one atomic add, not four. base is
// the count at the last register read, so the register reads count-base
// and a read moves base up to the count.
type counter struct {
	own  atomic.Uint64
	of   *counter      // set: this register counts what of counts
	base atomic.Uint64 // the count at the last read
	hi   atomic.Uint32 // latched high half of a 64-bit L/H pair
}

func (c *counter) count() *atomic.Uint64 {
	if c.of != nil {
		return &c.of.own
	}
	return &c.own
}

func (c *counter) add(n uint64) { c.count().Add(n) }

func (c *counter) total() uint64 { return c.count().Load() }

func (c *counter) readClear() uint64 {
	t := c.total()
	b := c.base.Swap(t)
	return t - b
}

// readLow reads the low register of a 64-bit pair: it clears the counter and
// latches the high half for the following high-register read.
func (c *counter) readLow() uint32 {
	v := c.readClear()
	c.hi.Store(uint32(v >> 32))
	return uint32(v)
}

func (c *counter) readHigh() uint32 { return c.hi.Swap(0) }

func (c *counter) clearReg() { c.base.Store(c.total()); c.hi.Store(0) }

type counters struct {
	gprc, bprc, mprc, gptc, bptc, mptc, tpr, tpt counter
	gorc, gotc, tor                              counter // 64-bit L/H pairs
	roc, ruc, rxnfgpc, rxdgpc                    counter
	mpc                                          [8]counter
	prc, ptc                                     [6]counter // 64,127,255,511,1023,1522 buckets
	qprc, qprdc, qbrc, qptc, qbtc                [numStatRegs]counter
	// unmodelled statistics registers: never incremented, read 0.
	zero map[uint32]*counter

	rxFiltered, rxDisabled, rxErrors, txErrors atomic.Uint64
}

// unmodelled clear-on-read statistics the Linux ixgbe_update_stats reads.
var zeroStatRegs = []uint32{
	regCRCERRS, 0x04004 /*ILLERRC*/, 0x04008 /*ERRBC*/, 0x04010 /*MSPDC*/, 0x04034 /*MLFC*/, 0x04038, /*MRFC*/
	0x04040 /*RLEC*/, 0x03F60 /*LXONTXC*/, 0x041A4 /*LXONRXCNT*/, 0x03F68 /*LXOFFTXC*/, 0x041A8, /*LXOFFRXCNT*/
	0x040A8 /*RFC*/, 0x040B0 /*RJC*/, 0x040B4 /*MNGPRC*/, 0x040B8 /*MNGPDC*/, 0x0CF90, /*MNGPTC*/
	0x08A00 /*XEC*/, 0x03240 /*PXON2OFFCNT*/, 0x04120 /*FCOERPDC*/, 0x02F40, /*FCCRC*/
}

func (c *counters) init() {
	// Every good frame the model receives is a total, a non-filtered and
	// a DMA'd good packet too (it has no filters that drop after the
	// count, §8.2.3.23.26/27).
	c.tpr.of, c.rxnfgpc.of, c.rxdgpc.of, c.tor.of = &c.gprc, &c.gprc, &c.gprc, &c.gorc
	c.zero = make(map[uint32]*counter)
	add := func(off uint32) { c.zero[off] = new(counter) }
	for _, o := range zeroStatRegs {
		add(o)
	}
	for i := uint32(0); i < 8; i++ {
		add(0x03F00 + 4*i) // PXONTXC
		add(0x04140 + 4*i) // PXONRXCNT
		add(0x03F20 + 4*i) // PXOFFTXC
		add(0x04160 + 4*i) // PXOFFRXCNT
		add(regRNBC + 4*i)
	}
}

func (c *counters) all(f func(*counter)) {
	for _, x := range []*counter{&c.gprc, &c.bprc, &c.mprc, &c.gptc, &c.bptc, &c.mptc, &c.tpr, &c.tpt,
		&c.gorc, &c.gotc, &c.tor, &c.roc, &c.ruc, &c.rxnfgpc, &c.rxdgpc} {
		f(x)
	}
	for i := range c.mpc {
		f(&c.mpc[i])
	}
	for i := range c.prc {
		f(&c.prc[i])
		f(&c.ptc[i])
	}
	for i := 0; i < numStatRegs; i++ {
		f(&c.qprc[i])
		f(&c.qprdc[i])
		f(&c.qbrc[i])
		f(&c.qptc[i])
		f(&c.qbtc[i])
	}
}

func (c *counters) clearRegs() { c.all((*counter).clearReg) }

func sizeBucket(n int) int {
	n += 4 // the buckets count frames including the 4-byte CRC
	switch {
	case n <= 64:
		return 0
	case n <= 127:
		return 1
	case n <= 255:
		return 2
	case n <= 511:
		return 3
	case n <= 1023:
		return 4
	}
	return 5
}

// statIdx maps a queue to its per-queue statistics register set through
// RQSMR (rx) or TQSM (tx) (§8.2.3.8.9, §8.2.3.9.13).
func (d *Device) statIdx(base uint32, q int) int {
	return int(d.store[base/4+uint32(q/4)] >> (8 * uint(q%4)) & 0xF)
}
