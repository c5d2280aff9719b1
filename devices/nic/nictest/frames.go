package nictest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/govmm/govmm/devices/nic/csum"
)

// The kit's frames are IPv4 between two documentation addresses (RFC 5737),
// so nothing the kit sends could reach a real network even if a harness
// leaked it. Each carries magic and a sequence number at the start of its
// L4 payload; frames without the magic (a kernel's IPv6 neighbour
// discovery on a tap, say) are not the kit's and are ignored.
var (
	magic  = []byte("nictest\x00")
	peerIP = [4]byte{192, 0, 2, 1}
	vmIP   = [4]byte{198, 51, 100, 1}
	// peerMAC is the far end's address (locally administered).
	peerMAC = [6]byte{0x02, 0x6e, 0x69, 0x63, 0x74, 0x01}
)

const (
	ethLen   = 14
	ipv4Len  = 20
	tcpLen   = 20
	udpLen   = 8
	protoTCP = 6
	protoUDP = 17
	// MaxFrame is the largest frame the kit sends without GSO (MTU 1500).
	maxFrame = 1514
	// tsoMSS is the segment size of the kit's GSO frames.
	tsoMSS = 1448
)

// virtio_net_hdr fields (virtio 1.2 §5.1.6).
const (
	flagNeedsCsum = 1
	flagDataValid = 2
	gsoNone       = 0
	gsoTCPv4      = 1
	gsoUDP        = 3
	gsoTCPv6      = 4
)

