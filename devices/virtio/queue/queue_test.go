package queue_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
	"github.com/govmm/govmm/vmm/guestmem"
)

// setup returns a ready queue and its driver.
func setup(t testing.TB, cfg queuetest.Config) (*queue.Queue, *queuetest.Driver) {
	t.Helper()
	d, err := queuetest.New(cfg)
	require.NoError(t, err)
	q := queue.New(d.Size)
	require.NoError(t, d.Configure(q))
	return q, d
}

func segBytes(segs []queue.Segment) []byte {
	var b []byte
	for _, s := range segs {
		b = append(b, s.Buf...)
	}
	return b
}

func TestNewClampsMaxSize(t *testing.T) {
	require.Equal(t, uint16(256), queue.New(256).MaxSize())
	require.Equal(t, uint16(256), queue.New(300).MaxSize())
	require.Equal(t, uint16(queue.MaxQueueSize), queue.New(65535).MaxSize())
	require.Equal(t, uint16(1), queue.New(0).MaxSize())
	q := queue.New(64)
	require.Equal(t, uint16(64), q.Size(), "queue_size reads as the maximum after reset")
	require.False(t, q.Ready())
}

func TestPopEmptyAndNotReady(t *testing.T) {
	q := queue.New(16)
	_, err := q.Pop(nil)
	require.ErrorIs(t, err, queue.ErrNotReady)

	q, d := setup(t, queuetest.Config{Size: 16})
	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.Nil(t, c)
}

func TestSingleChain(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 16})
	head, err := d.AddChain([][]byte{[]byte("hello "), []byte("world")}, []uint32{8, 100})
	require.NoError(t, err)

	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.NotNil(t, c)
	require.Equal(t, head, c.Head)
	require.False(t, c.Indirect)
	require.Len(t, c.Readable, 2)
	require.Len(t, c.Writable, 2)
	require.Equal(t, []byte("hello world"), segBytes(c.Readable))
	require.EqualValues(t, 11, c.ReadableLen())
	require.EqualValues(t, 108, c.WritableLen())

	p := make([]byte, 5)
	require.Equal(t, 5, c.ReadAt(p, 4))
	require.Equal(t, []byte("o wor"), p)
	require.Equal(t, 1, c.ReadAt(p, 10))
	require.Equal(t, 0, c.ReadAt(p, 11))

	reply := bytes.Repeat([]byte{0xab}, 20)
	require.Equal(t, 20, c.WriteAt(reply, 0), "spans both writable buffers")
	require.Equal(t, 100, c.WriteAt(make([]byte, 200), 8), "truncated at the end")
	require.Equal(t, 0, c.WriteAt(reply, 108))
	c.WriteAt(reply, 0)
	require.NoError(t, q.AddUsed(d.Mem, c.Head, 20))

	u, ok, err := d.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, head, u.ID)
	require.EqualValues(t, 20, u.Len)
	require.Equal(t, reply, u.Data)
	require.Zero(t, q.InFlight())

	c, err = q.Pop(d.Mem)
	require.NoError(t, err)
	require.Nil(t, c)
}

func TestMultipleChainsBatchPublish(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8})
	var heads []uint16
	for i := range 8 {
		h, err := d.AddChain([][]byte{{byte(i)}}, nil)
		require.NoError(t, err)
		heads = append(heads, h)
	}
	_, err := d.AddChain([][]byte{{9}}, nil)
	require.ErrorIs(t, err, queuetest.ErrNoSpace, "ring full")

	var c queue.Chain
	for i := range 8 {
		ok, err := q.PopInto(d.Mem, &c)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, heads[i], c.Head)
		require.Equal(t, []byte{byte(i)}, segBytes(c.Readable))
		require.Empty(t, c.Writable)
	}
	ok, err := q.PopInto(d.Mem, &c)
	require.NoError(t, err)
	require.False(t, ok)
	require.EqualValues(t, 8, q.InFlight())

	// Complete out of order; nothing is visible until PublishUsed.
	for i := 7; i >= 0; i-- {
		require.NoError(t, q.PutUsed(d.Mem, heads[i], 0))
	}
	idx, err := d.UsedIdx()
	require.NoError(t, err)
	require.Zero(t, idx)
	require.NoError(t, q.PublishUsed(d.Mem))
	idx, err = d.UsedIdx()
	require.NoError(t, err)
	require.EqualValues(t, 8, idx)
	for i := 7; i >= 0; i-- {
		u, ok, err := d.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
		require.EqualValues(t, heads[i], u.ID)
	}
	require.Equal(t, 8, d.FreeDescs())
}

