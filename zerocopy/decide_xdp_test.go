package zerocopy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestXDPHeadroom: the UMEM headroom makes a chunk hold exactly the
// guest's largest frame, so the kernel never writes past a buffer that
// holds one.
func TestXDPHeadroom(t *testing.T) {
	l := GuestLayout{HdrLen: 12, MaxFrame: 1518}
	h, err := XDPHeadroomFor(2048, l)
	require.NoError(t, err)
	assert.Equal(t, uint32(2048-256-1518), h)
	assert.Equal(t, uint32(1518), XDPRules{ChunkSize: 2048, Headroom: h}.FrameSize())
	_, err = XDPHeadroomFor(2048, GuestLayout{HdrLen: 12, MaxFrame: 9018})
	assert.Error(t, err, "a jumbo frame does not fit a 2 KiB chunk")
	_, err = XDPHeadroomFor(2048, GuestLayout{HdrLen: 12, MaxFrame: gsoMaxFrame})
	assert.Error(t, err, "nor does a GSO frame")
}

func TestDecideXDP(t *testing.T) {
	l := GuestLayout{HdrLen: 12, MaxFrame: 1518}
	h, err := XDPHeadroomFor(2048, l)
	require.NoError(t, err)
	r := XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: 1 << 20}
	lead := uint64(h) + XDPPacketHeadroom

	// Linux's small buffer (12 + 1518) and mergeable buffer (1536) fit:
	// the frame lands right after the header, the chunk ends inside the
	// buffer.
	for _, size := range []int{1530, 1536, 4096} {
		off := uint64(64 << 10)
		fill, why := DecideXDP(r, l, off, size, 1)
		require.Equal(t, XDPZeroCopy, why, "size %d", size)
		assert.Equal(t, off+12, fill+lead, "the frame lands after the header")
		assert.LessOrEqual(t, fill+2048, off+uint64(size), "the chunk ends inside the buffer")
	}
	cases := []struct {
		name     string
		off      uint64
		len, seg int
		rules    XDPRules
		want     XDPReason
	}{
		{"too small", 4096, 1529, 1, r, XDPTooSmall},
		{"segmented", 4096, 256, 2, r, XDPSegmented},
		{"at the start of the UMEM", 0, 1530, 1, r, XDPBeforeUMEM},
		{"at the end of the UMEM", 1<<20 - 1000, 1530, 1, r, XDPPastUMEM},
		{"offset overflows", ^uint64(0) - 100, 1530, 1, r, XDPPastUMEM},
		{"crosses a page (zero-copy driver)", 4096 + 3000, 1530, 1, XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: 1 << 20, PageSize: 4096}, XDPCrossesPage},
		{"within a page (zero-copy driver)", 4096 + 1000, 1530, 1, XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: 1 << 20, PageSize: 4096}, XDPZeroCopy},
		{"copy mode ignores pages", 4096 + 3000, 1530, 1, r, XDPZeroCopy},
		{"virtio_net's 12-byte header lands in the guest's", 4096 + 1000, 1530, 1, XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: 1 << 20, PageSize: 4096, DriverHeader: 12}, XDPZeroCopy},
		{"a 20-byte header (hash reports) would not", 4096 + 1000, 1530, 1, XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: 1 << 20, PageSize: 4096, DriverHeader: 20}, XDPDriverHeader},
		{"no frame fits the chunk", 4096, 4096, 1, XDPRules{ChunkSize: 2048, Headroom: 2000, UMEMSize: 1 << 20}, XDPTooSmall},
	}
	for _, c := range cases {
		_, why := DecideXDP(c.rules, l, c.off, c.len, c.seg)
		assert.Equal(t, c.want, why, c.name)
		assert.NotEmpty(t, why.String())
	}
}

// FuzzDecideXDP: for any buffer (a hostile guest's included), a zero-copy
// decision puts the frame right after the header, and the chunk the kernel
// may write lies inside both the buffer and the UMEM, within one page when
// pages matter.
func FuzzDecideXDP(f *testing.F) {
	f.Add(uint64(65636), 1536, 1, uint32(1518), uint32(12), uint64(1<<20), false)
	f.Add(uint64(0), 1530, 1, uint32(1518), uint32(12), uint64(1<<20), true)
	f.Add(^uint64(0)-5, 4096, 1, uint32(1518), uint32(12), uint64(1<<30), false)
	f.Fuzz(func(t *testing.T, off uint64, segLen, segs int, maxFrame, hdrLen uint32, umem uint64, pages bool) {
		l := GuestLayout{HdrLen: hdrLen % 64, MaxFrame: maxFrame % 4096}
		h, err := XDPHeadroomFor(2048, l)
		if err != nil {
			return
		}
		r := XDPRules{ChunkSize: 2048, Headroom: h, UMEMSize: umem}
		if pages {
			r.PageSize = 4096
		}
		fill, why := DecideXDP(r, l, off, segLen, segs)
		if why != XDPZeroCopy {
			return
		}
		lead := uint64(h) + XDPPacketHeadroom
		if fill+lead != off+uint64(l.HdrLen) {
			t.Fatalf("frame at %d, header ends at %d", fill+lead, off+uint64(l.HdrLen))
		}
		end := fill + 2048
		if end < fill || end > umem || end > off+uint64(segLen) {
			t.Fatalf("chunk [%d,%d) outside the buffer [%d,+%d) or the UMEM (%d)", fill, end, off, segLen, umem)
		}
		if pages && fill/4096 != (end-1)/4096 {
			t.Fatalf("chunk [%d,%d) crosses a page", fill, end)
		}
	})
}
