package ixgbeemu

import (
	"encoding/binary"

	"github.com/govmm/govmm/devices/nic/csum"
)

// Transmit offload hand-off. A software NIC's wire is often a host
// interface that can checksum and segment by itself (a Linux tap with
// IFF_VNET_HDR). For such a wire the model neither checksums nor segments
// in software: it hands the frame over unsegmented, payload untouched
// (zero copy), together with the work the context descriptor asked for,
// as QEMU's e1000e and igb models do with a vnet-header backend. The host
// kernel then segments, or does not need to when it delivers the frame
// locally. Only the headers are rewritten, in a device scratch buffer.

// GSO types of TxOffload; the values are virtio_net_hdr's, which a tap
// takes as they are.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOTCPv6 = 4
)

// TxOffload is the work the 82599 would do on one frame. NeedsCsum: the
// ones' complement sum from CsumStart to the end of the frame goes into
// the 16 bits at CsumStart+CsumOffset, which hold the pseudo-header sum
// (length included) as a seed. GSOType other than GSONone: the frame is
// cut into segments of GSOSize payload bytes, each behind a copy of the
// HdrLen header bytes.
type TxOffload struct {
	NeedsCsum             bool
	CsumStart, CsumOffset uint16
	GSOType               uint8
	GSOSize               uint16
	HdrLen                uint16
}

// OffloadWire is a Wire that also takes frames with pending offloads.
type OffloadWire interface {
	Wire
	SendOffload(segs [][]byte, off TxOffload) error
}

// maxOffloadHdr bounds the header a TSO hand-off rewrites: MACLEN (7
// bits) + IPLEN (9 bits) + L4LEN (8 bits).
const maxOffloadHdr = 127 + 511 + 255

// txHandOff passes a frame with TXSM and/or TSE to an OffloadWire. handled
// is false when the request is not expressible as TxOffload (SCTP CRC, an
// IPv4 header checksum without TSO, a TSO frame longer than an IP length
// can describe); the caller then does the work in software.
func (d *Device) txHandOff(q *txQueue, w OffloadWire, total int, cmd, olinfo uint32) (handled bool, err error) {
	ctx := q.ctx[olinfo>>4&1]
	maclen := int(ctx.vlanMacIP >> 9 & 0x7F)
	iplen := int(ctx.vlanMacIP & 0x1FF)
	l4t := ctx.tucmd & (3 << 11)
	ipv4 := ctx.tucmd&tucmdIPv4 != 0
	l4 := maclen + iplen
	tso := cmd&txdCmdTSE != 0
	if l4t == tucmdL4TSCT || olinfo&txdPoptsTXSM == 0 || (!tso && olinfo&txdPoptsIXSM != 0) {
		return false, nil
	}
	if maclen < 14 || iplen < 20 {
		return true, ErrBadRing
	}
	csumOff := 6 // UDP checksum field
	if l4t == tucmdL4TTCP {
		csumOff = 16
	}
	if !tso {
		if l4+csumOff+2 > total {
			return true, ErrBadRing
		}
		d.countTx(q, q.segs, total, 1, 0)
		return true, w.SendOffload(q.segs, TxOffload{NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: uint16(csumOff)})
	}
	mss := int(ctx.mssL4 >> 16)
	hdr := l4 + int(ctx.mssL4>>8&0xFF)
	if l4t != tucmdL4TTCP || mss == 0 || hdr-l4 < 20 || hdr > total {
		return true, ErrBadRing
	}
	if total-maclen > 0xFFFF {
		return false, nil // no IP length field can hold it: segment here
	}
	// Rewrite the headers as the segments would carry them, for the whole
	// frame: the IP length the driver zeroed (§7.2.4.2), the IPv4 header
	// checksum, and the TCP checksum seed. The 82599's seed is the
	// pseudo-header sum without the length (§7.2.4.5: the hardware adds
	// each segment's); a GSO wire expects it with the length, as a stack's
	// partial checksum has it.
	if cap(q.hdr) < hdr {
		q.hdr = make([]byte, maxOffloadHdr)
	}
	h := q.hdr[:hdr]
	gather(h, q.segs)
	gso := uint8(GSOTCPv6)
	if ipv4 {
		gso = GSOTCPv4
		binary.BigEndian.PutUint16(h[maclen+2:], uint16(total-maclen))
		ipChecksum(h[maclen:l4])
	} else {
		binary.BigEndian.PutUint16(h[maclen+4:], uint16(total-maclen-40))
	}
	seed := binary.BigEndian.Uint16(h[l4+16:])
	binary.BigEndian.PutUint16(h[l4+16:], csum.Fold(uint64(seed)+uint64(total-l4)))
	segs := append(q.hsegs[:0], h)
	segs = appendFrom(segs, q.segs, hdr)
	q.hsegs = segs
	nseg := max(1, (total-hdr+mss-1)/mss)
	d.countTx(q, segs, total, nseg, hdr)
	return true, w.SendOffload(segs, TxOffload{
		NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: uint16(csumOff),
		GSOType: gso, GSOSize: uint16(mss), HdrLen: uint16(hdr),
	})
}

// gather fills dst with the first len(dst) bytes of the concatenation of segs.
func gather(dst []byte, segs [][]byte) {
	off := 0
	for _, s := range segs {
		if off == len(dst) {
			return
		}
		off += copy(dst[off:], s)
	}
}

// appendFrom appends to out the views of segs from byte skip on.
func appendFrom(out, segs [][]byte, skip int) [][]byte {
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

// PutVnetHeader writes off as the first 10 bytes of a virtio_net_hdr
// (virtio 1.2 §5.1.6: flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset, little-endian), the form a tap with IFF_VNET_HDR takes.
// b must hold 10 bytes; the rest of b is left alone.
func (off TxOffload) PutVnetHeader(b []byte) {
	var flags, gso uint8
	var hdrLen, gsoSize uint16
	if off.NeedsCsum {
		flags = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	}
	if off.GSOType != GSONone {
		gso, hdrLen, gsoSize = off.GSOType, off.HdrLen, off.GSOSize
	}
	b[0], b[1] = flags, gso
	binary.LittleEndian.PutUint16(b[2:], hdrLen)
	binary.LittleEndian.PutUint16(b[4:], gsoSize)
	binary.LittleEndian.PutUint16(b[6:], off.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], off.CsumOffset)
}
