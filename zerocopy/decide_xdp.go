package zerocopy

import "fmt"

// Headroom negotiation with an AF_XDP socket whose UMEM is guest RAM
// (devices/nic/afxdp). The kernel's rules (net/xdp/xsk_buff_pool.c,
// unaligned chunk mode): a fill-ring address names a chunk of ChunkSize
// bytes; the frame is written at that address + the UMEM headroom + 256
// bytes of XDP_PACKET_HEADROOM, and is at most ChunkSize − headroom − 256
// bytes long (longer frames are dropped, and a zero-copy driver programs
// exactly that buffer size into its NIC). Some zero-copy drivers also let
// the NIC write in front of the frame: Linux's virtio_net posts each chunk
// from data − hdr_len, so the device writes its own virtio_net_hdr (12
// bytes; 20 with hash reports) there (virtnet_add_recvbuf_xsk); Intel's
// and Mellanox's drivers write only at the data address. The chunk must lie inside the
// UMEM and, for a zero-copy driver, must not cross a page boundary between
// pages that are not contiguous for DMA (4 KiB pages unless guest RAM is
// backed by hugepages).
//
// So a guest buffer can take a frame straight from the NIC when its first
// segment holds the virtio_net_hdr and a largest frame, and the chunk that
// ends where the buffer ends obeys those rules. The headroom bytes in front
// of the frame are guest memory the driver did not lend: nothing may write
// them. In copy mode the kernel copies the frame (and XDP metadata, which
// govmm's program never sets) only; a zero-copy driver DMAs the frame at
// the data address and at most DriverHeader bytes in front of it, which
// must then fall inside the guest's own header slot (DriverHeader ≤ the
// guest's HdrLen, checked per buffer): the NIC writes its header where
// govmm writes the guest's a moment later. The UMEM headroom is chosen so that the kernel's
// frame limit is exactly the guest's largest frame (XDPHeadroomFor): the
// kernel then never writes past a buffer that holds one.

// XDPPacketHeadroom is XDP_PACKET_HEADROOM: the bytes the kernel leaves in
// front of every frame it writes into a chunk.
const XDPPacketHeadroom = 256

// XDPRules is what a socket's UMEM imposes on a receive buffer.
type XDPRules struct {
	ChunkSize uint32 // XDP_UMEM_REG chunk_size
	Headroom  uint32 // XDP_UMEM_REG headroom
	UMEMSize  uint64
	// PageSize, if not 0, is the granule a chunk must not cross (zero-copy
	// drivers DMA within one page; copy mode does not care).
	PageSize uint64
	// DriverHeader is how many bytes in front of the frame a zero-copy
	// driver lets its NIC write (0 in copy mode; see above).
	DriverHeader uint32
}

// FrameSize is the largest frame the kernel writes into one chunk.
func (r XDPRules) FrameSize() uint32 {
	if r.ChunkSize < r.Headroom+XDPPacketHeadroom {
		return 0
	}
	return r.ChunkSize - r.Headroom - XDPPacketHeadroom
}

// XDPHeadroomFor returns the UMEM headroom that makes a chunk of chunkSize
// bytes hold exactly the guest's largest frame.
func XDPHeadroomFor(chunkSize uint32, l GuestLayout) (uint32, error) {
	if l.MaxFrame == 0 || chunkSize < XDPPacketHeadroom+l.MaxFrame {
		return 0, fmt.Errorf("zerocopy: a %d-byte AF_XDP chunk cannot hold a %d-byte frame after %d bytes of XDP headroom",
			chunkSize, l.MaxFrame, XDPPacketHeadroom)
	}
	return chunkSize - XDPPacketHeadroom - l.MaxFrame, nil
}

// XDPReason says why a buffer cannot take a frame from the socket directly.
type XDPReason int

// XDP decisions.
const (
	XDPZeroCopy     XDPReason = iota
	XDPSegmented              // the header and a largest frame are not in one segment
	XDPTooSmall               // the first segment cannot hold the header and a largest frame
	XDPBeforeUMEM             // the chunk would start before the UMEM (a buffer at its very start)
	XDPPastUMEM               // the chunk would end past the UMEM
	XDPCrossesPage            // zero-copy driver: the chunk crosses a page boundary
	XDPDriverHeader           // zero-copy driver: its NIC writes more in front of the frame than the guest's header slot
	XDPReasons                // how many reasons there are
)

func (r XDPReason) String() string {
	return [...]string{"zero-copy", "segmented", "too small", "before the UMEM", "past the UMEM", "crosses a page",
		"driver header"}[r]
}

// DecideXDP decides one receive buffer whose first segment starts at span
// offset off (the buffer's offset in the UMEM) and is segLen bytes long,
// with segs segments in all. For XDPZeroCopy it returns the fill-ring
// address that makes the frame land right after the virtio_net_hdr.
func DecideXDP(r XDPRules, l GuestLayout, off uint64, segLen, segs int) (fill uint64, why XDPReason) {
	frame := uint64(r.FrameSize())
	switch {
	case r.DriverHeader > uint32(l.HdrLen):
		return 0, XDPDriverHeader
	case frame == 0 || segLen < 0 || uint64(segLen) < uint64(l.HdrLen)+frame:
		if segs > 1 {
			return 0, XDPSegmented
		}
		return 0, XDPTooSmall
	}
	data := off + uint64(l.HdrLen)
	lead := uint64(r.Headroom) + XDPPacketHeadroom
	if data < lead {
		return 0, XDPBeforeUMEM
	}
	fill = data - lead
	end := fill + uint64(r.ChunkSize)
	if end < fill || end > r.UMEMSize {
		return 0, XDPPastUMEM
	}
	if p := r.PageSize; p != 0 && fill/p != (end-1)/p {
		return 0, XDPCrossesPage
	}
	return fill, XDPZeroCopy
}
