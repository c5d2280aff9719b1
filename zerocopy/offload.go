package zerocopy

import (
	"encoding/binary"
	"errors"
	"github.com/govmm/govmm/devices/nic/csum"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
)

// Offloads. The guest's virtio_net_hdr asks for checksum completion and
// segmentation (virtio 1.2 §5.1.6.2); planTx maps the request onto what
// the 82599's context and data descriptors express (datasheet §7.2.3.2.3,
// §7.2.4, §7.2.5). The 82599 then hands the frame, still whole, to the
// tap with the equivalent vnet header (ixgbeemu.OffloadWire), so neither
// the payload nor the segmentation work ever passes through the VMM.

// virtio_net_hdr fields (virtio 1.2 §5.1.6).
const (
	vnetNeedsCsum = 1
	vnetGSONone   = 0
	vnetGSOTCPv4  = 1
	vnetGSOTCPv6  = 4
	vnetGSOECN    = 0x80
)

// vnetHdr is what planTx reads of a guest's virtio_net_hdr. hdr_len
// (bytes 2-3) is skipped on purpose: without VIRTIO_NET_F_GUEST_HDRLEN,
// which virtio-net does not offer, it is only a hint the device must not
// rely on (virtio 1.2 §5.1.6.2); planTx takes the header length from the
// frame itself (txPlan.hdrLen).
type vnetHdr struct {
	flags, gsoType                 uint8
	gsoSize, csumStart, csumOffset uint16
}

func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags: b[0], gsoType: b[1],
		gsoSize:   binary.LittleEndian.Uint16(b[4:]),
		csumStart: binary.LittleEndian.Uint16(b[6:]), csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// txPlan is how one guest frame goes to the 82599.
type txPlan struct {
	// ctx: a context descriptor (MACLEN, IPLEN, L4LEN, MSS, TUCMD) comes
	// first and the data descriptors ask for TXSM (and TSE).
	ctx                  bool
	maclen, iplen, l4len int
	tucmd                uint32
	mss                  int
	tso                  bool
	// soft: a checksum the 82599 cannot place (not TCP or UDP over IP):
	// the VMM completes it in its bounce copy.
	soft                  bool
	csumStart, csumOffset int
}

// hdrLen is the header a TSO frame's segments repeat.
func (p txPlan) hdrLen() int { return p.maclen + p.iplen + p.l4len }

var errBadOffload = errors.New("zerocopy: malformed offload request")

// planTx validates the guest's request against the frame (total bytes,
// read through at). Every field is guest-controlled: anything the frame
// does not back up is refused, never trusted.
func planTx(h vnetHdr, at func(off int) (byte, bool), total int) (txPlan, error) {
	gso := h.gsoType &^ vnetGSOECN
	if h.flags&vnetNeedsCsum == 0 {
		if gso != vnetGSONone {
			return txPlan{}, errBadOffload // GSO without a partial checksum
		}
		return txPlan{}, nil
	}
	start, off := int(h.csumStart), int(h.csumOffset)
	if start+off+2 > total || off < 0 {
		return txPlan{}, errBadOffload
	}
	p := txPlan{csumStart: start, csumOffset: off}
	et, ok := be16(at, 12)
	if !ok {
		return txPlan{}, errBadOffload
	}
	p.maclen = 14
	if et == 0x8100 {
		p.maclen = 18
		if et, ok = be16(at, 16); !ok {
			return txPlan{}, errBadOffload
		}
	}
	p.iplen = start - p.maclen
	ip := et == 0x0800 || et == 0x86DD
	l4ok := off == 16 || off == 6 // TCP or UDP checksum field
	if !ip || !l4ok || p.iplen < 20 || p.iplen > 511 {
		if gso != vnetGSONone {
			return txPlan{}, errBadOffload
		}
		p.soft = true
		return p, nil
	}
	p.ctx = true
	if et == 0x0800 {
		p.tucmd |= tucmdIPv4
	}
	if off == 16 {
		p.tucmd |= tucmdL4TTCP
	}
	switch gso {
	case vnetGSONone:
		return p, nil
	case vnetGSOTCPv4, vnetGSOTCPv6:
	default:
		return txPlan{}, errBadOffload // UDP fragmentation offload is not offered
	}
	if (gso == vnetGSOTCPv4) != (et == 0x0800) || off != 16 || h.gsoSize == 0 {
		return txPlan{}, errBadOffload
	}
	doff, ok := at(start + 12)
	if !ok {
		return txPlan{}, errBadOffload
	}
	p.l4len = int(doff>>4) * 4
	if p.l4len < 20 || p.hdrLen() > total {
		return txPlan{}, errBadOffload
	}
	p.tso, p.mss = true, int(h.gsoSize)
	return p, nil
}

func be16(at func(int) (byte, bool), off int) (uint16, bool) {
	a, ok1 := at(off)
	b, ok2 := at(off + 1)
	return uint16(a)<<8 | uint16(b), ok1 && ok2
}

// softChecksum completes a partial checksum in place (virtio 1.2
// §5.1.6.2: the sum from csum_start to the end, stored at
// csum_start+csum_offset, over the seed already there).
func softChecksum(f []byte, start, off int) {
	binary.BigEndian.PutUint16(f[start+off:], ^csum.Fold(csum.Sum(f[start:], 0)))
}

// SendOffload implements ixgbeemu.OffloadWire: the 82599's request becomes
// the tap's virtio_net_hdr.
func (w *portWire) SendOffload(segs [][]byte, off ixgbeemu.TxOffload) error {
	hb := w.hdr[:len(w.zero)]
	clear(hb)
	off.PutVnetHeader(hb)
	w.iov = append(append(w.iov[:0], hb), segs...)
	w.err = w.port.Writev(w.iov)
	return w.err
}
