// Package fuzzinput reads a fuzz input as a stream of little-endian
// integers and byte strings, for the fuzz harnesses of the device models.
//
// The decoding is part of the meaning of the seed corpora checked in under
// testdata/fuzz, so it must not change: integers are little-endian, and
// past the end of the input every integer reads as 0 (a truncated program
// runs on with zero operands rather than stopping), while Bytes returns
// only what is left.
package fuzzinput

// Reader consumes a fuzz input from the front.
type Reader struct{ b []byte }

// New returns a Reader over data, which it does not copy.
func New(data []byte) *Reader { return &Reader{b: data} }

// Empty reports whether the input is used up.
func (r *Reader) Empty() bool { return len(r.b) == 0 }

// Byte returns the next byte, or 0 past the end.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// U16 returns the next 2 bytes as a little-endian integer.
func (r *Reader) U16() uint16 { return uint16(r.Uint(2)) }

// U32 returns the next 4 bytes as a little-endian integer.
func (r *Reader) U32() uint32 { return uint32(r.Uint(4)) }

// Uint returns the next n bytes (n <= 8) as a little-endian integer;
// bytes past the end read as 0.
func (r *Reader) Uint(n int) uint64 {
	var v uint64
	for i := range n {
		v |= uint64(r.Byte()) << (8 * i)
	}
	return v
}

// Bytes returns the next n bytes, or all that are left if fewer: unlike
// the integers, a byte string is not padded with zeros. The result aliases
// the input, which a fuzz function must not modify.
func (r *Reader) Bytes(n int) []byte {
	n = min(n, len(r.b))
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
