// Package acpi builds the ACPI tables that a stock Linux guest needs when it
// is booted without firmware: RSDP, XSDT, FADT, MADT and DSDT, laid out as a
// single image that the VMM copies into guest RAM.
//
// The machine is described as a HW-reduced ACPI platform (ACPI 6.4 §4.1):
// there are no PM1/GPE register blocks, no SMI command port, no FACS and no
// fixed power/sleep buttons. The only ACPI "hardware" is the sleep
// control/status register pair of the FADT (§4.8.3.7), which is how the guest
// powers off. Reboot is deliberately left to the i8042 (no RESET_REG).
package acpi

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/govmm/govmm/vmm/layout"
)

// Identification strings written into every table header (ACPI 6.4 §5.2.6).
const (
	OEMID           = "GOVMM "
	CreatorID       = "GOVM"
	oemRevision     = 1
	creatorRevision = 1
	hypervisorID    = "GOVMMKVM" // FADT HYPERVISOR_VENDOR_IDENTITY
)

// ErrConfig is wrapped by every error Build returns for a bad Config.
var ErrConfig = errors.New("acpi: invalid config")

// Config describes the machine the tables advertise.
type Config struct {
	// CPUs is the number of vCPUs, 1..layout.MaxCPUs. vCPU i gets APIC ID
	// i and ACPI processor UID i.
	CPUs int
	// Base is the guest-physical address Image is copied to. It must be
	// 16-byte aligned (the RSDP sits at Base and Linux's legacy scan of
	// 0xE0000-0xFFFFF only looks at 16-byte boundaries, ACPI 6.4 §5.2.5.1);
	// normally layout.ACPIStart.
	Base uint64
	// PCI, when non-nil, adds a PCI host bridge (\_SB.PCI0) to the DSDT.
	// Once ACPI is enabled, x86 Linux only scans PCI buses that ACPI
	// declares, so without it no PCI device is found.
	PCI *PCIConfig
}

// PCIConfig describes the host bridge's resource windows. Configuration
// space is reached through the legacy 0xCF8/0xCFC mechanism; there is no
// MCFG, so the bridge is a conventional PNP0A03 rather than PNP0A08.
type PCIConfig struct {
	MMIO32Base, MMIO32Size uint64 // 32-bit BAR window, below 4 GiB
	MMIO64Base, MMIO64Size uint64 // 64-bit BAR window; size 0 omits it
}

// Tables is the built image.
type Tables struct {
	// Base is the guest-physical address of Image[0] (Config.Base).
	Base uint64
	// Image holds RSDP, XSDT, FADT, MADT and DSDT back to back.
	Image []byte
	// RSDP is the guest-physical address of the RSDP, for
	// boot_params.acpi_rsdp_addr. It equals Base.
	RSDP uint64
}

// Table offsets inside the image. Tables are 16-byte aligned for
// readability of hex dumps; the spec only needs the RSDP aligned.
const (
	rsdpOff = 0
	xsdtOff = 48 // align16(rsdpLen)
)

// Build lays out the tables for cfg.
func Build(cfg Config) (*Tables, error) {
	if cfg.CPUs < 1 || cfg.CPUs > layout.MaxCPUs {
		return nil, fmt.Errorf("%w: %d CPUs, want 1..%d", ErrConfig, cfg.CPUs, layout.MaxCPUs)
	}
	if cfg.Base%16 != 0 {
		return nil, fmt.Errorf("%w: base %#x is not 16-byte aligned", ErrConfig, cfg.Base)
	}
	if p := cfg.PCI; p != nil {
		if p.MMIO32Size == 0 || p.MMIO32Base >= 1<<32 || p.MMIO32Size > 1<<32-p.MMIO32Base {
			return nil, fmt.Errorf("%w: 32-bit PCI window %#x+%#x", ErrConfig, p.MMIO32Base, p.MMIO32Size)
		}
		if p.MMIO64Base+p.MMIO64Size < p.MMIO64Base {
			return nil, fmt.Errorf("%w: 64-bit PCI window %#x+%#x", ErrConfig, p.MMIO64Base, p.MMIO64Size)
		}
	}

	dsdt, err := buildDSDT(cfg.PCI)
	if err != nil {
		return nil, fmt.Errorf("acpi: DSDT: %w", err)
	}
	madt := buildMADT(cfg.CPUs)

	fadtOff := align16(xsdtOff + xsdtLen)
	madtOff := align16(fadtOff + fadtLen)
	dsdtOff := align16(madtOff + len(madt))
	size := dsdtOff + len(dsdt)

	end := cfg.Base + uint64(size)
	if end > 1<<32 {
		// FADT.DSDT is a 32-bit field; keep both DSDT pointers valid.
		return nil, fmt.Errorf("%w: tables at %#x+%#x cross 4 GiB", ErrConfig, cfg.Base, size)
	}
	if cfg.Base >= layout.ACPIStart && cfg.Base < layout.ACPIEnd && end > layout.ACPIEnd {
		return nil, fmt.Errorf("%w: tables at %#x+%#x overrun the BIOS area end %#x", ErrConfig, cfg.Base, size, layout.ACPIEnd)
	}

	img := make([]byte, size)
	addr := func(off int) uint64 { return cfg.Base + uint64(off) }
	copy(img[dsdtOff:], dsdt)
	copy(img[madtOff:], madt)
	copy(img[fadtOff:], buildFADT(addr(dsdtOff)))
	copy(img[xsdtOff:], buildXSDT(addr(fadtOff), addr(madtOff)))
	copy(img[rsdpOff:], buildRSDP(addr(xsdtOff)))

	slog.Debug("acpi: tables built", "base", fmt.Sprintf("%#x", cfg.Base), "size", size,
		"cpus", cfg.CPUs, "pci", cfg.PCI != nil)
	return &Tables{Base: cfg.Base, Image: img, RSDP: addr(rsdpOff)}, nil
}

func align16(n int) int { return (n + 15) &^ 15 }
