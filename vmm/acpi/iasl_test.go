package acpi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIASL cross-checks the tables with the ACPICA disassembler, an
// independent implementation of the table layouts and of AML. It is skipped
// when iasl is not installed (Debian/Ubuntu: apt-get install acpica-tools).
// The RSDP is not covered: iasl does not disassemble a bare RSDP.
func TestIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (acpica-tools); skipping disassembler cross-check")
	}
	dir := t.TempDir()
	got := tables(t, build(t, 4, testPCI()))

	// iasl reports problems as "Incorrect checksum", "Firmware Warning",
	// "Error", "Invalid" or "Unknown" in its log or in the .dsl it writes.
	bad := regexp.MustCompile(`(?i)incorrect|warning|error|invalid|unknown`)
	for sig, b := range got {
		dat := filepath.Join(dir, sig+".dat")
		require.NoError(t, os.WriteFile(dat, b, 0o644))
		out, err := exec.Command(iasl, "-d", dat).CombinedOutput()
		require.NoError(t, err, "iasl -d %s:\n%s", sig, out)
		dsl, err := os.ReadFile(filepath.Join(dir, sig+".dsl"))
		require.NoError(t, err)
		require.False(t, bad.Match(out), "iasl -d %s:\n%s", sig, out)
		require.False(t, bad.Match(dsl), "%s.dsl:\n%s", sig, dsl)
	}

	dsl, err := os.ReadFile(filepath.Join(dir, "DSDT.dsl"))
	require.NoError(t, err)
	for _, want := range []string{
		`Name (\_S5, Package (0x04)`,
		`Device (PCI0)`,
		`EisaId ("PNP0A03")`,
		`Name (_CRS, ResourceTemplate ()`,
		`WordBusNumber (ResourceProducer`,
		`DWordMemory (ResourceProducer`,
		`QWordMemory (ResourceProducer`,
	} {
		require.Contains(t, string(dsl), want)
	}

	// Round trip: recompiling the disassembly without name-path
	// optimisation must give back our AML byte for byte.
	out, err := exec.Command(iasl, "-on", "-p", filepath.Join(dir, "rt"), filepath.Join(dir, "DSDT.dsl")).CombinedOutput()
	require.NoError(t, err, "iasl compile:\n%s", out)
	aml, err := os.ReadFile(filepath.Join(dir, "rt.aml"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got["DSDT"][headerLen:], aml[headerLen:]), "AML differs after iasl round trip")
}
