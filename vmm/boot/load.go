package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/layout"
)

// E820 memory types.
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
)

// E820Entry is one entry of the BIOS memory map passed in the zero page.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// Zero page (struct boot_params) offsets (Documentation/arch/x86/zero-page.rst).
const (
	zpACPIRSDPAddr = 0x070
	zpE820Entries  = 0x1E8
	zpE820Table    = 0x2D0
	zpE820Max      = 128
)

// Params is what Load needs besides the kernel.
type Params struct {
	Cmdline string
	Initrd  []byte
	E820    []E820Entry
	RSDP    uint64 // ACPI RSDP address for boot_params.acpi_rsdp_addr (0: kernel scans)
}

// Entry is where and how the boot vCPU starts.
type Entry struct {
	RIP      uint64 // 64-bit entry point
	ZeroPage uint64 // passed in RSI
}

// Load places the kernel at 1 MiB, the initrd as high as the kernel allows
// in low RAM, the command line, the zero page, and the boot page tables and
// GDT. All writes go through mem, so a layout that does not fit is an error,
// not a corruption.
func Load(mem *guestmem.Memory, k *Kernel, p Params) (Entry, error) {
	pm := k.protectedMode()
	if err := mem.WriteAt(pm, layout.KernelLoadAdr); err != nil {
		return Entry{}, fmt.Errorf("kernel (%d bytes) does not fit in guest RAM at %#x: %w", len(pm), layout.KernelLoadAdr, err)
	}

	zp := make([]byte, 4096)
	copy(zp[hdrSetupSects:], k.setupHeader())
	zp[hdrTypeOfLoader] = 0xFF // undefined boot loader
	zp[hdrLoadFlags] |= canUseHeap
	binary.LittleEndian.PutUint16(zp[hdrHeapEndPtr:], 0xFE00)

	if uint32(len(p.Cmdline)) > k.CmdlineMax || len(p.Cmdline) >= layout.CmdlineMax {
		return Entry{}, fmt.Errorf("command line is %d bytes; the kernel accepts at most %d", len(p.Cmdline), k.CmdlineMax)
	}
	if err := mem.WriteAt(append([]byte(p.Cmdline), 0), layout.CmdlineAddr); err != nil {
		return Entry{}, fmt.Errorf("command line: %w", err)
	}
	binary.LittleEndian.PutUint32(zp[hdrCmdLinePtr:], layout.CmdlineAddr)

	if len(p.Initrd) > 0 {
		addr, err := initrdAddr(mem, k, uint64(len(p.Initrd)))
		if err != nil {
			return Entry{}, err
		}
		if err := mem.WriteAt(p.Initrd, addr); err != nil {
			return Entry{}, fmt.Errorf("initrd: %w", err)
		}
		binary.LittleEndian.PutUint32(zp[hdrRamdiskImage:], uint32(addr))
		binary.LittleEndian.PutUint32(zp[hdrRamdiskSize:], uint32(len(p.Initrd)))
	}

	if len(p.E820) > zpE820Max {
		return Entry{}, fmt.Errorf("e820 map has %d entries, the zero page holds %d", len(p.E820), zpE820Max)
	}
	zp[zpE820Entries] = byte(len(p.E820))
	for i, e := range p.E820 {
		o := zpE820Table + 20*i
		binary.LittleEndian.PutUint64(zp[o:], e.Addr)
		binary.LittleEndian.PutUint64(zp[o+8:], e.Size)
		binary.LittleEndian.PutUint32(zp[o+16:], e.Type)
	}
	if p.RSDP != 0 {
		binary.LittleEndian.PutUint64(zp[zpACPIRSDPAddr:], p.RSDP)
	}
	if err := mem.WriteAt(zp, layout.ZeroPageAddr); err != nil {
		return Entry{}, fmt.Errorf("zero page: %w", err)
	}
	if err := writePageTables(mem); err != nil {
		return Entry{}, err
	}
	if err := writeGDT(mem); err != nil {
		return Entry{}, err
	}
	if err := mem.WriteAt(resetVectorStub, layout.ResetVector); err != nil {
		return Entry{}, fmt.Errorf("reset vector: %w", err)
	}
	return Entry{RIP: layout.KernelLoadAdr + startup64Off, ZeroPage: layout.ZeroPageAddr}, nil
}

