package zerocopy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/guestmem"
)

// Guest RAM for the layout tests: two regions with a hole between them, as
// below and above the PCI hole of a real guest.
const (
	lowRAM  = 0x0010_0000
	lowSize = 8 << 20
	highRAM = 0x0100_0000
	hiSize  = 16 << 20
)

func testRAM(t testing.TB) *guestmem.Memory {
	mem, err := guestmem.FromRegions(
		guestmem.Region{GPA: lowRAM, Host: make([]byte, lowSize)},
		guestmem.Region{GPA: highRAM, Host: make([]byte, hiSize)},
	)
	require.NoError(t, err)
	return mem
}

func segs(gpa uint64, lens ...uint32) []Segment {
	var s []Segment
	for _, l := range lens {
		s = append(s, Segment{GPA: gpa, Len: l})
		gpa += uint64(l)
	}
	return s
}

// bigPackets is Linux add_recvbuf_big: sg[0] = hdr_len bytes at the start
// of the first page, sg[1] = the rest of that page from
// sizeof(padded_vnet_hdr), then MAX_SKB_FRAGS (17) whole pages.
func bigPackets(page uint64, hdrLen, padded uint32) []Segment {
	s := []Segment{{GPA: page, Len: hdrLen}, {GPA: page + uint64(padded), Len: pageSize - padded}}
	for i := uint64(1); i <= 17; i++ {
		s = append(s, Segment{GPA: page + i*pageSize, Len: pageSize})
	}
	return s
}

func TestDecide(t *testing.T) {
	ram := testRAM(t)
	mrg12 := GuestLayout{HdrLen: 12, Mergeable: true, MaxFrame: 1518}
	mrg20 := GuestLayout{HdrLen: 20, Mergeable: true, MaxFrame: 1518}
	v1 := GuestLayout{HdrLen: 12, MaxFrame: 1518}     // VERSION_1, no MRG_RXBUF
	legacy := GuestLayout{HdrLen: 10, MaxFrame: 1518} // legacy, no MRG_RXBUF
	mrgReq, bigReq := IxgbeRequirements(mrg12), IxgbeRequirements(v1)
	require.Equal(t, uint32(1024), mrgReq.MinBuf)
	require.Equal(t, uint32(2048), bigReq.MinBuf)

	a := uint64(lowRAM + 0x1000) // page-aligned guest buffer
	lastLow := uint64(lowRAM + lowSize)
	tests := []struct {
		name   string
		req    Requirements
		layout GuestLayout
		segs   []Segment
		kind   Kind
		reason Reason
		pkt    uint64
	}{
		// Mergeable: one descriptor per chain, 1536..4096 bytes.
		{"mergeable 1536", mrgReq, mrg12, segs(a, 1536), ZeroCopy, 0, a + 12},
		{"mergeable 1600 at 64B offset", mrgReq, mrg12, segs(a+64, 1600), ZeroCopy, 0, a + 64 + 12},
		{"mergeable page", mrgReq, mrg12, segs(a, 4096), ZeroCopy, 0, a + 12},
		{"mergeable xdp headroom (page - 256 - shinfo)", mrgReq, mrg12, segs(a+256, 3520), ZeroCopy, 0, a + 256 + 12},
		{"mergeable hash report hdr 20", mrgReq, mrg20, segs(a, 1536), ZeroCopy, 0, a + 20},
		{"mergeable below 1 KiB after hdr", mrgReq, mrg12, segs(a, 1024), Fallback, ReasonTooSmall, 0},
		{"mergeable header-only first segment", mrgReq, mrg12, segs(a, 12, 4096), Fallback, ReasonSplitUnsupported, 0},
		// Big packets: hdr descriptor + page descriptors.
		{"big packets v1 (padded hdr 32)", bigReq, v1, bigPackets(a, 12, 32), ZeroCopyHeaderSplit, 0, a + 32},
		{"big packets legacy (hdr 10, padded 16)", bigReq, legacy, bigPackets(a, 10, 16), ZeroCopyHeaderSplit, 0, a + 16},
		{"big packets, NIC without split", Requirements{Granularity: 1024, MinBuf: 2048, Align: 2}, v1, bigPackets(a, 12, 32), Fallback, ReasonSplitUnsupported, 0},
		// Small buffers: hdr + 1518 in one descriptor (VERSION_1 / ANY_LAYOUT),
		// or hdr separate (pre-ANY_LAYOUT kernels).
		{"small v1 one descriptor", bigReq, v1, segs(a, 12+1518), Fallback, ReasonTooSmall, 0},
		{"small legacy two descriptors", bigReq, legacy, segs(a, 10, 1518), Fallback, ReasonTooSmall, 0},
		{"small but NIC buffer 1 KiB without MRG_RXBUF", mrgReq, v1, segs(a, 4096), Fallback, ReasonFrameSpans, 0},
		// Hostile.
		{"no segments", mrgReq, mrg12, nil, Fallback, ReasonEmpty, 0},
		{"zero-length segment", mrgReq, mrg12, segs(a, 0), Fallback, ReasonEmpty, 0},
		{"zero-length after good", mrgReq, mrg12, segs(a, 2048, 0), Fallback, ReasonEmpty, 0},
		{"1 byte", mrgReq, mrg12, segs(a, 1), Fallback, ReasonNoHeader, 0},
		{"header only", mrgReq, mrg12, segs(a, 12), Fallback, ReasonTooSmall, 0},
		{"header straddles", bigReq, v1, segs(a, 6, 6, 4096), Fallback, ReasonHeaderStraddles, 0},
		{"64 KiB misaligned", mrgReq, mrg12, segs(a+1, 65536), Fallback, ReasonMisaligned, 0},
		{"64 KiB aligned, no MRG_RXBUF", bigReq, v1, segs(a, 65536), ZeroCopy, 0, a + 12},
		{"odd header split data segment", bigReq, v1, []Segment{{a, 12}, {a + 33, 4000}}, Fallback, ReasonMisaligned, 0},
		{"room in total, not contiguous", bigReq, v1, segs(a, 112, 4096), Fallback, ReasonNotContiguous, 0},
		{"spans RAM hole", mrgReq, mrg12, segs(lastLow-1024, 2048), Fallback, ReasonNotInRAM, 0},
		{"in the hole", mrgReq, mrg12, segs(lastLow+4096, 2048), Fallback, ReasonNotInRAM, 0},
		{"wraps the address space", mrgReq, mrg12, segs(^uint64(0)-100, 2048), Fallback, ReasonNotInRAM, 0},
		{"VMM private region", mrgReq, mrg12, segs(PrivateBase, 2048), Fallback, ReasonNotInRAM, 0},
		{"NIC headroom above hdr", Requirements{Granularity: 1024, MinBuf: 1024, HeaderRoom: 16, Align: 2}, mrg12, segs(a, 4096), Fallback, ReasonNICHeadroom, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.req, tc.layout, Chain{Segs: tc.segs, RAM: ram})
			require.Equal(t, tc.kind, d.Kind, "reason %v", d.Reason)
			require.Equal(t, tc.reason, d.Reason)
			if tc.kind == Fallback {
				require.Equal(t, noSeg, d.PktSeg)
				return
			}
			require.Equal(t, tc.pkt, d.PktAddr)
			require.GreaterOrEqual(t, d.PktRoom, tc.req.MinBuf)
			require.True(t, ram.Contains(d.PktAddr, uint64(tc.req.MinBuf)), "NIC buffer inside the chain's RAM")
		})
	}
}

