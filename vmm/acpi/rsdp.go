package acpi

// RSDP layout (ACPI 6.4 §5.2.5.3, Table 5.3).
const (
	rsdpLen         = 36
	rsdpV1Len       = 20 // bytes covered by the ACPI 1.0 checksum
	rsdpRevision    = 2  // ACPI 2.0+: XSDT and extended checksum present
	rsdpChecksum    = 8
	rsdpOEMID       = 9
	rsdpRev         = 15
	rsdpLength      = 20
	rsdpXSDT        = 24
	rsdpExtChecksum = 32
)

// buildRSDP returns an RSDP pointing at the XSDT only. RsdtAddress stays 0:
// ACPICA prefers the XSDT whenever the revision is >= 2 and the XSDT address
// is non-zero, and an RSDT would only duplicate it with 32-bit entries.
func buildRSDP(xsdt uint64) []byte {
	b := make([]byte, rsdpLen)
	copy(b[0:8], "RSD PTR ")
	copy(b[rsdpOEMID:rsdpOEMID+6], OEMID)
	b[rsdpRev] = rsdpRevision
	le.PutUint32(b[rsdpLength:], rsdpLen)
	le.PutUint64(b[rsdpXSDT:], xsdt)
	b[rsdpChecksum] = checksum(b[:rsdpV1Len])
	b[rsdpExtChecksum] = checksum(b)
	return b
}

// XSDT (ACPI 6.4 §5.2.8): header plus 64-bit table pointers.
const xsdtLen = headerLen + 2*8

// buildXSDT lists the FADT and MADT. The DSDT is reached through the FADT
// and must not be listed (§5.2.8).
func buildXSDT(fadt, madt uint64) []byte {
	b := newSDT("XSDT", 1, "GOVMMXSD", xsdtLen)
	le.PutUint64(b[headerLen:], fadt)
	le.PutUint64(b[headerLen+8:], madt)
	return finishSDT(b)
}
