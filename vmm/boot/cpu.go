package boot

import (
	"fmt"

	gokvm "github.com/bobuhiro11/gokvm/kvm"

	"github.com/govmm/govmm/vmm/layout"
)

// Control register and EFER bits for long mode.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// SetupBootCPU puts vCPU fd into 64-bit long mode at the kernel entry with
// the boot GDT and page tables that Load wrote; RSI points at the zero page
// and interrupts are off, as the 64-bit boot protocol requires.
func SetupBootCPU(fd uintptr, e Entry) error {
	sregs, err := gokvm.GetSregs(fd)
	if err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	code := gokvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: selCode, Typ: 0xB, Present: 1, S: 1, L: 1, G: 1}
	data := gokvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: selData, Typ: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	sregs.CS = code
	sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = data, data, data, data, data
	sregs.GDT = gokvm.Descriptor{Base: layout.GDTAddr, Limit: uint16(len(bootGDT)*8 - 1)}
	sregs.IDT = gokvm.Descriptor{Base: layout.IDTAddr, Limit: 7}
	sregs.CR3 = layout.PML4Addr
	sregs.CR4 |= cr4PAE
	sregs.CR0 |= cr0PE | cr0ET | cr0PG
	sregs.EFER |= eferLME | eferLMA
	if err := gokvm.SetSregs(fd, sregs); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := &gokvm.Regs{RIP: e.RIP, RSI: e.ZeroPage, RFLAGS: 2}
	if err := gokvm.SetRegs(fd, regs); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}
