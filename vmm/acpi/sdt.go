package acpi

import "encoding/binary"

var le = binary.LittleEndian

// headerLen is the size of the common System Description Table header
// (ACPI 6.4 §5.2.6, Table 5.4).
const headerLen = 36

// Header field offsets (ACPI 6.4 Table 5.4).
const (
	hdrLength   = 4
	hdrChecksum = 9
)

// newSDT returns a table of size bytes whose header is filled in except for
// the checksum, which finishSDT computes once the body is written.
func newSDT(sig string, rev byte, tableID string, size int) []byte {
	b := make([]byte, size)
	copy(b[0:4], sig)
	le.PutUint32(b[hdrLength:], uint32(size))
	b[8] = rev
	copy(b[10:16], OEMID)
	copy(b[16:24], tableID)
	le.PutUint32(b[24:], oemRevision)
	copy(b[28:32], CreatorID)
	le.PutUint32(b[32:], creatorRevision)
	return b
}

// finishSDT sets the checksum so that all bytes of the table sum to zero
// modulo 256 (ACPI 6.4 §5.2.6).
func finishSDT(b []byte) []byte {
	b[hdrChecksum] = 0
	b[hdrChecksum] = checksum(b)
	return b
}

// checksum returns the byte that makes b sum to zero.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// Generic Address Structure (ACPI 6.4 §5.2.3.2, Table 5.1).
const (
	gasLen         = 12
	gasSystemIO    = 1 // Address Space ID: System I/O
	gasAccessByte  = 1 // Access Size: byte access
	gasBitWidthOne = 8 // Register Bit Width of a 1-byte register
)

// putGAS writes a byte-wide register in System I/O space at port.
func putGAS(b []byte, port uint64) {
	b[0] = gasSystemIO
	b[1] = gasBitWidthOne
	b[2] = 0 // bit offset
	b[3] = gasAccessByte
	le.PutUint64(b[4:], port)
}
