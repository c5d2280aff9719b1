// Package layout fixes the guest-physical and port address map of a govmm
// x86-64 machine. Everything that places something in the guest (boot
// loader, ACPI, PCI BAR allocator, e820) takes its addresses from here, so
// the map is written down once.
package layout

const (
	// Low memory used by the boot path (all inside the first 1 MiB of RAM).
	GDTAddr       = 0x500   // boot GDT (null, code64, data)
	IDTAddr       = 0x520   // empty boot IDT
	ZeroPageAddr  = 0x7000  // struct boot_params
	PML4Addr      = 0x9000  // boot page tables: PML4, PDPT, 4 PDs = 4 GiB identity map
	PDPTAddr      = 0xA000  //
	PDAddr        = 0xB000  // 4 pages: 0xB000..0xEFFF
	CmdlineAddr   = 0x20000 // kernel command line
	CmdlineMax    = 0x10000 // bytes reserved for it
	EBDAStart     = 0x9FC00 // extended BIOS data area: reserved in e820 up to 1 MiB
	ResetVector   = 0xFFFF0 // real-mode reset vector F000:FFF0: holds a stub that resets via the i8042
	ACPIStart     = 0xE0000 // RSDP (found by the kernel's scan of 0xE0000-0xFFFFF) and the tables after it
	ACPIEnd       = 0x100000
	HighMemStart  = 0x100000 // 1 MiB: protected-mode kernel is loaded here
	KernelLoadAdr = HighMemStart

	// MMIO32Start ends low RAM: [MMIO32Start, 4 GiB) is never RAM. It holds
	// 32-bit BARs, the IOAPIC, the LAPIC and KVM's private pages. RAM beyond
	// MMIO32Start is placed from 4 GiB up.
	MMIO32Start    = 0xC000_0000
	PCIMMIO32Start = MMIO32Start // 32-bit BAR window
	PCIMMIO32End   = 0xFC00_0000 // exclusive
	KVMIdentityMap = 0xFEFF_C000 // KVM_SET_IDENTITY_MAP_ADDR (1 page)
	KVMTSSAddr     = 0xFEFF_D000 // KVM_SET_TSS_ADDR (3 pages)
	IOAPICAddr     = 0xFEC0_0000
	LAPICAddr      = 0xFEE0_0000
	HighRAMStart   = 0x1_0000_0000 // 4 GiB
	PCIMMIO64Align = 1 << 30       // 64-bit BAR window starts at a 1 GiB boundary above RAM
	PCIMMIO64Size  = 64 << 30
	MaxCPUs        = 32
	SerialIRQ      = 4 // COM1, ISA IRQ = GSI under the identity ISA mapping
	ACPISCIIRQ     = 9
	NumLegacyGSI   = 24 // IOAPIC pins; MSI routes are allocated above this

	// Port I/O.
	PortCOM1      = 0x3F8
	PortI8042Data = 0x60
	PortI8042Cmd  = 0x64
	PortPCIConfig = 0xCF8 // 0xCF8 address, 0xCFC..0xCFF data
	PortACPISleep = 0x600 // FADT X_SLEEP_CONTROL_REG and X_SLEEP_STATUS_REG (1 byte each, same port)
	ACPIS5SlpTyp  = 5     // \_S5 SLP_TYP; guest writes (SLP_TYP<<2)|SLP_EN(0x20) to power off
)

// PCIMMIO64Start returns the base of the 64-bit BAR window for a guest whose
// RAM ends (exclusive) at ramEnd.
func PCIMMIO64Start(ramEnd uint64) uint64 {
	s := uint64(HighRAMStart)
	if ramEnd > s {
		s = ramEnd
	}
	return (s + PCIMMIO64Align - 1) &^ (PCIMMIO64Align - 1)
}
