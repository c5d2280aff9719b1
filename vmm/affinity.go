package vmm

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Placement pins each vCPU thread to a host CPU of its own and keeps
// device threads off those CPUs. A device thread that wakes on the CPU
// where a vCPU runs (its poll timer fires there, or it is woken there)
// interrupts it: in a VM that is an external-interrupt exit, and nested it
// costs the guest as much as a kick. Zero value: no pinning, the
// scheduler decides.
type Placement struct {
	VCPUs []int // host CPU of vCPU i; empty: not pinned
	Scope Scope // which other threads are kept off those CPUs
	// BatchDevices runs every thread but the vCPUs' as SCHED_BATCH. CFS
	// never lets a batch task's wake-up preempt a running task (its
	// check_preempt_wakeup returns early for them), so a device thread
	// woken on a vCPU's CPU waits for the vCPU to block or for the tick
	// instead of switching it out: fewer vCPU reloads where vCPUs and
	// device threads share CPUs (every CPU runs a vCPU, or no pinning).
	BatchDevices bool
}

// Scope says which threads besides the vCPUs' a Placement moves.
type Scope uint8

const (
	// ScopePollers moves the device workers that poll with timers (the
	// virtio-net queue workers); the Go runtime and the backends' readers
	// go where the scheduler puts them.
	ScopePollers Scope = iota
	// ScopeAll moves every other thread of the process.
	ScopeAll
	// ScopeVCPUs moves nothing but the vCPUs.
	ScopeVCPUs
)

// ParseScope reads --cpu-pin-scope: pollers, all or vcpus.
func ParseScope(s string) (Scope, error) {
	switch s {
	case "", "pollers":
		return ScopePollers, nil
	case "all":
		return ScopeAll, nil
	case "vcpus":
		return ScopeVCPUs, nil
	}
	return 0, fmt.Errorf("--cpu-pin-scope %q: want pollers, all or vcpus", s)
}

// deviceSet returns the CPUs device threads may use: the process's, less
// the vCPUs'; ok is false when there is nothing to move (no pinning, or
// every CPU runs a vCPU).
func (p Placement) deviceSet() (set unix.CPUSet, ok bool, err error) {
	if len(p.VCPUs) == 0 {
		return set, false, nil
	}
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return set, false, fmt.Errorf("cpu placement: %w", err)
	}
	for _, c := range p.VCPUs {
		set.Clear(c)
	}
	return set, set.Count() > 0, nil
}

// DeviceThread returns what a device worker runs on its locked OS thread
// to keep off the vCPUs' CPUs (virtionet.Config.WorkerThread), or nil when
// this placement does not move device workers.
func (p Placement) DeviceThread() func() {
	set, ok, err := p.deviceSet()
	if err != nil || !ok || p.Scope == ScopeVCPUs {
		return nil
	}
	return func() { _ = unix.SchedSetaffinity(0, &set) }
}

// ParsePlacement reads --cpu-pin: "off", "auto" (the last CPUs this
// process may run on, one per vCPU; with as many vCPUs as CPUs, every CPU,
// the device threads then left where the scheduler puts them; with more
// vCPUs than CPUs, no pinning) or a comma-separated list of host CPUs, one
// per vCPU.
func ParsePlacement(s string, vcpus int) (Placement, error) {
	switch s {
	case "", "off":
		return Placement{}, nil
	case "auto":
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return Placement{}, fmt.Errorf("--cpu-pin auto: %w", err)
		}
		var cpus []int
		for c := 0; c < len(set)*64; c++ {
			if set.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
		if len(cpus) < vcpus {
			return Placement{}, nil // a CPU each is not there: do not pin
		}
		// With no CPU left for the devices the vCPUs are still pinned: a
		// vCPU thread that the scheduler moves between CPUs is reloaded
		// (and, nested, takes the emulated CPU's TLB and ASID work) each time.
		return Placement{VCPUs: cpus[len(cpus)-vcpus:]}, nil
	}
	var p Placement
	for _, f := range strings.Split(s, ",") {
		c, err := strconv.Atoi(f)
		if err != nil || c < 0 || c >= 1024 {
			return Placement{}, fmt.Errorf("--cpu-pin %q: %q is not a CPU number", s, f)
		}
		p.VCPUs = append(p.VCPUs, c)
	}
	if len(p.VCPUs) != vcpus {
		return Placement{}, fmt.Errorf("--cpu-pin %q: %d CPUs for %d vCPUs", s, len(p.VCPUs), vcpus)
	}
	return p, nil
}

// applyDevices (ScopeAll) moves every thread of the process off the vCPUs' CPUs
// (threads created later inherit the mask of the thread that creates
// them; the Go runtime creates threads for locked goroutines from its
// template thread, which exists by then). It must run before the vCPU
// threads pin themselves.
func (p Placement) applyDevices() error {
	set, ok, err := p.deviceSet()
	if err != nil || !ok || p.Scope != ScopeAll {
		return err
	}
	return eachThread("cpu placement", func(tid int) error { return unix.SchedSetaffinity(tid, &set) })
}

// eachThread calls fn for every thread of the process; a thread that has
// exited meanwhile (ESRCH) is skipped. what names the step in errors.
func eachThread(what string, fn func(tid int) error) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := fn(tid); err != nil && err != unix.ESRCH {
			return fmt.Errorf("%s: thread %d: %w", what, tid, err)
		}
	}
	return nil
}

// batchAll (BatchDevices) makes every thread of the process SCHED_BATCH;
// threads created later inherit it, and each vCPU thread turns itself back
// to SCHED_NORMAL (vcpuNormal). It must run before the vCPU threads start.
func (p Placement) batchAll() error {
	if !p.BatchDevices {
		return nil
	}
	return eachThread("sched batch", func(tid int) error { return setPolicy(tid, unix.SCHED_BATCH) })
}

// vcpuNormal (BatchDevices) gives the calling vCPU thread SCHED_NORMAL back.
func (p Placement) vcpuNormal() error {
	if !p.BatchDevices {
		return nil
	}
	return setPolicy(0, unix.SCHED_NORMAL)
}

// setPolicy sets thread tid's (0: the caller's) CFS policy, keeping its
// nice value.
func setPolicy(tid int, policy uint32) error {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return err
	}
	a.Policy = policy
	return unix.SchedSetAttr(tid, a, 0)
}

// pinVCPU pins the calling (locked) thread to vCPU id's CPU.
func (p Placement) pinVCPU(id int) error {
	if id >= len(p.VCPUs) {
		return nil
	}
	var set unix.CPUSet
	set.Set(p.VCPUs[id])
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("vCPU %d to CPU %d: %w", id, p.VCPUs[id], err)
	}
	return nil
}
