// Package csum is the Internet checksum (RFC 1071) as NIC models and the
// VMM's offload code need it: partial sums that can be extended over
// several buffers, then folded.
package csum

import "encoding/binary"

// Sum adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to the partial sum s. Partial sums are kept unfolded in a uint64
// of big-endian 32-bit words, which folds to the same 16-bit sum; b should
// start at an even offset of the data being summed.
func Sum(b []byte, s uint64) uint64 {
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

// Fold reduces a partial sum to 16 bits with end-around carries. The
// checksum field takes its complement.
func Fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return uint16(s)
}
