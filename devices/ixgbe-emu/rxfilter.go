// Rx admission: the frame length limits and the L2 address filters (§7.1.1).

package ixgbeemu

import "encoding/binary"

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
