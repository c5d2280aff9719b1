package acpi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// decodePkgLength is the reader side of §20.2.4, used to cross-check the
// encoder: it returns the encoded value and the number of bytes used.
func decodePkgLength(b []byte) (int, int) {
	n := int(b[0] >> 6)
	if n == 0 {
		return int(b[0] & 0x3F), 1
	}
	v := int(b[0] & 0x0F)
	for i := 1; i <= n; i++ {
		v |= int(b[i]) << (4 + 8*(i-1))
	}
	return v, n + 1
}

func TestPkgLengthForms(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x01}},
		{5, []byte{0x06}},
		{62, []byte{0x3F}},                                 // largest 1-byte form
		{63, []byte{0x41, 0x04}},                           // 65 = 0x041
		{0xFFF - 2, []byte{0x4F, 0xFF}},                    // largest 2-byte form
		{0xFFF - 1, []byte{0x81, 0x00, 0x01}},              // 0x1001
		{0xFFFFF - 3, []byte{0x8F, 0xFF, 0xFF}},            // largest 3-byte form
		{0xFFFFF - 2, []byte{0xC1, 0x00, 0x00, 0x01}},      // 0x100001
		{maxPkgLength - 4, []byte{0xCF, 0xFF, 0xFF, 0xFF}}, // largest 4-byte form
	} {
		got, err := pkgLength(tc.n)
		require.NoError(t, err, "n=%d", tc.n)
		require.Equal(t, tc.want, got, "n=%d", tc.n)
		v, used := decodePkgLength(got)
		require.Equal(t, len(got), used)
		require.Equal(t, tc.n+len(got), v, "value counts its own bytes")
	}
}

func TestPkgLengthRoundTrip(t *testing.T) {
	for n := 0; n < 1<<21; n += 97 {
		b, err := pkgLength(n)
		require.NoError(t, err)
		v, used := decodePkgLength(b)
		require.Equal(t, len(b), used)
		require.Equal(t, n+len(b), v)
	}
}

func TestPkgLengthLimits(t *testing.T) {
	_, err := pkgLength(maxPkgLength - 3)
	require.ErrorIs(t, err, errAML)
	_, err = pkgLength(-1)
	require.ErrorIs(t, err, errAML)
}

func TestInteger(t *testing.T) {
	require.Equal(t, []byte{0x00}, integer(0))
	require.Equal(t, []byte{0x01}, integer(1))
	require.Equal(t, []byte{0x0A, 0x05}, integer(5))
	require.Equal(t, []byte{0x0B, 0x34, 0x12}, integer(0x1234))
	require.Equal(t, []byte{0x0C, 0x78, 0x56, 0x34, 0x12}, integer(0x12345678))
	require.Equal(t, []byte{0x0E, 8, 7, 6, 5, 4, 3, 2, 1}, integer(0x0102030405060708))
}

func TestNameString(t *testing.T) {
	var e amlEncoder
	require.Equal(t, []byte(`\_S5_`), e.nameString(`\_S5`))
	require.Equal(t, []byte("PCI0"), e.nameString("PCI0"))
	require.Equal(t, append([]byte{'\\', 0x2E}, "_SB_PCI0"...), e.nameString(`\_SB.PCI0`))
	require.Equal(t, append([]byte{0x2F, 3}, "_SB_PCI0S00_"...), e.nameString(`_SB.PCI0.S00`))
	require.NoError(t, e.err)

	for _, bad := range []string{"", "TOOLONG", "0ABC", "a", `\_SB.`, "A-B"} {
		var e amlEncoder
		e.nameString(bad)
		require.ErrorIs(t, e.err, errAML, "%q", bad)
	}
}

func TestEISAID(t *testing.T) {
	var e amlEncoder
	// Byte patterns as emitted by iasl for EisaId().
	require.Equal(t, []byte{0x0C, 0x41, 0xD0, 0x0A, 0x03}, e.eisaID("PNP0A03"))
	require.Equal(t, []byte{0x0C, 0x41, 0xD0, 0x05, 0x01}, e.eisaID("PNP0501"))
	require.NoError(t, e.err)
	for _, bad := range []string{"PNP0A0", "pnp0A03", "PNP0A0G"} {
		var e amlEncoder
		e.eisaID(bad)
		require.ErrorIs(t, e.err, errAML, "%q", bad)
	}
}

func TestS5Package(t *testing.T) {
	var e amlEncoder
	got := e.name(`\_S5`, e.pkgOf(integer(5), integer(0), integer(0), integer(0)))
	require.NoError(t, e.err)
	// NameOp \_S5_ PackageOp PkgLength(7) NumElements(4) BytePrefix 5, Zero x3
	require.Equal(t, []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00}, got)
}

func TestNestedPkgLength(t *testing.T) {
	// A device big enough to need a 2-byte PkgLength inside a scope.
	var e amlEncoder
	big := make([]byte, 100)
	dev := e.device("DEV0", e.name("BUF0", e.buffer(big)))
	require.NoError(t, e.err)
	require.Equal(t, []byte{0x5B, 0x82}, dev[:2])
	v, used := decodePkgLength(dev[2:])
	require.Equal(t, 2, used)
	require.Equal(t, len(dev)-2, v, "PkgLength covers everything after the opcode")
}
