package kvm

import (
	"encoding/binary"
	"fmt"
	"os"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// Exit reasons (include/uapi/linux/kvm.h KVM_EXIT_*).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
)

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// VCPU is one virtual CPU and its shared kvm_run page.
type VCPU struct {
	ID  int
	f   *os.File
	run []byte // mmap'd struct kvm_run
}

// CreateVCPU creates vCPU id and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := gokvm.CreateVCPU(vm.fd(), id)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	f := os.NewFile(fd, fmt.Sprintf("kvm-vcpu-%d", id))
	run, err := unix.Mmap(int(fd), 0, vm.sys.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{ID: id, f: f, run: run}, nil
}

// Close unmaps the run page and closes the vCPU.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// FD returns the vCPU descriptor for gokvm register calls.
func (c *VCPU) FD() uintptr { return c.f.Fd() }

// Run enters the guest until the next exit. It returns (true, nil) when
// KVM_RUN was interrupted by a signal or by immediate_exit: no exit to
// handle, the caller should check why it was kicked.
//
// KVM_RUN goes through the Go runtime's syscall hooks, unlike the device
// threads' waits (internal/osthread): a vCPU under network load stays in
// one KVM_RUN (its exits are handled in the kernel: ioeventfd, irqfd), so
// the runtime takes its P once and leaves it be, where a raw KVM_RUN
// would be interrupted by the runtime's preemption signal every 10 ms, an
// exit each. A CI run with raw KVM_RUN for busy vCPUs hung once in the
// guest's ixgbe probe (an MMIO-heavy phase: a raw vCPU, preempted) with
// the signature issue 15 traced to the nested test host's emulated CPU
// (rip == cr2 in module text). Not shown to be caused by the extra exits,
// but each is one more chance for that failure, and the network gain
// does not need them: under iperf3 the vCPU never left its KVM_RUN.
func (c *VCPU) Run() (interrupted bool, err error) {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, c.FD(), kvmRun, 0)
	switch e {
	case 0:
		return false, nil
	case unix.EINTR, unix.EAGAIN:
		return true, nil
	}
	return false, fmt.Errorf("KVM_RUN vCPU %d: %w", c.ID, e)
}

// kvmRun is KVM_RUN, _IO(KVMIO, 0x80).
const kvmRun = 0xAE80

// SetImmediateExit makes the next (or current, once kicked) KVM_RUN return
// at once with EINTR; used to stop vCPUs.
func (c *VCPU) SetImmediateExit(v bool) {
	if v {
		c.run[1] = 1
	} else {
		c.run[1] = 0
	}
}

// kvm_run offsets: the exit union starts at 32.
const runExit = 32

// ExitReason returns kvm_run.exit_reason.
func (c *VCPU) ExitReason() uint32 { return binary.LittleEndian.Uint32(c.run[8:]) }

// IOExit is a decoded KVM_EXIT_IO. Data aliases the run page: size*count
// bytes to fill (in) or consume (out).
type IOExit struct {
	Out   bool
	Size  int
	Port  uint16
	Count int
	Data  []byte
}

// IO decodes the current KVM_EXIT_IO, validating the kernel-provided
// offset and length against the run page.
func (c *VCPU) IO() (IOExit, error) {
	e := c.run[runExit:]
	io := IOExit{
		Out:   e[0] == 1,
		Size:  int(e[1]),
		Port:  binary.LittleEndian.Uint16(e[2:]),
		Count: int(binary.LittleEndian.Uint32(e[4:])),
	}
	off := binary.LittleEndian.Uint64(e[8:])
	n := uint64(io.Size) * uint64(io.Count)
	if off > uint64(len(c.run)) || n > uint64(len(c.run))-off {
		return io, fmt.Errorf("KVM_EXIT_IO data %#x+%d outside kvm_run", off, n)
	}
	io.Data = c.run[off : off+n]
	return io, nil
}

// MMIOExit is a decoded KVM_EXIT_MMIO; Data aliases the run page.
type MMIOExit struct {
	Addr  uint64
	Data  []byte
	Write bool
}

// MMIO decodes the current KVM_EXIT_MMIO.
func (c *VCPU) MMIO() MMIOExit {
	e := c.run[runExit:]
	n := binary.LittleEndian.Uint32(e[16:])
	if n > 8 {
		n = 8
	}
	return MMIOExit{
		Addr:  binary.LittleEndian.Uint64(e[0:]),
		Data:  e[8 : 8+n],
		Write: e[20] != 0,
	}
}

