package kvm

import (
	"os"
	"testing"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// realModeVM creates a VM with 64 KiB of RAM holding code at 0x1000 and a
// vCPU in real mode about to run it. Real-mode guests run on every KVM,
// including PVM hosts where Linux does not boot, so these tests exercise
// the ioctl layer everywhere /dev/kvm exists.
func realModeVM(t *testing.T, code []byte) (*VM, *VCPU) {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	sys, err := Open("/dev/kvm")
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	vm, err := sys.CreateVM()
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	mem, err := unix.Mmap(-1, 0, 0x10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	copy(mem[0x1000:], code)
	require.NoError(t, vm.SetMemory(0, 0, mem))
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	sregs, err := gokvm.GetSregs(c.FD())
	require.NoError(t, err)
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	require.NoError(t, gokvm.SetSregs(c.FD(), sregs))
	require.NoError(t, gokvm.SetRegs(c.FD(), &gokvm.Regs{RIP: 0x1000, RFLAGS: 2}))
	return vm, c
}

func runUntilExit(t *testing.T, c *VCPU) uint32 {
	t.Helper()
	for i := 0; i < 100; i++ {
		intr, err := c.Run()
		require.NoError(t, err)
		if !intr {
			return c.ExitReason()
		}
	}
	t.Fatal("vCPU never exited")
	return 0
}

func TestIOExitDecode(t *testing.T) {
	// mov dx, 0x3f8; mov al, 'A'; out dx, al; in al, dx; hlt
	_, c := realModeVM(t, []byte{0xBA, 0xF8, 0x03, 0xB0, 'A', 0xEE, 0xEC, 0xF4})
	require.Equal(t, uint32(ExitIO), runUntilExit(t, c))
	io, err := c.IO()
	require.NoError(t, err)
	require.True(t, io.Out)
	require.Equal(t, uint16(0x3F8), io.Port)
	require.Equal(t, 1, io.Size)
	require.Equal(t, []byte{'A'}, io.Data)

	require.Equal(t, uint32(ExitIO), runUntilExit(t, c))
	io, err = c.IO()
	require.NoError(t, err)
	require.False(t, io.Out)
	io.Data[0] = 0x5A // the value the guest's IN receives
}

func TestMMIOExitDecode(t *testing.T) {
	// mov ax, 0x1234; mov [0x8000], ax  with DS=0 → RAM, not MMIO; use an
	// address past the 64 KiB slot: mov bx, 0xF000; mov ds, bx; mov [0x1000], ax → 0xF1000
	code := []byte{0xB8, 0x34, 0x12, 0xBB, 0x00, 0xF0, 0x8E, 0xDB, 0xA3, 0x00, 0x10, 0xF4}
	_, c := realModeVM(t, code)
	require.Equal(t, uint32(ExitMMIO), runUntilExit(t, c))
	e := c.MMIO()
	require.True(t, e.Write)
	require.Equal(t, uint64(0xF1000), e.Addr)
	require.Equal(t, []byte{0x34, 0x12}, e.Data)
}

func TestIOEventFDSkipsUserExit(t *testing.T) {
	// out 0x80, al  (ioeventfd: no exit) ; mov dx, 0x3f8 ; out dx, al (exit)
	vm, c := realModeVM(t, []byte{0xB0, 0x07, 0xE6, 0x80, 0xBA, 0xF8, 0x03, 0xEE, 0xF4})
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)
	require.NoError(t, vm.SetIOEventFD(IOEventFD{Addr: 0x80, Len: 1, FD: efd, PIO: true}, false))
	require.Equal(t, uint32(ExitIO), runUntilExit(t, c))
	io, err := c.IO()
	require.NoError(t, err)
	require.Equal(t, uint16(0x3F8), io.Port, "the doorbell write must not exit to user space")
	buf := make([]byte, 8)
	n, err := unix.Read(efd, buf)
	require.NoError(t, err)
	require.Equal(t, 8, n)
	require.Equal(t, byte(1), buf[0])
	require.NoError(t, vm.SetIOEventFD(IOEventFD{Addr: 0x80, Len: 1, FD: efd, PIO: true}, true))
}

func TestIRQChipRoutingAndIRQFD(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	sys, err := Open("/dev/kvm")
	require.NoError(t, err)
	defer sys.Close()
	vm, err := sys.CreateVM()
	require.NoError(t, err)
	defer vm.Close()
	// The TSS/identity-map addresses must be set before any vCPU exists.
	require.NoError(t, vm.SetupX86(0xFFFBD000, 0xFFFBC000))
	routes := append(DefaultRoutes(), Route{GSI: 30, IsMSI: true, MSIAddr: 0xFEE00000, MSIData: 0x30})
	require.NoError(t, vm.SetGSIRouting(routes))
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(efd)
	require.NoError(t, vm.IRQFD(efd, 30, -1))
	require.NoError(t, vm.IRQFDDeassign(efd, 30))
	require.NoError(t, vm.SetIRQLine(4, true))
	require.NoError(t, vm.SetIRQLine(4, false))
}

func TestSupportedCPUIDHasKVMLeaves(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	sys, err := Open("/dev/kvm")
	require.NoError(t, err)
	defer sys.Close()
	entries, err := sys.SupportedCPUID()
	require.NoError(t, err)
	require.Greater(t, len(entries), 10)
	var sig bool
	for _, e := range entries {
		if e.Function == 0x40000000 {
			sig = true
		}
	}
	require.True(t, sig, "KVM paravirtual signature leaf missing")
}
