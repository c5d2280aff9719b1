package pair

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

type rec struct {
	frames [][]nic.Used
	tx     []uint16
}

func (r *rec) RxFrames(b *nic.RxBatch) {
	for i := range b.Len() {
		r.frames = append(r.frames, append([]nic.Used(nil), b.Frame(i)...))
	}
}
func (r *rec) TxDone(ids []uint16) { r.tx = append(r.tx, ids...) }
func (r *rec) RxStarved()          {}

func TestPairDeliversAcrossMergeableBuffers(t *testing.T) {
	a, b := New()
	ra, rb := &rec{}, &rec{}
	require.NoError(t, a.Start(nic.Config{HdrLen: 12}, ra))
	require.NoError(t, b.Start(nic.Config{HdrLen: 12, Mergeable: true}, rb))
	b1, b2 := make([]byte, 100), make([]byte, 100)
	b.PostRx([]nic.Buf{{ID: 1, Segs: [][]byte{b1}}, {ID: 2, Segs: [][]byte{b2}}})

	hdr := make([]byte, 12)
	hdr[10] = 7 // sender's num_buffers must not leak to the receiver
	payload := bytes.Repeat([]byte{0xAB}, 150)
	segs := [][]byte{hdr, payload[:50], payload[50:]}
	a.Transmit([]nic.Buf{{ID: 4, Segs: segs}})

	require.Equal(t, []uint16{4}, ra.tx)
	require.Equal(t, [][]nic.Used{{{ID: 1, Written: 100}, {ID: 2, Written: 62}}}, rb.frames)
	require.Zero(t, b1[10])
	require.Equal(t, payload, append(b1[12:], b2[:62]...))
	require.Len(t, segs[1], 50, "the sender's segment list is not consumed")
}

func TestPairDropsWithoutRoom(t *testing.T) {
	a, b := New()
	require.NoError(t, a.Start(nic.Config{HdrLen: 12}, &rec{}))
	rb := &rec{}
	require.NoError(t, b.Start(nic.Config{HdrLen: 12}, rb)) // not mergeable: one buffer must hold it
	b.PostRx([]nic.Buf{{ID: 1, Segs: [][]byte{make([]byte, 50)}}})
	a.Transmit([]nic.Buf{{ID: 1, Segs: [][]byte{make([]byte, 12), make([]byte, 100)}}})
	require.Empty(t, rb.frames)
	require.Equal(t, uint64(1), b.Dropped.Load())
	require.Len(t, b.Stop(), 1)
}