// TestWrapAround runs enough iterations to wrap the free-running 16-bit
// avail and used indices, with several chains in flight at a time.
func TestWrapAround(t *testing.T) {
	for _, size := range []uint16{1, 2, 4, 256} {
		q, d := setup(t, queuetest.Config{Size: size, ChunkSize: 64})
		var c queue.Chain
		const iters = 70000
		// Two descriptors per chain (one each way), except for size 1.
		inflight, twoWay := max(1, int(size)/2), size > 1
		for i := 0; i < iters; {
			for k := 0; k < inflight; k++ {
				var rd [][]byte
				if twoWay {
					rd = [][]byte{{byte(i + k)}}
				}
				_, err := d.AddChain(rd, []uint32{4})
				require.NoError(t, err)
			}
			for k := 0; k < inflight; k++ {
				ok, err := q.PopInto(d.Mem, &c)
				require.NoError(t, err)
				require.True(t, ok)
				if twoWay {
					require.Equal(t, []byte{byte(i + k)}, segBytes(c.Readable))
				}
				require.Equal(t, 4, c.WriteAt([]byte{1, 2, 3, byte(i + k)}, 0))
				require.NoError(t, q.PutUsed(d.Mem, c.Head, 4))
			}
			require.NoError(t, q.PublishUsed(d.Mem))
			for k := 0; k < inflight; k++ {
				u, ok, err := d.PopUsed()
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, []byte{1, 2, 3, byte(i + k)}, u.Data)
			}
			i += inflight
		}
		require.Equal(t, d.AvailIdx(), q.NextAvail())
		require.Equal(t, d.AvailIdx(), q.NextUsed())
		require.Greater(t, uint64(iters), uint64(d.AvailIdx()), "index wrapped")
	}
}

func TestIndirect(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 4, Indirect: true})
	// Longer than the queue: allowed through an indirect table.
	rd := [][]byte{[]byte("a"), []byte("bc"), []byte("def"), []byte("ghij"), []byte("k")}
	head, err := d.AddIndirectChain(rd, []uint32{3, 5})
	require.NoError(t, err)
	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.Equal(t, head, c.Head)
	require.True(t, c.Indirect)
	require.Equal(t, []byte("abcdefghijk"), segBytes(c.Readable))
	require.EqualValues(t, 8, c.WritableLen())
	c.WriteAt([]byte("12345678"), 0)
	require.NoError(t, q.AddUsed(d.Mem, c.Head, 8))
	u, ok, err := d.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []byte("12345678"), u.Data)
}

// TestDirectThenIndirect: §2.7.5.3.2 devices must accept direct descriptors
// followed by one indirect descriptor.
func TestDirectThenIndirect(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 4, Indirect: true})
	b0, _ := d.Alloc()
	b1, _ := d.Alloc()
	tbl, _ := d.Alloc()
	require.NoError(t, d.Mem.WriteAt([]byte("hdr"), b0))
	require.NoError(t, d.WriteTable(tbl, []queuetest.Desc{
		{Addr: b1, Len: 10, Flags: queue.DescFWrite},
	}))
	require.NoError(t, d.WriteDesc(2, queuetest.Desc{Addr: b0, Len: 3, Flags: queue.DescFNext, Next: 3}))
	// The write flag on the indirect descriptor itself is ignored.
	require.NoError(t, d.WriteDesc(3, queuetest.Desc{Addr: tbl, Len: 16, Flags: queue.DescFIndirect | queue.DescFWrite}))
	require.NoError(t, d.PushAvail(2))
	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.EqualValues(t, 2, c.Head)
	require.Equal(t, []byte("hdr"), segBytes(c.Readable))
	require.EqualValues(t, 10, c.WritableLen())
	require.Equal(t, b1, c.Writable[0].GPA)
}

