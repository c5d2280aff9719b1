package queue

// Segment is one contiguous piece of a descriptor's buffer. A descriptor
// whose buffer spans two adjacent RAM regions yields two segments.
type Segment struct {
	GPA uint64 // guest-physical address of the first byte
	Len uint32 // length in bytes; always len(Buf)
	// Buf aliases guest RAM (no copy). The guest may change readable bytes
	// at any time: copy what you validate before acting on it (TOCTOU).
	Buf []byte
}

// Chain is a descriptor chain popped from the available ring (§2.7.5).
// Device-readable segments always precede device-writable ones in the
// chain (§2.7.4.2), and Pop rejects chains that do not; zero-length
// descriptors are skipped.
//
// A Chain can be reused across PopInto calls to avoid allocation; its
// segment slices are then overwritten.
type Chain struct {
	Head     uint16    // head descriptor index; return it with AddUsed
	Readable []Segment // device-readable (driver-written) buffers, in order
	Writable []Segment // device-writable buffers, in order
	// Indirect reports whether the chain went through an indirect table.
	Indirect bool
}

// ReadableLen returns the total number of device-readable bytes.
func (c *Chain) ReadableLen() uint64 { return segLen(c.Readable) }

// WritableLen returns the total number of device-writable bytes.
func (c *Chain) WritableLen() uint64 { return segLen(c.Writable) }

// ReadAt copies readable bytes starting at offset off into p and returns the
// number copied (less than len(p) only at the end of the readable part).
func (c *Chain) ReadAt(p []byte, off uint64) int {
	return copySegs(c.Readable, off, p, false)
}

// WriteAt copies p into the writable part starting at offset off and returns
// the number of bytes copied (less than len(p) only if the buffers are full).
func (c *Chain) WriteAt(p []byte, off uint64) int {
	return copySegs(c.Writable, off, p, true)
}

// keepSegs is the segment capacity a reused Chain keeps from one pop to
// the next: ordinary chains (Linux's have at most MAX_SKB_FRAGS+2) never
// reallocate, and one large chain does not leave its array behind.
const keepSegs = 64

func (c *Chain) reset(head uint16) {
	c.Head = head
	c.Readable = trimSegs(c.Readable)
	c.Writable = trimSegs(c.Writable)
	c.Indirect = false
}

func trimSegs(s []Segment) []Segment {
	if cap(s) > keepSegs {
		return nil
	}
	return s[:0]
}

func segLen(s []Segment) uint64 {
	var n uint64
	for i := range s {
		n += uint64(s[i].Len)
	}
	return n
}

// copySegs copies between p and the byte stream formed by segs, starting at
// stream offset off. toSegs selects the direction.
func copySegs(segs []Segment, off uint64, p []byte, toSegs bool) int {
	done := 0
	for i := range segs {
		if done == len(p) {
			break
		}
		b := segs[i].Buf
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		b = b[off:]
		off = 0
		var n int
		if toSegs {
			n = copy(b, p[done:])
		} else {
			n = copy(p[done:], b)
		}
		done += n
	}
	return done
}
