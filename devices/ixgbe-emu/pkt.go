package ixgbeemu

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"sync/atomic"
	"unsafe"
)

// Minimal L2/L3/L4 parsing for checksum offload, header split and packet
// type reporting.

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
	etherTypeVLAN = 0x8100
	protoTCP      = 6
	protoUDP      = 17
)

type pktInfo struct {
	l3off, l4off, l4end int // l4end = end of the L4 header
	ipv4, ipv6          bool
	ipHdrLen            int
	ipTotal             int // L3 packet length from the IP header (bytes, incl. header)
	frag                bool
	l4proto             uint8
	vlan                bool
}

// parseFrame parses the headers in b (the first contiguous segment of a
// frame of n bytes). Only fields wholly inside b are used.
func parseFrame(b []byte, n int) (p pktInfo) {
	if len(b) > n {
		b = b[:n]
	}
	if len(b) < 14 {
		return
	}
	et := binary.BigEndian.Uint16(b[12:])
	off := 14
	if et == etherTypeVLAN {
		if len(b) < 18 {
			return
		}
		p.vlan = true
		et = binary.BigEndian.Uint16(b[16:])
		off = 18
	}
	p.l3off = off
	switch et {
	case etherTypeIPv4:
		if len(b) < off+20 || b[off]>>4 != 4 {
			return
		}
		ihl := int(b[off]&0xF) * 4
		if ihl < 20 || len(b) < off+ihl {
			return
		}
		p.ipv4, p.ipHdrLen = true, ihl
		p.ipTotal = int(binary.BigEndian.Uint16(b[off+2:]))
		p.frag = binary.BigEndian.Uint16(b[off+6:])&0x3FFF != 0
		p.l4proto = b[off+9]
		p.l4off = off + ihl
	case etherTypeIPv6:
		if len(b) < off+40 || b[off]>>4 != 6 {
			return
		}
		p.ipv6, p.ipHdrLen = true, 40
		p.ipTotal = 40 + int(binary.BigEndian.Uint16(b[off+4:]))
		p.l4proto = b[off+6] // extension headers are not walked
		p.l4off = off + 40
	default:
		return
	}
	if p.frag {
		return
	}
	switch p.l4proto {
	case protoTCP:
		if len(b) >= p.l4off+20 {
			if dl := int(b[p.l4off+12]>>4) * 4; dl >= 20 && len(b) >= p.l4off+dl {
				p.l4end = p.l4off + dl
			}
		}
	case protoUDP:
		if len(b) >= p.l4off+8 {
			p.l4end = p.l4off + 8
		}
	}
	return
}

// segSum sums n bytes starting at byte off of the concatenation of segs.
func segSum(segs [][]byte, off, n int, s uint64) uint64 {
	odd := false
	for _, b := range segs {
		if n <= 0 {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(b) > n {
			b = b[:n]
		}
		n -= len(b)
		if odd && len(b) > 0 {
			s += uint64(b[0]) // low byte of a word begun in the previous segment
			b = b[1:]
			odd = false
		}
		s = csum.Sum(b, s)
		if len(b)%2 == 1 {
			odd = true
		}
	}
	return s
}

func pseudoSum(b []byte, p *pktInfo, l4len int) uint64 {
	var s uint64
	if p.ipv4 {
		s = csum.Sum(b[p.l3off+12:p.l3off+20], 0)
	} else {
		s = csum.Sum(b[p.l3off+8:p.l3off+40], 0)
	}
	return s + uint64(p.l4proto) + uint64(l4len)
}

// rx status / error bits (advanced write-back, §7.1.6.2; ixgbe_type.h).
const (
	rxdStatDD    = 1 << 0
	rxdStatEOP   = 1 << 1
	rxdStatUDPCS = 1 << 4
	rxdStatL4CS  = 1 << 5
	rxdStatIPCS  = 1 << 6
	rxdErrHBO    = 1 << 23
	rxdErrRXE    = 1 << 29
	rxdErrTCPE   = 1 << 30
	rxdErrIPE    = 1 << 31

	pktTypeIPv4 = 1 << 0
	pktTypeIPv6 = 1 << 2
	pktTypeTCP  = 1 << 4
	pktTypeUDP  = 1 << 5
)

// rxOffload computes the packet type and the checksum status/error bits
// (§7.1.11 "Receive checksum offloading": IPv4 header checksum and TCP/UDP
// checksums of non-fragmented IPv4/IPv6 packets are always checked by the
// 82599; RXCSUM has no enable bits for them — only IPPCSE/PCSD, which select
// what the fragment-checksum field carries, and that field is not modelled).
// rxPktType is the packet type field of the write-back alone.
func rxPktType(b []byte, n int) uint32 {
	p := parseFrame(b, n)
	var t uint32
	switch {
	case p.ipv4:
		t = pktTypeIPv4
	case p.ipv6:
		t = pktTypeIPv6
	default:
		return 0
	}
	switch {
	case p.l4end == 0:
	case p.l4proto == protoTCP:
		t |= pktTypeTCP
	case p.l4proto == protoUDP:
		t |= pktTypeUDP
	}
	return t
}

func rxOffload(segs [][]byte, n int) (pktType, status, errs uint32, p pktInfo) {
	p = parseFrame(segs[0], n)
	if !p.ipv4 && !p.ipv6 {
		return
	}
	b := segs[0]
	if p.ipv4 {
		pktType |= pktTypeIPv4
		status |= rxdStatIPCS
		if csum.Fold(csum.Sum(b[p.l3off:p.l3off+p.ipHdrLen], 0)) != 0xFFFF {
			errs |= rxdErrIPE
		}
	} else {
		pktType |= pktTypeIPv6
	}
	if p.l4end == 0 || p.ipTotal < p.ipHdrLen || p.l3off+p.ipTotal > n {
		return
	}
	l4len := p.ipTotal - p.ipHdrLen
	switch p.l4proto {
	case protoTCP:
		pktType |= pktTypeTCP
	case protoUDP:
		pktType |= pktTypeUDP
		if p.ipv4 && binary.BigEndian.Uint16(b[p.l4off+6:]) == 0 {
			return // no UDP checksum
		}
		status |= rxdStatUDPCS
	}
	status |= rxdStatL4CS
	s := segSum(segs, p.l4off, l4len, pseudoSum(b, &p, l4len))
	if csum.Fold(s) != 0xFFFF {
		errs |= rxdErrTCPE
	}
	return
}

// store64 writes v little-endian into b[0:8]; when b is 8-byte aligned the
// store is a single atomic 64-bit store, so a driver polling the word never
// sees a torn value. (x86-64 and arm64 are little-endian.)
func store64(b []byte, v uint64) {
	if p := unsafe.Pointer(unsafe.SliceData(b)); uintptr(p)%8 == 0 {
		atomic.StoreUint64((*uint64)(p), v)
		return
	}
	binary.LittleEndian.PutUint64(b, v)
}

func store32(b []byte, v uint32) {
	if p := unsafe.Pointer(unsafe.SliceData(b)); uintptr(p)%4 == 0 {
		atomic.StoreUint32((*uint32)(p), v)
		return
	}
	binary.LittleEndian.PutUint32(b, v)
}
