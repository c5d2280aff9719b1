package zerocopy

import (
	"github.com/govmm/govmm/devices/nic"
)

// Headroom negotiation. Standard virtio has no way to negotiate receive
// headroom or alignment, so it is decided here, per posted chain: the NIC
// states what its receive descriptors need (Requirements), the device states
// what the negotiated features make the guest post (GuestLayout), and
// Decide says whether the NIC may write a frame straight into the chain or
// the frame must go through a VMM bounce buffer (the 2010 RFC's second
// design), and why.

// Requirements is what a NIC needs of a receive buffer.
type Requirements struct {
	// Granularity is the unit the NIC's buffer size is programmed in
	// (82599 SRRCTL.BSIZEPKT: 1 KiB).
	Granularity uint32
	// MinBuf is the buffer size programmed into the queue: the NIC may write
	// this many bytes at the packet address, so the chain must hold them.
	MinBuf uint32
	// HeaderRoom is how many bytes the NIC itself writes in front of the
	// packet address (prepended metadata). They land in the virtio_net_hdr
	// area, which the VMM rewrites afterwards, so they must fit in it. The
	// 82599 writes none.
	HeaderRoom uint32
	// Align is the required alignment of a packet address (power of two).
	Align uint32
	// HeaderSplit: the NIC can be given a packet buffer that is not the
	// segment holding the header (the VMM writes the header separately).
	HeaderSplit bool
}

// GuestLayout is what the negotiated virtio-net features make a driver post.
type GuestLayout struct {
	HdrLen    uint32 // virtio_net_hdr: 10 (legacy), 12 (MRG_RXBUF or VERSION_1), 20 (HASH_REPORT)
	Mergeable bool   // VIRTIO_NET_F_MRG_RXBUF: a frame may span chains
	// MaxFrame is the largest Ethernet frame (no FCS) the guest must accept:
	// 1518 (1500 MTU + VLAN tag) without guest GSO.
	MaxFrame uint32
}

// LayoutFromConfig derives the guest layout from the negotiated config and
// the link MTU (0 means 1500).
func LayoutFromConfig(c nic.Config, mtu int) GuestLayout {
	if mtu <= 0 {
		mtu = 1500
	}
	l := GuestLayout{HdrLen: uint32(max(c.HdrLen, 0)), Mergeable: c.Mergeable, MaxFrame: uint32(mtu) + 18}
	if c.GuestTSO4 || c.GuestTSO6 {
		l.MaxFrame = gsoMaxFrame
	}
	return l
}

const (
	gsoMaxFrame = 65535 + 14 + 4  // a 64 KiB GSO frame
	bsizeUnit   = 1024            // SRRCTL.BSIZEPKT unit (§8.2.3.8.7)
	bsizeMax    = 16 * bsizeUnit  // largest BSIZEPKT the 82599 accepts
	mrgBufSize  = 1536            // smallest Linux mergeable buffer (hdr + 1518, L1-aligned)
	txMaxFrame  = 64 << 10        // largest guest tx frame without TSO we accept
	privBase    = uint64(1) << 46 // VMM-private DMA region, above any guest RAM
	maxGPA      = uint64(1) << 46 // guest addresses must be below the private region
	noSeg       = -1              // Decision.PktSeg of a fallback
	hdrNumBufs  = 10              // offset of num_buffers in the virtio_net_hdr
	descBytes   = 16              // one 82599 advanced descriptor
	ringAlign   = 128             // RDBAL/TDBAL alignment (§8.2.3.8.1)
	defaultRing = 256             // virtio rx queue size of QEMU, Firecracker and Linux
	pageSize    = 4096            // largest Linux mergeable buffer / big-packets page
)

// IxgbeRequirements returns what an 82599 queue programmed for layout needs.
// With mergeable buffers the queue uses 1 KiB buffers: every Linux
// mergeable buffer (≥ 1536 bytes) has at least 1 KiB after the header, and a
// frame simply spans buffers (num_buffers). Without them a frame must fit
// one chain, so the buffer size is the largest frame rounded up to the
// granularity (2 KiB for 1518, capped at the 82599's 16 KiB).
func IxgbeRequirements(l GuestLayout) Requirements {
	bsize := uint32(bsizeUnit)
	if !l.Mergeable {
		bsize = min((l.MaxFrame+bsizeUnit-1)/bsizeUnit*bsizeUnit, bsizeMax)
	}
	return Requirements{Granularity: bsizeUnit, MinBuf: bsize, HeaderRoom: 0, Align: 2, HeaderSplit: true}
}

// Segment is one device-writable segment of a chain.
type Segment struct {
	GPA uint64
	Len uint32
}

// RAM reports whether [gpa, gpa+n) is inside one guest RAM region (one
// contiguous host mapping). *guestmem.Memory implements it.
type RAM interface {
	Contains(gpa, n uint64) bool
}

// Chain is a posted receive chain as the NIC would see it.
type Chain struct {
	Segs []Segment
	RAM  RAM // guest RAM map; nil skips the check (tests of pure layout)
}

