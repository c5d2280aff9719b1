package acpi

import (
	"errors"
	"fmt"
	"strings"
)

// A minimal AML encoder (ACPI 6.4 §20.2): just the terms the DSDT needs.
// Each helper returns the encoded bytes; encoding errors are kept in the
// encoder (first one wins) so that nested terms read like the ASL they
// implement, and are checked once at the end.

// AML opcodes and prefixes (ACPI 6.4 §20.3).
const (
	amlZeroOp       = 0x00
	amlOneOp        = 0x01
	amlNameOp       = 0x08
	amlBytePrefix   = 0x0A
	amlWordPrefix   = 0x0B
	amlDWordPrefix  = 0x0C
	amlQWordPrefix  = 0x0E
	amlScopeOp      = 0x10
	amlBufferOp     = 0x11
	amlPackageOp    = 0x12
	amlDualNamePfx  = 0x2E
	amlMultiNamePfx = 0x2F
	amlRootChar     = '\\'
	amlExtOpPrefix  = 0x5B
	amlDeviceOp     = 0x82 // after ExtOpPrefix
)

var errAML = errors.New("aml")

// maxPkgLength is the largest value a 4-byte PkgLength can hold (28 bits).
const maxPkgLength = 1<<28 - 1

// pkgLength encodes a PkgLength (§20.2.4) for n bytes of content following
// it. The encoded value includes the PkgLength bytes themselves, so the
// encoding size is chosen first: one byte holds 6 bits; 2, 3 and 4 bytes
// hold 4 bits in the lead byte plus 8 per following byte, and bits 7:6 of
// the lead byte count the following bytes.
func pkgLength(n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: negative package length %d", errAML, n)
	}
	if n+1 <= 0x3F {
		return []byte{byte(n + 1)}, nil
	}
	for size := 2; size <= 4; size++ {
		total := n + size
		if total > 1<<(4+8*(size-1))-1 {
			continue
		}
		b := make([]byte, size)
		b[0] = byte(size-1)<<6 | byte(total&0x0F)
		total >>= 4
		for i := 1; i < size; i++ {
			b[i] = byte(total)
			total >>= 8
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: package length %d exceeds %d", errAML, n, maxPkgLength)
}

type amlEncoder struct{ err error }

func (e *amlEncoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// pkg encodes op, a PkgLength and the concatenated body.
func (e *amlEncoder) pkg(op []byte, body ...[]byte) []byte {
	var content []byte
	for _, b := range body {
		content = append(content, b...)
	}
	pl, err := pkgLength(len(content))
	if err != nil {
		e.fail(err)
		return nil
	}
	return append(append(append([]byte{}, op...), pl...), content...)
}

// nameString encodes an absolute (leading '\') or relative path of
// 4-character NameSegs separated by dots (§20.2.2). Segments shorter than
// four characters are padded with '_', as ASL does.
func (e *amlEncoder) nameString(path string) []byte {
	var out []byte
	if strings.HasPrefix(path, `\`) {
		out = append(out, amlRootChar)
		path = path[1:]
	}
	segs := strings.Split(path, ".")
	switch {
	case len(segs) == 2:
		out = append(out, amlDualNamePfx)
	case len(segs) > 2:
		if len(segs) > 255 {
			e.fail(fmt.Errorf("%w: name %q has too many segments", errAML, path))
			return nil
		}
		out = append(out, amlMultiNamePfx, byte(len(segs)))
	}
	for _, s := range segs {
		seg, err := nameSeg(s)
		if err != nil {
			e.fail(err)
			return nil
		}
		out = append(out, seg...)
	}
	return out
}

// nameSeg validates one NameSeg: a lead character A-Z or '_' then up to
// three of A-Z, 0-9, '_' (§20.2.2).
func nameSeg(s string) ([]byte, error) {
	if len(s) == 0 || len(s) > 4 {
		return nil, fmt.Errorf("%w: bad NameSeg %q", errAML, s)
	}
	for i := range len(s) {
		c := s[i]
		ok := c == '_' || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return nil, fmt.Errorf("%w: bad NameSeg %q", errAML, s)
		}
	}
	return []byte(s + strings.Repeat("_", 4-len(s))), nil
}

// name encodes Name(path, obj) (§20.2.5.1 DefName).
func (e *amlEncoder) name(path string, obj []byte) []byte {
	return append(append([]byte{amlNameOp}, e.nameString(path)...), obj...)
}

// integer encodes an Integer with the shortest constant form (§20.2.3).
func integer(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xFF:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return le.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xFFFF_FFFF:
		return le.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	default:
		return le.AppendUint64([]byte{amlQWordPrefix}, v)
	}
}

// pkgOf encodes Package(){elems...} (§20.2.5.4 DefPackage).
func (e *amlEncoder) pkgOf(elems ...[]byte) []byte {
	if len(elems) > 255 {
		e.fail(fmt.Errorf("%w: package of %d elements", errAML, len(elems)))
		return nil
	}
	return e.pkg([]byte{amlPackageOp}, append([][]byte{{byte(len(elems))}}, elems...)...)
}

// buffer encodes Buffer(){data} (§20.2.5.4 DefBuffer).
func (e *amlEncoder) buffer(data []byte) []byte {
	return e.pkg([]byte{amlBufferOp}, integer(uint64(len(data))), data)
}

// scope encodes Scope(path){terms} (§20.2.5.1 DefScope).
func (e *amlEncoder) scope(path string, terms ...[]byte) []byte {
	return e.pkg([]byte{amlScopeOp}, append([][]byte{e.nameString(path)}, terms...)...)
}

// device encodes Device(path){terms} (§20.2.5.2 DefDevice).
func (e *amlEncoder) device(path string, terms ...[]byte) []byte {
	return e.pkg([]byte{amlExtOpPrefix, amlDeviceOp}, append([][]byte{e.nameString(path)}, terms...)...)
}

// eisaID encodes EISAID("PNPxxxx") as the DWord ASL produces: three
// letters compressed into 5 bits each and four hex digits, stored
// big-endian (§19.6.35).
func (e *amlEncoder) eisaID(id string) []byte {
	valid := len(id) == 7
	var v uint32
	for i := 0; valid && i < 3; i++ {
		c := id[i]
		valid = c >= 'A' && c <= 'Z'
		v = v<<5 | uint32(c-'@')
	}
	for i := 3; valid && i < 7; i++ {
		var d byte
		switch c := id[i]; {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			valid = false
		}
		v = v<<4 | uint32(d)
	}
	if !valid {
		e.fail(fmt.Errorf("%w: bad EISA ID %q", errAML, id))
		return nil
	}
	// v holds the letters in bits 30:16 and the digits in 15:0.
	return []byte{amlDWordPrefix, byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