func TestZeroLengthDescriptorsSkipped(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 4})
	b, _ := d.Alloc()
	require.NoError(t, d.Mem.WriteAt([]byte("xy"), b))
	// Zero-length descriptors may point anywhere and carry any direction.
	require.NoError(t, d.WriteDesc(0, queuetest.Desc{Addr: 0, Len: 0, Flags: queue.DescFNext | queue.DescFWrite, Next: 1}))
	require.NoError(t, d.WriteDesc(1, queuetest.Desc{Addr: b, Len: 2, Flags: queue.DescFNext, Next: 2}))
	require.NoError(t, d.WriteDesc(2, queuetest.Desc{Addr: ^uint64(0), Len: 0}))
	require.NoError(t, d.PushAvail(0))
	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.Len(t, c.Readable, 1)
	require.Empty(t, c.Writable)
	require.Equal(t, []byte("xy"), segBytes(c.Readable))
}

// TestBufferSpanningAdjacentRegions: a descriptor covering two adjacent RAM
// regions is valid and yields one segment per region.
func TestBufferSpanningAdjacentRegions(t *testing.T) {
	r0 := make([]byte, 0x4000)
	r1 := make([]byte, 0x1000)
	mem, err := guestmem.FromRegions(
		guestmem.Region{GPA: 0x0, Host: r0},
		guestmem.Region{GPA: 0x4000, Host: r1},
		guestmem.Region{GPA: 0x8000, Host: make([]byte, 0x1000)}, // after a hole
	)
	require.NoError(t, err)
	q := queue.New(2)
	q.SetSize(2)
	q.SetDescTable(0x1000)
	q.SetAvailRing(0x2000)
	q.SetUsedRing(0x3000)
	require.NoError(t, q.Validate(mem))
	q.SetReady(true)
	putDesc := func(i int, addr uint64, n uint32) {
		b, err := mem.Slice(0x1000+16*uint64(i), 16)
		require.NoError(t, err)
		clear(b)
		for k := range 8 {
			b[k] = byte(addr >> (8 * k))
		}
		for k := range 4 {
			b[8+k] = byte(n >> (8 * k))
		}
	}
	publish := func(slot, head, idx uint16) {
		require.NoError(t, mem.StoreUint16(0x2004+2*uint64(slot), head))
		require.NoError(t, mem.StoreUint16(0x2002, idx))
	}
	putDesc(0, 0x3ff0, 0x20)
	publish(0, 0, 1)
	c, err := q.Pop(mem)
	require.NoError(t, err)
	require.Equal(t, []queue.Segment{
		{GPA: 0x3ff0, Len: 0x10, Buf: r0[0x3ff0:0x4000:0x4000]},
		{GPA: 0x4000, Len: 0x10, Buf: r1[:0x10:0x10]},
	}, c.Readable)

	// Across the hole at 0x5000 it is out of RAM.
	putDesc(1, 0x4ff0, 0x20)
	publish(1, 1, 2)
	_, err = q.Pop(mem)
	require.ErrorIs(t, err, queue.ErrDescOutOfRange)
}

func TestUndo(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8})
	h0, _ := d.AddChain([][]byte{{0}}, nil)
	h1, _ := d.AddChain([][]byte{{1}}, nil)
	h2, _ := d.AddChain([][]byte{{2}}, nil)

	require.ErrorIs(t, q.Undo(1), queue.ErrDeviceMisuse, "nothing popped")
	c0, err := q.Pop(d.Mem)
	require.NoError(t, err)
	c1, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.Equal(t, []uint16{h0, h1}, []uint16{c0.Head, c1.Head})
	require.NoError(t, q.AddUsed(d.Mem, c0.Head, 0))
	require.ErrorIs(t, q.Undo(2), queue.ErrDeviceMisuse, "only one chain in flight")
	require.NoError(t, q.Undo(1))
	require.Zero(t, q.InFlight())

	for _, want := range []uint16{h1, h2} {
		c, err := q.Pop(d.Mem)
		require.NoError(t, err)
		require.Equal(t, want, c.Head)
	}
	c, err := q.Pop(d.Mem)
	require.NoError(t, err)
	require.Nil(t, c)
}

