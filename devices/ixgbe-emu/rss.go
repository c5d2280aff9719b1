// Receive-side scaling (§7.1.2.8): the Toeplitz hash of a frame's
// addresses and ports under the driver's key (RSSRK) picks a queue from
// the 128-entry redirection table (RETA), and the write-back reports the
// hash and its type.

package ixgbeemu

import "encoding/binary"

const (
	regMRQC  = 0x05818
	regRSSRK = 0x05C80 // + 4n, n = 0..9: the 40-byte key, byte 4n in bits 7:0 of RSSRK(n)
	regRETA  = 0x05C00 // + 4n, n = 0..31: entries 4n..4n+3, one byte each (queue in bits 3:0)

	mrqcMRQEMask = 0xF
	mrqcRSS      = 0x1 // MRQE = RSS only (no VMDq, no DCB)
	// Hash-field enables (Linux's IXGBE_MRQC_RSS_FIELD_*).
	mrqcTCPIPv4 = 1 << 16
	mrqcIPv4    = 1 << 17
	mrqcIPv6    = 1 << 20
	mrqcTCPIPv6 = 1 << 21
	mrqcUDPIPv4 = 1 << 22
	mrqcUDPIPv6 = 1 << 23

	rxcsumPCSD = 1 << 13 // the write-back's lower dword carries the RSS hash

	// RSS types in the write-back's packet info bits 3:0.
	rssTypeTCPIPv4 = 0x1
	rssTypeIPv4    = 0x2
	rssTypeTCPIPv6 = 0x3
	rssTypeIPv6    = 0x5
	rssTypeUDPIPv4 = 0x7
	rssTypeUDPIPv6 = 0x8

	retaEntries = 128
)

// rssEnabled reports MRQC.MRQE = RSS. Called with d.mu held.
func (d *Device) rssEnabled() bool { return d.store[regMRQC/4]&mrqcMRQEMask == mrqcRSS }

// rss returns a frame's RSS hash and type (type 0: no hash applies) for
// the fields MRQC enables. Called with d.mu held.
func (d *Device) rss(b []byte, p *pktInfo) (hash, typ uint32) {
	if !d.rssEnabled() || !p.ipv4 && !p.ipv6 {
		return 0, 0
	}
	mrqc := d.store[regMRQC/4]
	var in [36]byte // IPv6 addresses and ports at most
	n := 0
	ports := p.l4end != 0 && !p.frag && p.l4off+4 <= len(b)
	if p.ipv4 {
		if p.l3off+20 > len(b) {
			return 0, 0
		}
		n = copy(in[:], b[p.l3off+12:p.l3off+20]) // source, destination
		switch {
		case ports && p.l4proto == protoTCP && mrqc&mrqcTCPIPv4 != 0:
			typ = rssTypeTCPIPv4
		case ports && p.l4proto == protoUDP && mrqc&mrqcUDPIPv4 != 0:
			typ = rssTypeUDPIPv4
		case mrqc&mrqcIPv4 != 0:
			typ = rssTypeIPv4
		default:
			return 0, 0
		}
	} else {
		if p.l3off+40 > len(b) {
			return 0, 0
		}
		n = copy(in[:], b[p.l3off+8:p.l3off+40])
		switch {
		case ports && p.l4proto == protoTCP && mrqc&mrqcTCPIPv6 != 0:
			typ = rssTypeTCPIPv6
		case ports && p.l4proto == protoUDP && mrqc&mrqcUDPIPv6 != 0:
			typ = rssTypeUDPIPv6
		case mrqc&mrqcIPv6 != 0:
			typ = rssTypeIPv6
		default:
			return 0, 0
		}
	}
	if typ != rssTypeIPv4 && typ != rssTypeIPv6 {
		n += copy(in[n:], b[p.l4off:p.l4off+4]) // source port, destination port
	}
	var key [40]byte
	for i := 0; i < 10; i++ {
		binary.LittleEndian.PutUint32(key[4*i:], d.store[regRSSRK/4+uint32(i)])
	}
	return toeplitz(&key, in[:n]), typ
}

// toeplitz is the Toeplitz hash (Microsoft's RSS specification): for each
// set bit of the input, in order from the first byte's top bit, XOR in
// the 32 key bits that start at that bit position.
func toeplitz(key *[40]byte, in []byte) uint32 {
	var h uint32
	window := binary.BigEndian.Uint32(key[:4]) // key bits i..i+31
	for i, c := range in {
		next := key[i+4] // in is at most 36 bytes: key[i+4] exists
		for bit := 7; bit >= 0; bit-- {
			if c&(1<<bit) != 0 {
				h ^= window
			}
			window = window<<1 | uint32(next>>bit&1)
		}
	}
	return h
}

// rssResult is what the write-back reports of RSS.
type rssResult struct{ hash, typ uint32 }

// rssOf is rss as a write-back field. Called with d.mu held.
func (d *Device) rssOf(b []byte, p *pktInfo) rssResult {
	h, t := d.rss(b, p)
	return rssResult{hash: h, typ: t}
}

// retaQueue returns the queue of RETA entry hash mod 128. Called with d.mu
// held.
func (d *Device) retaQueue(hash uint32) int {
	e := hash % retaEntries
	return int(d.store[regRETA/4+e/4]>>(8*(e%4))) & 0xF
}

// RxSteer returns the receive queue RSS sends frame to, and whether RSS
// is on: a port with one wire for all queues (pcidev's tap) asks before
// it places the frame. With RSS off every frame goes to queue 0.
func (d *Device) RxSteer(frame []byte) (queue int, rss bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.rssEnabled() {
		return 0, false
	}
	p := parseFrame(frame, len(frame))
	hash, typ := d.rss(frame, &p)
	if typ == 0 {
		return 0, true
	}
	q := d.retaQueue(hash)
	if q >= d.cfg.Queues {
		q = 0
	}
	return q, true
}

// RSSSpreads reports whether RSS can send a frame to a queue other than
// 0: it is on (MRQC) and some redirection-table entry names another
// queue. A driver with one queue pair turns RSS on with a table of zeros;
// a port then keeps receiving in place into queue 0.
func (d *Device) RSSSpreads() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.rssEnabled() {
		return false
	}
	for i := uint32(0); i < retaEntries/4; i++ {
		if d.store[regRETA/4+i]&0x0F0F0F0F != 0 {
			return true
		}
	}
	return false
}
