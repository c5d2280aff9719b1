package queue_test

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Fuzz layout: guest RAM is two adjacent regions [0, 0x2000) [0x2000,
// 0x3000) and one after a hole [0x10000, 0x11000). The rings sit at fixed,
// valid places; the fuzz input overwrites RAM from address 0, so it controls
// the descriptor table, the avail ring and all buffers.
const (
	fuzzDesc  = 0x000
	fuzzAvail = 0x100 // after 16 descriptors
	fuzzUsed  = 0x200
)

// fuzzSeed encodes a header (size log2, feature bits) and a RAM image with
// the given descriptors and avail ring.
func fuzzSeed(log2 uint8, feat uint8, descs [][4]uint64, heads []uint16) []byte {
	img := make([]byte, 2+0x200)
	img[0], img[1] = log2, feat
	ram := img[2:]
	for i, d := range descs {
		b := ram[fuzzDesc+16*i:]
		binary.LittleEndian.PutUint64(b, d[0])
		binary.LittleEndian.PutUint32(b[8:], uint32(d[1]))
		binary.LittleEndian.PutUint16(b[12:], uint16(d[2]))
		binary.LittleEndian.PutUint16(b[14:], uint16(d[3]))
	}
	binary.LittleEndian.PutUint16(ram[fuzzAvail+2:], uint16(len(heads)))
	for i, h := range heads {
		binary.LittleEndian.PutUint16(ram[fuzzAvail+4+2*i:], h)
	}
	return img
}

func FuzzPop(f *testing.F) {
	f.Add([]byte{})
	f.Add(fuzzSeed(4, 3, [][4]uint64{{0x1000, 64, 1, 1}, {0x1100, 64, 2, 0}}, []uint16{0}))
	f.Add(fuzzSeed(4, 3, [][4]uint64{{0x1ff0, 0x20, 0, 0}, {0x400, 32, 4, 0}}, []uint16{0, 1}))
	f.Add(fuzzSeed(2, 1, [][4]uint64{{0x1000, 8, 1, 0}}, []uint16{0, 0, 0}))
	f.Add(fuzzSeed(4, 2, [][4]uint64{{0x400, 48, 4, 0}, {0x10000, 16, 2, 0}}, []uint16{0, 1, 2, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var log2, feat uint8
		if len(data) >= 2 {
			log2, feat, data = data[0], data[1], data[2:]
		}
		r0 := make([]byte, 0x2000)
		r1 := make([]byte, 0x1000)
		r2 := make([]byte, 0x1000)
		copy(r0, data)
		if len(data) > len(r0) {
			copy(r1, data[len(r0):])
		}
		mem, err := guestmem.FromRegions(
			guestmem.Region{GPA: 0, Host: r0},
			guestmem.Region{GPA: 0x2000, Host: r1},
			guestmem.Region{GPA: 0x10000, Host: r2},
		)
		require.NoError(t, err)

		size := uint16(1) << (log2 % 5)
		q := queue.New(16)
		q.SetSize(size)
		q.SetDescTable(fuzzDesc)
		q.SetAvailRing(fuzzAvail)
		q.SetUsedRing(fuzzUsed)
		q.SetEventIdx(feat&1 != 0)
		q.SetIndirect(feat&2 != 0)
		require.NoError(t, q.Validate(mem))
		q.SetReady(true)

		var c queue.Chain
		for range 2*int(size) + 2 {
			ok, err := q.PopInto(mem, &c)
			var ce *queue.ChainError
			switch {
			case errors.As(err, &ce):
				require.Less(t, ce.Head, size)
				require.NoError(t, q.AddUsed(mem, ce.Head, 0))
				continue
			case err != nil:
				require.ErrorIs(t, err, queue.ErrQueueBroken)
				return
			case !ok:
				_, err := q.EnableNotification(mem)
				require.NoError(t, err)
				return
			}
			require.Less(t, c.Head, size)
			for _, segs := range [][]queue.Segment{c.Readable, c.Writable} {
				for _, s := range segs {
					require.NotZero(t, s.Len)
					require.Len(t, s.Buf, int(s.Len))
					host, err := mem.Slice(s.GPA, uint64(s.Len))
					require.NoError(t, err, "segment outside RAM")
					require.Equal(t, unsafe.SliceData(host), unsafe.SliceData(s.Buf), "segment aliases its GPA")
				}
			}
			c.WriteAt(make([]byte, 64), 0)
			require.NoError(t, q.AddUsed(mem, c.Head, uint32(min(c.WritableLen(), 64))))
			_, err = q.NeedsNotification(mem)
			require.NoError(t, err)
		}
	})
}
