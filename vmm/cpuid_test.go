package vmm

import (
	"testing"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/require"
)

func TestCPUIDFor(t *testing.T) {
	supported := []gokvm.CPUIDEntry2{
		{Function: 0, Eax: 0xd},
		{Function: 1, Eax: 0x00a20f10, Ebx: 0x00000800, Ecx: 0x7ed8320b},
		{Function: 0xB, Index: 1, Edx: 0},
	}
	for _, deadline := range []bool{false, true} {
		got := cpuidFor(supported, 3, 4, deadline)
		require.Len(t, got, len(supported))
		l1 := got[1]
		require.Equal(t, uint32(3), l1.Ebx>>24, "initial APIC ID")
		require.Equal(t, uint32(4), l1.Ebx>>16&0xFF, "logical processors")
		require.Equal(t, uint32(0x800), l1.Ebx&0xFFFF, "CLFLUSH size kept")
		require.NotZero(t, l1.Edx&(1<<28), "HTT")
		require.NotZero(t, l1.Ecx&(1<<31), "hypervisor bit")
		require.Equal(t, deadline, l1.Ecx&(1<<24) != 0, "TSC-deadline bit follows KVM_CAP_TSC_DEADLINE_TIMER")
		require.Equal(t, uint32(3), got[2].Edx, "x2APIC ID in leaf 0xB")
	}
	require.Zero(t, supported[1].Ebx>>24, "the supported list is not modified")
}