func TestPutUsedMisuse(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 4})
	require.ErrorIs(t, q.AddUsed(d.Mem, 0, 0), queue.ErrDeviceMisuse, "nothing in flight")
	_, err := d.AddChain([][]byte{{1}}, nil)
	require.NoError(t, err)
	_, err = q.Pop(d.Mem)
	require.NoError(t, err)
	require.ErrorIs(t, q.AddUsed(d.Mem, 4, 0), queue.ErrDeviceMisuse, "head >= size")
	require.NoError(t, q.PublishUsed(d.Mem), "nothing pending is a no-op")
	idx, err := d.UsedIdx()
	require.NoError(t, err)
	require.Zero(t, idx)
}

func TestValidate(t *testing.T) {
	d, err := queuetest.New(queuetest.Config{Size: 16})
	require.NoError(t, err)
	end := d.Mem.End()
	cases := []struct {
		name              string
		size              uint16
		desc, avail, used uint64
	}{
		{"zero size", 0, d.DescTable, d.Avail, d.Used},
		{"not power of two", 12, d.DescTable, d.Avail, d.Used},
		{"above max", 32, d.DescTable, d.Avail, d.Used},
		{"desc misaligned", 16, d.DescTable + 8, d.Avail, d.Used},
		{"avail misaligned", 16, d.DescTable, d.Avail + 1, d.Used},
		{"used misaligned", 16, d.DescTable, d.Avail, d.Used + 2},
		{"desc below RAM", 16, 0, d.Avail, d.Used},
		{"desc past end", 16, end - 16*8, d.Avail, d.Used},
		{"avail past end", 16, d.DescTable, end - 4, d.Used},
		{"used past end", 16, d.DescTable, d.Avail, end - 8},
		{"used wraps", 16, d.DescTable, d.Avail, ^uint64(0) &^ 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := queue.New(16)
			q.SetSize(tc.size)
			q.SetDescTable(tc.desc)
			q.SetAvailRing(tc.avail)
			q.SetUsedRing(tc.used)
			require.ErrorIs(t, q.Validate(d.Mem), queue.ErrInvalidConfig)
		})
	}
	q := queue.New(32)
	require.NoError(t, d.Configure(q), "size below max is fine")
}

func TestSettersIgnoredWhileReadyAndReset(t *testing.T) {
	q, d := setup(t, queuetest.Config{Size: 8})
	q.SetSize(4)
	q.SetDescTable(0)
	q.SetAvailRing(0)
	q.SetUsedRing(0)
	require.Equal(t, uint16(8), q.Size())
	require.Equal(t, d.DescTable, q.DescTable())
	require.Equal(t, d.Avail, q.AvailRing())
	require.Equal(t, d.Used, q.UsedRing())

	_, err := d.AddChain([][]byte{{1}}, nil)
	require.NoError(t, err)
	_, err = q.Pop(d.Mem)
	require.NoError(t, err)
	q.Reset()
	require.False(t, q.Ready())
	require.Zero(t, q.NextAvail())
	require.Zero(t, q.InFlight())
	require.Zero(t, q.DescTable())
	require.Equal(t, q.MaxSize(), q.Size())
}

func TestChainErrorFormatting(t *testing.T) {
	err := error(&queue.ChainError{Head: 3, Err: queue.ErrNextOutOfRange})
	require.ErrorIs(t, err, queue.ErrInvalidChain)
	require.ErrorIs(t, err, queue.ErrNextOutOfRange)
	require.NotErrorIs(t, err, queue.ErrQueueBroken)
	var ce *queue.ChainError
	require.True(t, errors.As(err, &ce))
	require.EqualValues(t, 3, ce.Head)
	require.Contains(t, err.Error(), "head 3")
}