// initrdAddr picks the highest page-aligned address where the initrd ends
// at or below both initrd_addr_max and the end of low RAM, and starts above
// the memory the kernel claims while decompressing.
func initrdAddr(mem *guestmem.Memory, k *Kernel, size uint64) (uint64, error) {
	lowEnd := mem.Regions()[0].End()
	limit := uint64(k.InitrdMax) + 1
	if lowEnd < limit {
		limit = lowEnd
	}
	kernelEnd := uint64(layout.KernelLoadAdr) + uint64(k.InitSize)
	if pref := binaryPref(k); pref+uint64(k.InitSize) > kernelEnd {
		kernelEnd = pref + uint64(k.InitSize) // relocatable kernels decompress at pref_address
	}
	if size > limit || (limit-size)&^0xFFF < kernelEnd {
		return 0, fmt.Errorf("initrd of %d MiB does not fit below %#x above the kernel (%#x): give the guest more memory", size>>20, limit, kernelEnd)
	}
	return (limit - size) &^ 0xFFF, nil
}

func binaryPref(k *Kernel) uint64 { return binary.LittleEndian.Uint64(k.image[hdrPrefAddress:]) }

// Page table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	ptePS      = 1 << 7 // 2 MiB page in a PD entry
)

// writePageTables identity-maps the first 4 GiB with 2 MiB pages, which
// covers everything the 64-bit boot protocol requires to be mapped
// (kernel, zero page, command line, initrd in low RAM).
func writePageTables(mem *guestmem.Memory) error {
	if err := mem.PutUint64(layout.PML4Addr, layout.PDPTAddr|ptePresent|pteWrite); err != nil {
		return fmt.Errorf("page tables: %w", err)
	}
	for i := uint64(0); i < 4; i++ {
		pd := uint64(layout.PDAddr) + i*0x1000
		if err := mem.PutUint64(layout.PDPTAddr+8*i, pd|ptePresent|pteWrite); err != nil {
			return fmt.Errorf("page tables: %w", err)
		}
		for j := uint64(0); j < 512; j++ {
			addr := (i*512 + j) << 21
			if err := mem.PutUint64(pd+8*j, addr|ptePresent|pteWrite|ptePS); err != nil {
				return fmt.Errorf("page tables: %w", err)
			}
		}
	}
	return nil
}

// GDT selectors the boot protocol expects: __BOOT_CS = 0x10, __BOOT_DS = 0x18.
const (
	selCode = 0x10
	selData = 0x18
)

var bootGDT = []uint64{
	0,                  // null
	0,                  // unused (0x08)
	0x00AF9B000000FFFF, // 0x10: 64-bit code, present, DPL0, accessed
	0x00CF93000000FFFF, // 0x18: data, present, writable, accessed
}

// resetVectorStub sits at the x86 reset vector (F000:FFF0), where a PC's
// firmware starts. Linux jumps there as its last reboot resort
// (machine_real_restart) and, on a HW-reduced ACPI machine without EFI,
// that is the path `reboot` takes (reboot_type becomes BOOT_EFI, then
// BOOT_BIOS). Firmware would reset the machine; the stub does the same the
// way the kernel's own BOOT_KBD path does: pulse the reset line through the
// i8042 (mov al, 0xFE; out 0x64, al), then halt.
var resetVectorStub = []byte{0xB0, 0xFE, 0xE6, 0x64, 0xF4, 0xEB, 0xFD}

func writeGDT(mem *guestmem.Memory) error {
	for i, d := range bootGDT {
		if err := mem.PutUint64(layout.GDTAddr+8*uint64(i), d); err != nil {
			return fmt.Errorf("GDT: %w", err)
		}
	}
	return mem.PutUint64(layout.IDTAddr, 0)
}