func TestIxgbeRequirementsJumbo(t *testing.T) {
	require.Equal(t, uint32(1024), IxgbeRequirements(GuestLayout{HdrLen: 12, Mergeable: true, MaxFrame: 9018}).MinBuf)
	require.Equal(t, uint32(9216), IxgbeRequirements(GuestLayout{HdrLen: 12, MaxFrame: 9018}).MinBuf)
	require.Equal(t, uint32(bsizeMax), IxgbeRequirements(GuestLayout{HdrLen: 12, MaxFrame: gsoMaxFrame}).MinBuf)
}

func TestPinAccount(t *testing.T) {
	p := pinAccount{limit: PinLimit{Bytes: 10000, Descs: 3}}
	require.True(t, p.take(4000))
	require.True(t, p.take(4000))
	require.False(t, p.take(4000), "bytes")
	require.True(t, p.take(1000))
	require.False(t, p.take(1), "descs")
	require.Equal(t, uint64(9000), p.bytes.Load())
	p.release(4000)
	require.Equal(t, uint64(5000), p.bytes.Load())
	require.Equal(t, uint64(2), p.descs.Load())
	require.Equal(t, uint64(9000), p.peak.Load())
	require.False(t, p.take(^uint64(0)), "overflow")
	require.Equal(t, PinLimit{Bytes: 1 << 20, Descs: 256}, DefaultPinLimit(0))
}

func FuzzDecide(f *testing.F) {
	f.Add(uint64(lowRAM), uint32(1536), uint32(0), uint8(12), true)
	f.Add(uint64(lowRAM+1), uint32(12), uint32(4064), uint8(10), false)
	ram := testRAM(f)
	f.Fuzz(func(t *testing.T, gpa uint64, l0, l1 uint32, hdr uint8, mrg bool) {
		lay := GuestLayout{HdrLen: uint32(hdr), Mergeable: mrg, MaxFrame: 1518}
		s := []Segment{{GPA: gpa, Len: l0}}
		if l1 != 0 {
			s = append(s, Segment{GPA: gpa + uint64(l0), Len: l1})
		}
		d := Decide(IxgbeRequirements(lay), lay, Chain{Segs: s, RAM: ram})
		if d.Kind != Fallback {
			// Whatever the NIC may write must be guest RAM inside the chain.
			require.True(t, ram.Contains(d.PktAddr, uint64(IxgbeRequirements(lay).MinBuf)))
			require.GreaterOrEqual(t, d.PktAddr, gpa+uint64(hdr))
		}
	})
}