// SystemEvent returns the type of a KVM_EXIT_SYSTEM_EVENT.
func (c *VCPU) SystemEvent() uint32 { return binary.LittleEndian.Uint32(c.run[runExit:]) }

// InternalError describes a KVM_EXIT_INTERNAL_ERROR.
func (c *VCPU) InternalError() string {
	e := c.run[runExit:]
	sub := binary.LittleEndian.Uint32(e[0:])
	nd := binary.LittleEndian.Uint32(e[4:])
	s := fmt.Sprintf("suberror %d", sub)
	for i := uint32(0); i < nd && i < 16; i++ {
		s += fmt.Sprintf(" %#x", binary.LittleEndian.Uint64(e[8+8*i:]))
	}
	return s
}

// FailEntryReason returns hardware_entry_failure_reason of KVM_EXIT_FAIL_ENTRY.
func (c *VCPU) FailEntryReason() uint64 { return binary.LittleEndian.Uint64(c.run[runExit:]) }

// SetCPUID installs the vCPU's CPUID table.
func (c *VCPU) SetCPUID(entries []gokvm.CPUIDEntry2) error {
	cp := &gokvm.CPUID{Nent: uint32(len(entries)), Entries: entries}
	if err := gokvm.SetCPUID2(c.FD(), cp); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 vCPU %d: %w", c.ID, err)
	}
	return nil
}

// LAPIC local vector table registers and delivery modes (Intel SDM 10.5.1).
const (
	lapicLVT0        = 0x350
	lapicLVT1        = 0x360
	lapicDeliveryExt = 7 << 8
	lapicDeliveryNMI = 4 << 8
	lapicMasked      = 1 << 16
)

// SetupLAPIC wires LINT0 as a *masked* ExtINT and LINT1 as NMI.
//
// A PC BIOS leaves LINT0 as an unmasked ExtINT (virtual-wire mode) and Linux
// keeps it that way on CPU 0 when it finds it so. govmm has no firmware to
// program the 8259s and presents a HW-reduced ACPI platform, so Linux never
// initialises them either: KVM's PIC stays in its reset state (all inputs
// unmasked, vector base 0). With LINT0 open, every edge on a legacy GSI
// (the UART's IRQ 4, the PIT's IRQ 0) would be injected as vector 0-15,
// i.e. as a CPU exception. Masking LINT0 closes that path; interrupts reach
// the guest through the IOAPIC and MSI only.
func (c *VCPU) SetupLAPIC() error {
	var st gokvm.LAPICState
	if err := gokvm.GetLocalAPIC(c.FD(), &st); err != nil {
		return fmt.Errorf("KVM_GET_LAPIC: %w", err)
	}
	for _, r := range []struct {
		off int
		val uint32
	}{{lapicLVT0, lapicDeliveryExt | lapicMasked}, {lapicLVT1, lapicDeliveryNMI}} {
		v := binary.LittleEndian.Uint32(st.Regs[r.off:])
		binary.LittleEndian.PutUint32(st.Regs[r.off:], v&^(0x700|lapicMasked)|r.val)
	}
	if err := gokvm.SetLocalAPIC(c.FD(), &st); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC: %w", err)
	}
	return nil
}

// StateSummary returns one line with the registers that explain a crash
// (a triple fault, an internal error): where the vCPU was, its stack, the
// paging and descriptor-table state. Best effort: on an ioctl error it
// says so instead.
func (c *VCPU) StateSummary() string {
	r, err := gokvm.GetRegs(c.FD())
	if err != nil {
		return fmt.Sprintf("registers unavailable: %v", err)
	}
	s, err := gokvm.GetSregs(c.FD())
	if err != nil {
		return fmt.Sprintf("rip=%#x rsp=%#x rflags=%#x (special registers unavailable: %v)", r.RIP, r.RSP, r.RFLAGS, err)
	}
	return fmt.Sprintf("rip=%#x rsp=%#x rbp=%#x rflags=%#x cs=%#x ss=%#x cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x idt=%#x/%#x gdt=%#x/%#x tr=%#x",
		r.RIP, r.RSP, r.RBP, r.RFLAGS, s.CS.Selector, s.SS.Selector, s.CR0, s.CR2, s.CR3, s.CR4, s.EFER,
		s.IDT.Base, s.IDT.Limit, s.GDT.Base, s.GDT.Limit, s.TR.Base)
}