// Kind is the outcome of Decide.
type Kind uint8

// Outcomes.
const (
	Fallback            Kind = iota // bounce buffer + copy
	ZeroCopy                        // NIC writes at first segment + HdrLen
	ZeroCopyHeaderSplit             // header segment alone; NIC writes into the next segment
)

func (k Kind) String() string {
	switch k {
	case ZeroCopy:
		return "zerocopy"
	case ZeroCopyHeaderSplit:
		return "zerocopy-header-split"
	}
	return "fallback"
}

// Reason says why a chain falls back.
type Reason uint8

// Fallback reasons.
const (
	ReasonNone             Reason = iota
	ReasonEmpty                   // no writable segment, or a zero-length one
	ReasonNoHeader                // chain shorter than the virtio_net_hdr
	ReasonNotInRAM                // a segment wraps, lies outside guest RAM or spans a RAM hole
	ReasonHeaderStraddles         // the header spans two segments
	ReasonTooSmall                // less room after the header than the NIC buffer size
	ReasonNotContiguous           // enough room in total, but not in the segment the NIC writes
	ReasonMisaligned              // packet address not aligned as the NIC requires
	ReasonNICHeadroom             // NIC headroom larger than the virtio_net_hdr
	ReasonSplitUnsupported        // header-only segment, but the NIC/mode cannot use a split
	ReasonFrameSpans              // no MRG_RXBUF and the NIC buffer is smaller than a frame
	ReasonNoGPA                   // the device gave no guest addresses (nic.Buf.GPAs)
	numReasons
)

var reasonNames = [numReasons]string{
	"none", "empty", "no_header", "not_in_ram", "header_straddles", "too_small",
	"not_contiguous", "misaligned", "nic_headroom", "split_unsupported", "frame_spans", "no_gpa",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Decision is the verdict for one chain.
type Decision struct {
	Kind   Kind
	Reason Reason // ReasonNone unless Kind == Fallback
	// PktAddr is where the NIC writes the frame (the descriptor's packet
	// buffer address); PktRoom is the contiguous room there.
	PktAddr uint64
	PktRoom uint32
	PktSeg  int // segment holding PktAddr, noSeg for a fallback
	// ContAddr is where a continuation buffer's data starts (mergeable
	// only: buffers after the first of a frame carry no header, §5.1.6.4).
	ContAddr uint64
}

func fallback(r Reason) Decision { return Decision{Kind: Fallback, Reason: r, PktSeg: noSeg} }

// Decide classifies one chain. It only reads its arguments, never panics on
// guest values and is the single place the zero-copy policy lives.
func Decide(req Requirements, l GuestLayout, c Chain) Decision {
	if len(c.Segs) == 0 {
		return fallback(ReasonEmpty)
	}
	var total uint64
	for _, s := range c.Segs {
		if s.Len == 0 {
			return fallback(ReasonEmpty)
		}
		end := s.GPA + uint64(s.Len)
		if end < s.GPA || end > maxGPA || (c.RAM != nil && !c.RAM.Contains(s.GPA, uint64(s.Len))) {
			return fallback(ReasonNotInRAM)
		}
		total += uint64(s.Len)
	}
	hdr := l.HdrLen
	if total < uint64(hdr) {
		return fallback(ReasonNoHeader)
	}
	if req.HeaderRoom > hdr {
		return fallback(ReasonNICHeadroom)
	}
	if !l.Mergeable && req.MinBuf < l.MaxFrame {
		// Without MRG_RXBUF a frame cannot continue in the next chain, so
		// one NIC buffer must hold the largest frame.
		return fallback(ReasonFrameSpans)
	}
	s0 := c.Segs[0]
	d := Decision{Kind: ZeroCopy, PktSeg: 0}
	switch {
	case s0.Len > hdr:
		d.PktAddr, d.PktRoom, d.ContAddr = s0.GPA+uint64(hdr), s0.Len-hdr, s0.GPA
	case s0.Len < hdr:
		return fallback(ReasonHeaderStraddles)
	case len(c.Segs) == 1:
		return fallback(ReasonTooSmall) // header and nothing else
	case !req.HeaderSplit || l.Mergeable:
		// A mergeable chain may be a frame's continuation buffer, whose data
		// starts at chain offset 0: a header-sized first segment cannot hold it.
		return fallback(ReasonSplitUnsupported)
	default:
		s1 := c.Segs[1]
		d = Decision{Kind: ZeroCopyHeaderSplit, PktAddr: s1.GPA, PktRoom: s1.Len, PktSeg: 1}
	}
	if d.PktRoom < req.MinBuf {
		if total-uint64(hdr) >= uint64(req.MinBuf) {
			return fallback(ReasonNotContiguous)
		}
		return fallback(ReasonTooSmall)
	}
	if a := uint64(max(req.Align, 1)); d.PktAddr%a != 0 || (l.Mergeable && d.ContAddr%a != 0) {
		return fallback(ReasonMisaligned)
	}
	return d
}