// vnetHdr is a parsed virtio_net_hdr.
type vnetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func parseHdr(b []byte) vnetHdr {
	if len(b) < 10 {
		return vnetHdr{}
	}
	return vnetHdr{
		flags: b[0], gsoType: b[1],
		hdrLen:     binary.LittleEndian.Uint16(b[2:]),
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

func (h vnetHdr) put(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// frameSpec describes one kit frame.
type frameSpec struct {
	proto   uint8 // protoUDP or protoTCP
	size    int   // whole Ethernet frame, bytes
	seq     uint32
	dst     [6]byte
	partial bool // leave the L4 checksum partial (NEEDS_CSUM)
	gso     bool // a TCP GSO frame of size bytes, MSS tsoMSS
}

// build returns the frame and the virtio_net_hdr a driver would send it
// with (zero for a frame with complete checksums).
func (s frameSpec) build() ([]byte, vnetHdr) {
	l4 := udpLen
	if s.proto == protoTCP {
		l4 = tcpLen
	}
	least := ethLen + ipv4Len + l4 + len(magic) + 4
	if s.size < least {
		s.size = least
	}
	f := make([]byte, s.size)
	copy(f[0:], s.dst[:])
	copy(f[6:], peerMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[ethLen:]
	ip[0], ip[8], ip[9] = 0x45, 64, s.proto
	binary.BigEndian.PutUint16(ip[2:], uint16(min(s.size-ethLen, 0xFFFF)))
	binary.BigEndian.PutUint16(ip[4:], uint16(s.seq))
	copy(ip[12:], peerIP[:])
	copy(ip[16:], vmIP[:])
	binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Sum(ip[:ipv4Len], 0)))
	seg := ip[ipv4Len:]
	binary.BigEndian.PutUint16(seg[0:], 40000+uint16(s.seq%1000))
	binary.BigEndian.PutUint16(seg[2:], 9)
	pay := seg[l4:]
	copy(pay, magic)
	binary.BigEndian.PutUint32(pay[len(magic):], s.seq)
	for i := len(magic) + 4; i < len(pay); i++ {
		pay[i] = byte(s.seq) + byte(i*13)
	}
	csumOff := 6
	if s.proto == protoTCP {
		csumOff = 16
		binary.BigEndian.PutUint32(seg[4:], 1000*s.seq) // sequence number
		seg[12], seg[13] = 5<<4, 0x18                   // data offset, PSH|ACK
		binary.BigEndian.PutUint16(seg[14:], 0xFFFF)
	} else {
		binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
	}
	pseudo := pseudoSum(ip, len(seg))
	var h vnetHdr
	if s.partial || s.gso {
		// What Linux leaves for the device: the pseudo-header sum, folded
		// but not complemented, in the checksum field.
		binary.BigEndian.PutUint16(seg[csumOff:], csum.Fold(pseudo))
		h = vnetHdr{flags: flagNeedsCsum, csumStart: ethLen + ipv4Len, csumOffset: uint16(csumOff)}
		if s.gso {
			h.gsoType, h.gsoSize, h.hdrLen = gsoTCPv4, tsoMSS, uint16(ethLen+ipv4Len+tcpLen)
		}
		return f, h
	}
	binary.BigEndian.PutUint16(seg[csumOff:], l4Csum(pseudo, seg))
	return f, h
}

func pseudoSum(ip []byte, l4len int) uint64 {
	s := csum.Sum(ip[12:20], 0)
	return s + uint64(ip[9]) + uint64(l4len)
}

// l4Csum is the checksum to store for segment seg (its field zero or
// holding the pseudo sum is accounted for by the caller).
func l4Csum(pseudo uint64, seg []byte) uint16 {
	c := ^csum.Fold(csum.Sum(seg, pseudo))
	if c == 0 {
		c = 0xFFFF
	}
	return c
}

// kitFrame is a frame the kit recognised on the wire or in a buffer.
type kitFrame struct {
	seq   uint32
	proto uint8
	data  []byte
}

// identify reports whether f is one of the kit's frames and its sequence.
func identify(f []byte) (kitFrame, bool) {
	if len(f) < ethLen+ipv4Len || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[ethLen]>>4 != 4 {
		return kitFrame{}, false
	}
	ip := f[ethLen:]
	l4 := udpLen
	switch ip[9] {
	case protoTCP:
		l4 = tcpLen
	case protoUDP:
	default:
		return kitFrame{}, false
	}
	p := ethLen + int(ip[0]&0xF)*4 + l4
	if len(f) < p+len(magic)+4 || !bytes.Equal(f[p:p+len(magic)], magic) {
		return kitFrame{}, false
	}
	return kitFrame{seq: binary.BigEndian.Uint32(f[p+len(magic):]), proto: ip[9], data: f}, true
}

// identifySegment recognises a wire frame that a model segmented from
// one of the kit's TCP GSO frames: only the first segment starts with the
// magic, but every one keeps the kit's addresses and its source port,
// 40000 + seq%1000. It returns seq%1000.
func identifySegment(f []byte) (uint32, bool) {
	if len(f) < ethLen+ipv4Len+tcpLen || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[ethLen]>>4 != 4 {
		return 0, false
	}
	ip := f[ethLen:]
	if ip[9] != protoTCP || !bytes.Equal(ip[12:16], peerIP[:]) || !bytes.Equal(ip[16:20], vmIP[:]) {
		return 0, false
	}
	port := binary.BigEndian.Uint16(ip[int(ip[0]&0xF)*4:])
	if port < 40000 || port >= 41000 {
		return 0, false
	}
	return uint32(port - 40000), true
}

// complete applies what a receiving stack does with a header saying
// NEEDS_CSUM: it computes the checksum over [csum_start, end) and stores
// it at csum_start+csum_offset. It returns a copy.
func complete(h vnetHdr, f []byte) ([]byte, error) {
	f = append([]byte(nil), f...)
	if h.flags&flagNeedsCsum == 0 {
		return f, nil
	}
	start, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if start >= len(f) || at+2 > len(f) {
		return nil, fmt.Errorf("NEEDS_CSUM with csum_start %d, csum_offset %d in a %d-byte frame", h.csumStart, h.csumOffset, len(f))
	}
	binary.BigEndian.PutUint16(f[at:], ^csum.Fold(csum.Sum(f[start:], 0)))
	return f, nil
}

// checkSums verifies the IPv4 header checksum and the L4 checksum of a
// complete (non-GSO) frame.
func checkSums(f []byte) error {
	ip := f[ethLen:]
	ihl := int(ip[0]&0xF) * 4
	if csum.Fold(csum.Sum(ip[:ihl], 0)) != 0xFFFF {
		return errors.New("bad IPv4 header checksum")
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot > len(ip) || tot < ihl {
		return fmt.Errorf("IPv4 total length %d in a %d-byte packet", tot, len(ip))
	}
	seg := ip[ihl:tot]
	if ip[9] == protoUDP && binary.BigEndian.Uint16(seg[6:]) == 0 {
		return nil // no UDP checksum
	}
	if csum.Fold(csum.Sum(seg, pseudoSum(ip, len(seg)))) != 0xFFFF {
		return fmt.Errorf("bad %s checksum", map[uint8]string{protoTCP: "TCP", protoUDP: "UDP"}[ip[9]])
	}
	return nil
}

// tcpPayload returns the sequence number and payload of a TCP/IPv4 frame.
func tcpPayload(f []byte) (uint32, []byte) {
	ip := f[ethLen:]
	ihl := int(ip[0]&0xF) * 4
	tot := min(int(binary.BigEndian.Uint16(ip[2:])), len(ip))
	seg := ip[ihl:tot]
	return binary.BigEndian.Uint32(seg[4:]), seg[int(seg[12]>>4)*4:]
}
