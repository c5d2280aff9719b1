// Package gso finishes a guest's transmit offloads in software, for NIC
// models whose wire takes only complete frames of at most the MTU (an
// AF_XDP socket): the partial checksum a virtio_net_hdr asks for
// (VIRTIO_NET_HDR_F_NEEDS_CSUM) and TCP segmentation (GSO_TCPV4/TCPV6).
// A guest that may hand over 64 KiB TCP frames sends one frame where it
// would send 45, and pays one kick for them: in a VM that is worth the
// copy into the wire's buffers this costs (the copy a host kernel's GSO
// does for a tap anyway).
//
// Everything here is guest-controlled input: the header is checked against
// the frame's own IP and TCP headers (its hdr_len is not trusted), and a
// frame that does not add up is refused, never half-sent.
package gso

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/govmm/govmm/devices/nic/csum"
)

// virtio_net_hdr values (virtio 1.2 §5.1.6).
const (
	FlagNeedsCsum = 1
	GSONone       = 0
	GSOTCPv4      = 1
	GSOTCPv6      = 4
	GSOECN        = 0x80
)

// Header is the offload request at the start of a virtio_net_hdr.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// HeaderBytes is how many bytes of a virtio_net_hdr ParseHeader reads.
const HeaderBytes = 10

// ParseHeader reads the first HeaderBytes of a virtio_net_hdr
// (little-endian, as VERSION_1 has it).
func ParseHeader(b [HeaderBytes]byte) Header {
	return Header{
		Flags: b[0], GSOType: b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// Plain reports whether the header asks for nothing.
func (h Header) Plain() bool { return h.Flags&FlagNeedsCsum == 0 && h.GSOType == GSONone }

// MaxHeaders bounds the Ethernet, IP and TCP headers a segmented frame may
// have: 18 (one VLAN tag) + 60 (IPv4 with options; IPv6 is 40) + 60 (TCP
// with options).
const MaxHeaders = 18 + 60 + 60

// Errors Prepare returns; each names what the guest got wrong.
var (
	ErrShort      = errors.New("gso: frame too short for its headers")
	ErrCsumRange  = errors.New("gso: checksum start/offset outside the frame")
	ErrGSOType    = errors.New("gso: GSO type not offered")
	ErrNotTCP     = errors.New("gso: GSO frame is not TCP over the IP version its type names")
	ErrIPFragment = errors.New("gso: GSO frame is an IP fragment")
	ErrMSS        = errors.New("gso: gso_size 0, or a segment larger than the wire takes")
	ErrTooLong    = errors.New("gso: frame longer than the wire takes, and not a GSO frame")
)

// Plan is how one frame leaves: Segments wire frames, each at most
// maxFrame bytes. It keeps a copy of the frame's headers, so Build needs
// only the frame's payload in place.
type Plan struct {
	h        Header
	n        int // frame bytes (after the virtio_net_hdr)
	segments int
	// Segmentation only:
	l3, l4, hdr int  // offsets: IP header, TCP header, payload
	ipv4        bool // else IPv6
	mss         int
	head        [MaxHeaders]byte
}

// Segments is how many wire frames the frame becomes.
func (p *Plan) Segments() int { return p.segments }

// Size is the length of wire frame i.
func (p *Plan) Size(i int) int {
	if p.h.GSOType == GSONone {
		return p.n
	}
	return p.hdr + min(p.mss, p.n-p.hdr-i*p.mss)
}

// Prepare checks the offload request h against the frame (n bytes in
// frame's segments, after the virtio_net_hdr) and plans its wire frames,
// each at most maxFrame bytes. Only TCP over IPv4 or IPv6 (no extension
// headers), optionally behind one VLAN tag, is segmented, as a guest offered
// HOST_TSO4/6 without HOST_ECN sends it.
func Prepare(h Header, frame [][]byte, n, maxFrame int) (Plan, error) {
	p := Plan{h: h, n: n, segments: 1}
	if h.GSOType == GSONone {
		if n > maxFrame {
			return Plan{}, fmt.Errorf("%w: %d bytes, wire frames of %d", ErrTooLong, n, maxFrame)
		}
		if h.Flags&FlagNeedsCsum != 0 {
			start, at := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
			if start >= n || at+2 > n {
				return Plan{}, fmt.Errorf("%w: start %d, offset %d, %d-byte frame", ErrCsumRange, h.CsumStart, h.CsumOffset, n)
			}
		}
		return p, nil
	}
	if h.GSOType != GSOTCPv4 && h.GSOType != GSOTCPv6 {
		return Plan{}, fmt.Errorf("%w: %#x", ErrGSOType, h.GSOType)
	}
	head := p.head[:min(n, MaxHeaders)]
	gather(head, frame, 0)
	if len(head) < 14 {
		return Plan{}, ErrShort
	}
	l3, etype := 14, binary.BigEndian.Uint16(head[12:])
	if etype == 0x8100 {
		if len(head) < 18 {
			return Plan{}, ErrShort
		}
		l3, etype = 18, binary.BigEndian.Uint16(head[16:])
	}
	var l4 int
	switch {
	case h.GSOType == GSOTCPv4 && etype == 0x0800:
		if len(head) < l3+20 {
			return Plan{}, ErrShort
		}
		ip := head[l3:]
		ihl := int(ip[0]&0xF) * 4
		if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 6 {
			return Plan{}, ErrNotTCP
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3FFF != 0 { // MF or a fragment offset
			return Plan{}, ErrIPFragment
		}
		l4, p.ipv4 = l3+ihl, true
	case h.GSOType == GSOTCPv6 && etype == 0x86DD:
		if len(head) < l3+40 {
			return Plan{}, ErrShort
		}
		if head[l3]>>4 != 6 || head[l3+6] != 6 {
			return Plan{}, ErrNotTCP
		}
		l4 = l3 + 40
	default:
		return Plan{}, ErrNotTCP
	}
	if len(head) < l4+20 {
		return Plan{}, ErrShort
	}
	doff := int(head[l4+12]>>4) * 4
	if doff < 20 || len(head) < l4+doff {
		return Plan{}, ErrShort
	}
	p.l3, p.l4, p.hdr, p.mss = l3, l4, l4+doff, int(h.GSOSize)
	if p.mss == 0 || p.hdr+p.mss > maxFrame {
		return Plan{}, fmt.Errorf("%w: gso_size %d behind %d header bytes, wire frames of %d", ErrMSS, h.GSOSize, p.hdr, maxFrame)
	}
	payload := n - p.hdr
	p.segments = max(1, (payload+p.mss-1)/p.mss)
	return p, nil
}

// Build writes wire frame i (0 <= i < Segments) into dst, which must hold
// Size(i) bytes, from the frame's segments, and returns its length: the
// frame with its checksum completed, or segment i with its IP length, IPv4
// ID and checksum, TCP sequence number, flags and checksum set.
func (p *Plan) Build(i int, frame [][]byte, dst []byte) int {
	if p.h.GSOType == GSONone {
		f := dst[:p.n]
		gather(f, frame, 0)
		if p.h.Flags&FlagNeedsCsum != 0 {
			// The field holds the pseudo-header sum as a seed (what
			// skb_checksum_help expects); a zero result goes out as 0xFFFF.
			start, at := int(p.h.CsumStart), int(p.h.CsumStart)+int(p.h.CsumOffset)
			c := ^csum.Fold(csum.Sum(f[start:], 0))
			if c == 0 {
				c = 0xFFFF
			}
			binary.BigEndian.PutUint16(f[at:], c)
		}
		return p.n
	}
	size := p.Size(i)
	s := dst[:size]
	copy(s, p.head[:p.hdr])
	gather(s[p.hdr:], frame, p.hdr+i*p.mss)
	seg := size - p.l4 // TCP header and payload
	ip := s[p.l3:p.l4]
	var pseudo uint64
	if p.ipv4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(size-p.l3))
		binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(p.head[p.l3+4:])+uint16(i))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Sum(ip, 0)))
		pseudo = csum.Sum(ip[12:20], uint64(6)+uint64(seg))
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(seg))
		pseudo = csum.Sum(ip[8:40], uint64(6)+uint64(seg))
	}
	tcp := s[p.l4:]
	seq := binary.BigEndian.Uint32(p.head[p.l4+4:])
	binary.BigEndian.PutUint32(tcp[4:], seq+uint32(i*p.mss))
	flags := tcp[13]
	if i != p.segments-1 {
		flags &^= 0x01 | 0x08 // FIN, PSH: the last segment's
	}
	if i != 0 {
		flags &^= 0x80 // CWR: the first's
	}
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[16:], 0)
	binary.BigEndian.PutUint16(tcp[16:], ^csum.Fold(csum.Sum(tcp, pseudo)))
	return size
}

// gather fills dst from the concatenation of segs, starting at byte off.
func gather(dst []byte, segs [][]byte, off int) {
	w := 0
	for _, s := range segs {
		if w == len(dst) {
			return
		}
		if off >= len(s) {
			off -= len(s)
			continue
		}
		w += copy(dst[w:], s[off:])
		off = 0
	}
}
