package vmm

import (
	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// cpuidFor returns the CPUID table for vCPU id: what KVM supports, with the
// per-CPU topology fields set. KVM's supported list already carries the
// paravirtual leaves (0x40000000 "KVMKVMKVM", 0x40000001 features), which is
// what makes the guest pick kvm-clock and PV EOI/IPIs. tscDeadline sets the
// TSC-deadline bit, which KVM's list never has (KVM_CAP_TSC_DEADLINE_TIMER
// says the LAPIC emulates it), as QEMU and Firecracker do: the guest then
// arms its timer with one MSR write instead of the one-shot count registers.
func cpuidFor(supported []gokvm.CPUIDEntry2, id, ncpu int, tscDeadline bool) []gokvm.CPUIDEntry2 {
	out := make([]gokvm.CPUIDEntry2, len(supported))
	copy(out, supported)
	for i := range out {
		e := &out[i]
		switch e.Function {
		case 1:
			// EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
			e.Ebx = e.Ebx&0x0000FFFF | uint32(id)<<24 | uint32(ncpu&0xFF)<<16
			e.Edx |= 1 << 28 // HTT: the logical-processor count above is valid
			e.Ecx |= 1 << 31 // hypervisor present
			if tscDeadline {
				e.Ecx |= 1 << 24 // TSC-deadline LAPIC timer mode
			}
		case 0xB, 0x1F:
			// Extended topology: EDX is the x2APIC ID on every sub-leaf.
			e.Edx = uint32(id)
		}
	}
	return out
}
