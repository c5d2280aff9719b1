package csum

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// RFC 1071 §3 example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
func TestRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	require.Equal(t, uint16(0xddf2), Fold(Sum(b, 0)))
	// Split anywhere on an even offset, the partial sums add up.
	for i := 0; i <= len(b); i += 2 {
		require.Equal(t, uint16(0xddf2), Fold(Sum(b[i:], Sum(b[:i], 0))))
	}
	// An odd tail is padded with a zero byte.
	require.Equal(t, Fold(Sum([]byte{0xab, 0x00}, 0)), Fold(Sum([]byte{0xab}, 0)))
}
