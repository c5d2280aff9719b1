package vmm

import (
	"fmt"

	"github.com/govmm/govmm/vmm/boot"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/layout"
)

// MinMemory is the smallest guest RAM govmm accepts: a stock kernel plus a
// small initramfs needs tens of MiB; below this the failure would be an
// obscure guest panic instead of a clear error.
const MinMemory = 64 << 20

// ramLayout splits size bytes of RAM around the 32-bit MMIO hole.
func ramLayout(size uint64) []guestmem.Layout {
	if size <= layout.MMIO32Start {
		return []guestmem.Layout{{GPA: 0, Size: size}}
	}
	return []guestmem.Layout{
		{GPA: 0, Size: layout.MMIO32Start},
		{GPA: layout.HighRAMStart, Size: size - layout.MMIO32Start},
	}
}

// e820Map describes RAM to the guest. The EBDA-to-1MiB range (where the ACPI
// tables live) is reserved; the MMIO hole and the 64-bit BAR window are left
// out of the map, i.e. not RAM, which is how PC firmware presents them and
// lets the kernel place PCI resources there.
func e820Map(mem *guestmem.Memory) []boot.E820Entry {
	regs := mem.Regions()
	m := []boot.E820Entry{
		{Addr: 0, Size: layout.EBDAStart, Type: boot.E820RAM},
		{Addr: layout.EBDAStart, Size: layout.HighMemStart - layout.EBDAStart, Type: boot.E820Reserved},
		{Addr: layout.HighMemStart, Size: regs[0].End() - layout.HighMemStart, Type: boot.E820RAM},
	}
	for _, r := range regs[1:] {
		m = append(m, boot.E820Entry{Addr: r.GPA, Size: uint64(len(r.Host)), Type: boot.E820RAM})
	}
	return m
}

func checkMemSize(size uint64) error {
	if size < MinMemory {
		return fmt.Errorf("--mem %d MiB is too small: at least %d MiB is needed", size>>20, MinMemory>>20)
	}
	if size%(2<<20) != 0 {
		return fmt.Errorf("--mem must be a multiple of 2 MiB")
	}
	return nil
}
