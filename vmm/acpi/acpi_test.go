package acpi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/layout"
)

func testPCI() *PCIConfig {
	return &PCIConfig{
		MMIO32Base: layout.PCIMMIO32Start,
		MMIO32Size: layout.PCIMMIO32End - layout.PCIMMIO32Start,
		MMIO64Base: layout.PCIMMIO64Start(8 << 30),
		MMIO64Size: layout.PCIMMIO64Size,
	}
}

func build(t *testing.T, cpus int, pci *PCIConfig) *Tables {
	t.Helper()
	tb, err := Build(Config{CPUs: cpus, Base: layout.ACPIStart, PCI: pci})
	require.NoError(t, err)
	return tb
}

// table returns the table at guest-physical addr, checking that its
// declared length lies inside the image.
func table(t *testing.T, tb *Tables, addr uint64) []byte {
	t.Helper()
	require.GreaterOrEqual(t, addr, tb.Base)
	off := addr - tb.Base
	require.LessOrEqual(t, off+headerLen, uint64(len(tb.Image)))
	n := uint64(binary.LittleEndian.Uint32(tb.Image[off+4:]))
	require.GreaterOrEqual(t, n, uint64(headerLen))
	require.LessOrEqual(t, off+n, uint64(len(tb.Image)))
	return tb.Image[off : off+n]
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// tables walks RSDP -> XSDT -> {FADT -> DSDT, MADT}, checking checksums
// and header identity on the way.
func tables(t *testing.T, tb *Tables) map[string][]byte {
	t.Helper()
	require.Equal(t, tb.Base, tb.RSDP)
	rsdp := tb.Image[:rsdpLen]
	require.Equal(t, "RSD PTR ", string(rsdp[:8]))
	require.Zero(t, tb.RSDP%16, "RSDP must be 16-byte aligned for the legacy scan")
	require.Zero(t, sum(rsdp[:20]), "ACPI 1.0 checksum")
	require.Zero(t, sum(rsdp), "extended checksum")
	require.Equal(t, byte(2), rsdp[15])
	require.Equal(t, uint32(rsdpLen), binary.LittleEndian.Uint32(rsdp[20:]))
	require.Equal(t, OEMID, string(rsdp[9:15]))
	require.Zero(t, binary.LittleEndian.Uint32(rsdp[16:]), "no RSDT")

	got := map[string][]byte{}
	check := func(b []byte) {
		require.Zero(t, sum(b), "%s checksum", b[:4])
		require.Equal(t, OEMID, string(b[10:16]))
		require.Equal(t, "GOVMM", string(b[16:21]))
		require.Equal(t, CreatorID, string(b[28:32]))
		got[string(b[:4])] = b
	}
	xsdt := table(t, tb, binary.LittleEndian.Uint64(rsdp[24:]))
	require.Equal(t, "XSDT", string(xsdt[:4]))
	check(xsdt)
	require.Len(t, xsdt, headerLen+16)
	for i := headerLen; i < len(xsdt); i += 8 {
		check(table(t, tb, binary.LittleEndian.Uint64(xsdt[i:])))
	}
	require.Contains(t, got, "FACP")
	require.Contains(t, got, "APIC")
	fadt := got["FACP"]
	dsdtAddr := binary.LittleEndian.Uint64(fadt[fadtOffXDSDT:])
	require.Equal(t, uint32(dsdtAddr), binary.LittleEndian.Uint32(fadt[fadtOffDSDT:]))
	dsdt := table(t, tb, dsdtAddr)
	require.Equal(t, "DSDT", string(dsdt[:4]))
	check(dsdt)
	return got
}

func TestBuildWalk(t *testing.T) {
	for _, cpus := range []int{1, 2, 7, layout.MaxCPUs} {
		for _, pci := range []*PCIConfig{nil, testPCI()} {
			tb := build(t, cpus, pci)
			tables(t, tb)
			require.LessOrEqual(t, layout.ACPIStart+uint64(len(tb.Image)), uint64(layout.ACPIEnd))
		}
	}
}

func TestFADT(t *testing.T) {
	fadt := tables(t, build(t, 1, nil))["FACP"]
	require.Len(t, fadt, 276)
	require.Equal(t, byte(6), fadt[8], "revision")
	require.Equal(t, byte(4), fadt[131], "minor version")
	require.Equal(t, uint16(layout.ACPISCIIRQ), binary.LittleEndian.Uint16(fadt[46:]))

	flags := binary.LittleEndian.Uint32(fadt[112:])
	require.Equal(t, uint32(1<<20|1<<5|1<<4), flags, "HW_REDUCED_ACPI, SLP_BUTTON, PWR_BUTTON only")
	require.Zero(t, flags&(1<<10), "no RESET_REG_SUP")
	require.Equal(t, make([]byte, 12), fadt[116:128], "no RESET_REG")
	require.Zero(t, fadt[128], "no RESET_VALUE")

	boot := binary.LittleEndian.Uint16(fadt[109:])
	require.Equal(t, uint16(1<<1|1<<2|1<<5), boot, "8042 present, VGA not present, no CMOS RTC, MSI supported")

	gas := []byte{1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0} // System I/O, 8 bits, byte access, port 0x600
	require.Equal(t, uint16(0x600), uint16(layout.PortACPISleep), "test vector assumes port 0x600")
	require.Equal(t, gas, fadt[244:256], "X_SLEEP_CONTROL_REG")
	require.Equal(t, gas, fadt[256:268], "X_SLEEP_STATUS_REG")
	require.Equal(t, "GOVMMKVM", string(fadt[268:276]))
	require.Zero(t, binary.LittleEndian.Uint64(fadt[132:]), "no FACS")
	require.Equal(t, make([]byte, 96), fadt[148:244], "no legacy X_ register blocks")
}

func TestMADT(t *testing.T) {
	for _, cpus := range []int{1, 4, layout.MaxCPUs} {
		madt := tables(t, build(t, cpus, nil))["APIC"]
		require.Equal(t, byte(5), madt[8], "revision")
		require.Equal(t, uint32(layout.LAPICAddr), binary.LittleEndian.Uint32(madt[36:]))
		require.Zero(t, binary.LittleEndian.Uint32(madt[40:]), "PCAT_COMPAT clear")

		var lapics, ioapics int
		isos := map[byte]uint32{}
		for off := madtHdrLen; off < len(madt); {
			typ, n := madt[off], int(madt[off+1])
			require.Positive(t, n)
			require.LessOrEqual(t, off+n, len(madt))
			e := madt[off : off+n]
			switch typ {
			case 0:
				require.Equal(t, 8, n)
				require.Equal(t, byte(lapics), e[2], "UID")
				require.Equal(t, byte(lapics), e[3], "APIC ID")
				require.Equal(t, uint32(1), binary.LittleEndian.Uint32(e[4:]), "enabled")
				lapics++
			case 1:
				require.Equal(t, 12, n)
				require.Equal(t, uint32(layout.IOAPICAddr), binary.LittleEndian.Uint32(e[4:]))
				require.Zero(t, binary.LittleEndian.Uint32(e[8:]), "GSI base")
				ioapics++
			case 2:
				require.Equal(t, 10, n)
				require.Zero(t, e[2], "ISA bus")
				isos[e[3]] = binary.LittleEndian.Uint32(e[4:])
				require.Equal(t, uint16(0x5), binary.LittleEndian.Uint16(e[8:]), "edge, active high")
			default:
				t.Fatalf("unexpected MADT entry type %d", typ)
			}
			off += n
		}
		require.Equal(t, cpus, lapics)
		require.Equal(t, 1, ioapics)
		require.Equal(t, map[byte]uint32{0: 2, layout.SerialIRQ: layout.SerialIRQ}, isos)
	}
}

func TestDSDT(t *testing.T) {
	s5 := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, layout.ACPIS5SlpTyp, 0x00, 0x00, 0x00}

	dsdt := tables(t, build(t, 2, nil))["DSDT"]
	require.Equal(t, byte(2), dsdt[8])
	require.Equal(t, s5, dsdt[headerLen:headerLen+len(s5)], "the DSDT starts with \\_S5")
	// COM1 (PNP0501) with I/O 0x3F8/8 and GSI 4, edge, active-high.
	com1CRS := []byte{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, 0x79, 0x00}
	require.True(t, bytes.Contains(dsdt, []byte("COM1")))
	require.True(t, bytes.Contains(dsdt, []byte{0x41, 0xD0, 0x05, 0x01}), "EISA id PNP0501")
	require.True(t, bytes.Contains(dsdt, com1CRS), "COM1 _CRS")

	dsdt = tables(t, build(t, 2, testPCI()))["DSDT"]
	require.Equal(t, s5, dsdt[headerLen:headerLen+len(s5)])
	require.True(t, bytes.Contains(dsdt, []byte{0x0C, 0x41, 0xD0, 0x0A, 0x03}), "PNP0A03")
	require.True(t, bytes.HasSuffix(dsdt, endTag), "_CRS ends the DSDT")
}

func TestBuildErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no cpus":        {CPUs: 0, Base: layout.ACPIStart},
		"too many cpus":  {CPUs: layout.MaxCPUs + 1, Base: layout.ACPIStart},
		"misaligned":     {CPUs: 1, Base: layout.ACPIStart + 8},
		"past 4G":        {CPUs: 1, Base: 1<<32 - 16},
		"past BIOS area": {CPUs: 1, Base: layout.ACPIEnd - 16},
		"empty 32-bit window": {CPUs: 1, Base: layout.ACPIStart,
			PCI: &PCIConfig{MMIO32Base: layout.PCIMMIO32Start}},
		"32-bit window past 4G": {CPUs: 1, Base: layout.ACPIStart,
			PCI: &PCIConfig{MMIO32Base: layout.PCIMMIO32Start, MMIO32Size: 1 << 32}},
		"64-bit window wraps": {CPUs: 1, Base: layout.ACPIStart,
			PCI: &PCIConfig{MMIO32Base: layout.PCIMMIO32Start, MMIO32Size: 1 << 20, MMIO64Base: 1 << 63, MMIO64Size: 1 << 63}},
	} {
		_, err := Build(cfg)
		require.ErrorIs(t, err, ErrConfig, name)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	a, b := build(t, 3, testPCI()), build(t, 3, testPCI())
	require.Equal(t, a.Image, b.Image)
}

func TestBuildRejectsHugeWindow(t *testing.T) {
	_, err := Build(Config{CPUs: 1, Base: layout.ACPIStart,
		PCI: &PCIConfig{MMIO32Base: layout.PCIMMIO32Start, MMIO32Size: ^uint64(0)}})
	require.ErrorIs(t, err, ErrConfig)
}
