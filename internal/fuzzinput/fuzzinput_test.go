package fuzzinput

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLittleEndian(t *testing.T) {
	r := New([]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11})
	require.Equal(t, byte(0x01), r.Byte())
	require.Equal(t, uint16(0x0302), r.U16())
	require.Equal(t, uint32(0x07060504), r.U32())
	require.Equal(t, uint64(0x0F0E0D0C0B0A0908), r.Uint(8))
	require.Equal(t, uint64(0x1110), r.Uint(2))
	require.True(t, r.Empty())
}

// Past the end integers read as zero bytes, also in the middle of one.
func TestExhaustedReadsZero(t *testing.T) {
	r := New([]byte{0xAB, 0xCD, 0xEF})
	require.Equal(t, uint16(0xCDAB), r.U16())
	require.Equal(t, uint32(0xEF), r.U32(), "missing high bytes are zero")
	require.True(t, r.Empty())
	require.Zero(t, r.Byte())
	require.Zero(t, r.U16())
	require.Zero(t, r.U32())
	require.Zero(t, r.Uint(8))
	require.True(t, r.Empty())
}

// Bytes is not padded: it returns what is left, aliasing the input.
func TestBytesShortAtEnd(t *testing.T) {
	in := []byte{1, 2, 3, 4, 5}
	r := New(in)
	b := r.Bytes(2)
	require.Equal(t, []byte{1, 2}, b)
	require.Same(t, &in[0], &b[0])
	require.Empty(t, r.Bytes(0))
	require.Equal(t, []byte{3, 4, 5}, r.Bytes(10))
	require.True(t, r.Empty())
	require.Empty(t, r.Bytes(4))
}

func TestEmptyInput(t *testing.T) {
	for _, in := range [][]byte{nil, {}} {
		r := New(in)
		require.True(t, r.Empty())
		require.Zero(t, r.Byte())
		require.Empty(t, r.Bytes(1))
	}
}
