package vmm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/internal/osthread"
	"github.com/govmm/govmm/vmm/kvm"
)

// Run starts every vCPU on its own locked OS thread and blocks until the
// guest powers off, resets, or fails. It returns the outcome; the error is
// non-nil only for Failure.
func (m *VM) Run() (Outcome, error) {
	if err := m.cfg.Placement.applyDevices(); err != nil {
		m.log.Warn("device threads not moved off the vCPUs' CPUs", "err", err)
	}
	if err := m.cfg.Placement.batchAll(); err != nil {
		m.log.Warn("device threads not made SCHED_BATCH", "err", err)
	}
	var wg sync.WaitGroup
	for i, c := range m.vcpus {
		wg.Add(1)
		go func(c *kvm.VCPU, p *vcpuProbe) {
			defer wg.Done()
			m.vcpuLoop(c, p)
		}(c, m.probes[i])
	}
	<-m.stopped
	m.kickAll()
	wg.Wait()
	if m.outcome.Kind == Failure {
		return m.outcome, fmt.Errorf("guest failed: %s", m.outcome.Reason)
	}
	return m.outcome, nil
}

// Stop ends the run with the given outcome; the first caller wins. Safe from
// any goroutine (device callbacks, vCPU threads, signal handlers).
func (m *VM) Stop(o Outcome) {
	m.stopOnce.Do(func() {
		m.outcome = o
		m.log.Info("guest stopping", "outcome", o.Kind.String(), "reason", o.Reason)
		close(m.stopped)
	})
}

// kickAll forces every vCPU out of KVM_RUN: immediate_exit covers a vCPU
// about to enter, a signal to its thread covers one already inside (blocked
// in HLT, say). SIGURG is the Go runtime's own preemption signal, so the
// runtime already handles it harmlessly.
func (m *VM) kickAll() {
	for _, c := range m.vcpus {
		c.SetImmediateExit(true)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, tid := range m.threads {
		_ = unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
	}
}

func (m *VM) isStopped() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

func (m *VM) vcpuLoop(c *kvm.VCPU, p *vcpuProbe) {
	// KVM requires every ioctl on a vCPU to come from the thread that runs
	// it. The thread is never unlocked: it exits with this goroutine, and
	// its CPU pinning and name go with it instead of back to Go's pool.
	// "vcpu0" in top -H, ps -L and /proc/PID/task/*/comm, as QEMU names
	// its "CPU 0/KVM" threads: a host can tell guest time from device time.
	defer osthread.Own(fmt.Sprintf("vcpu%d", c.ID))()
	if err := m.cfg.Placement.pinVCPU(c.ID); err != nil {
		m.log.Warn("vCPU not pinned", "err", err)
	}
	if err := m.cfg.Placement.vcpuNormal(); err != nil {
		m.log.Warn("vCPU thread left SCHED_BATCH", "err", err)
	}
	m.mu.Lock()
	m.threads[c.ID] = unix.Gettid()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.threads, c.ID)
		m.mu.Unlock()
	}()

	ring := c.CoalescedRing(m.coalescedPage)
	for !m.isStopped() {
		interrupted, err := c.Run()
		if err != nil {
			m.Stop(Outcome{Kind: Failure, Reason: err.Error()})
			return
		}
		m.replayCoalesced(ring)
		p.answer(c)
		if interrupted {
			continue
		}
		p.exited(c.ExitReason())
		if o, done := m.handleExit(c); done {
			m.Stop(o)
			return
		}
	}
}

// handleExit handles one exit; done reports that the VM must stop.
func (m *VM) handleExit(c *kvm.VCPU) (Outcome, bool) {
	switch r := c.ExitReason(); r {
	case kvm.ExitIO:
		io, err := c.IO()
		if err != nil {
			return Outcome{Kind: Failure, Reason: err.Error()}, true
		}
		m.handleIO(io)
	case kvm.ExitMMIO:
		e := c.MMIO()
		if e.Write {
			if !m.MMIO.Write(e.Addr, e.Data) {
				m.unclaimed("mmio write", e.Addr, len(e.Data))
			}
		} else if !m.MMIO.Read(e.Addr, e.Data) {
			m.unclaimed("mmio read", e.Addr, len(e.Data))
			fill(e.Data)
		}
	case kvm.ExitIntr, kvm.ExitIRQWindowOpen:
		// Signal or window: nothing to emulate.
	case kvm.ExitHLT:
		// Only seen without an in-kernel LAPIC; re-enter, KVM halts in kernel.
	case kvm.ExitShutdown:
		// The registers go to the log, not the one-line reason: they are for
		// whoever debugs the guest. (On AMD, KVM re-initialises the vCPU on
		// a shutdown intercept, so they show the reset state there.)
		m.log.Error("triple fault", "vcpu", c.ID, "state", c.StateSummary())
		return Outcome{Kind: Failure, Reason: fmt.Sprintf("vCPU %d: triple fault (KVM_EXIT_SHUTDOWN)", c.ID)}, true
	case kvm.ExitSystemEvent:
		switch t := c.SystemEvent(); t {
		case kvm.SystemEventShutdown:
			return Outcome{Kind: PowerOff, Reason: "system event shutdown"}, true
		case kvm.SystemEventReset:
			return Outcome{Kind: Reset, Reason: "system event reset"}, true
		default:
			return Outcome{Kind: Failure, Reason: fmt.Sprintf("vCPU %d: system event %d (crash)", c.ID, t)}, true
		}
	case kvm.ExitInternalError:
		m.log.Error("KVM internal error", "vcpu", c.ID, "state", c.StateSummary())
		return Outcome{Kind: Failure, Reason: fmt.Sprintf("vCPU %d: KVM internal error: %s", c.ID, c.InternalError())}, true
	case kvm.ExitFailEntry:
		return Outcome{Kind: Failure, Reason: fmt.Sprintf("vCPU %d: VM entry failed, hardware reason %#x", c.ID, c.FailEntryReason())}, true
	default:
		return Outcome{Kind: Failure, Reason: fmt.Sprintf("vCPU %d: unexpected KVM exit reason %d", c.ID, r)}, true
	}
	return Outcome{}, false
}

// handleIO dispatches port I/O, including string I/O (count > 1), one
// element at a time as the CPU would.
func (m *VM) handleIO(io kvm.IOExit) {
	for i := 0; i < io.Count; i++ {
		d := io.Data[i*io.Size : (i+1)*io.Size]
		if io.Out {
			if !m.PIO.Write(uint64(io.Port), d) {
				m.unclaimed("pio write", uint64(io.Port), io.Size)
			}
		} else if !m.PIO.Read(uint64(io.Port), d) {
			m.unclaimed("pio read", uint64(io.Port), io.Size)
			fill(d)
		}
	}
}

// fill makes an unclaimed read return all-ones, as a PC bus does.
func fill(d []byte) {
	for i := range d {
		d[i] = 0xFF
	}
}

func (m *VM) unclaimed(what string, addr uint64, size int) {
	// Linux probes many absent legacy ports at boot; this is debug noise.
	m.log.Debug("unclaimed access", "op", what, "addr", fmt.Sprintf("%#x", addr), "size", size)
}
