package vmm

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/vmm/kvm"
)

// vcpuProbe is what a state dump learns about one vCPU: how many exits it
// took and the last one's reason (counted on its own thread), and, on
// request, its registers. Registers can only be read by the vCPU's own
// thread, between two KVM_RUNs: a dump sets want and kicks the thread,
// which answers on reply.
type vcpuProbe struct {
	exits    atomic.Uint64
	lastExit atomic.Uint32
	want     atomic.Bool
	reply    chan string // buffered: the vCPU thread never blocks on it
}

func newVCPUProbe() *vcpuProbe { return &vcpuProbe{reply: make(chan string, 1)} }

// exited counts one exit (vCPU thread).
func (p *vcpuProbe) exited(reason uint32) {
	p.exits.Add(1)
	p.lastExit.Store(reason)
}

// answer serves a pending dump request (vCPU thread, between KVM_RUNs).
// The request set immediate_exit before want, so clearing it here, after
// want was seen, cannot undo a newer kick: a VM being stopped is caught by
// the run loop's own check that follows.
func (p *vcpuProbe) answer(c *kvm.VCPU) {
	if !p.want.Swap(false) {
		return
	}
	c.SetImmediateExit(false)
	select {
	case p.reply <- c.StateSummary():
	default:
	}
}

// exitNames names the KVM exit reasons govmm handles.
var exitNames = map[uint32]string{
	kvm.ExitIO: "io", kvm.ExitMMIO: "mmio", kvm.ExitHLT: "hlt", kvm.ExitIntr: "intr",
	kvm.ExitIRQWindowOpen: "irq-window", kvm.ExitShutdown: "shutdown", kvm.ExitFailEntry: "fail-entry",
	kvm.ExitInternalError: "internal-error", kvm.ExitSystemEvent: "system-event",
}

func exitName(r uint32) string {
	if n, ok := exitNames[r]; ok {
		return n
	}
	return fmt.Sprintf("%d", r)
}

// DebugVCPUs describes every vCPU for a state dump (govmm's SIGUSR1), one
// line each: exits taken so far, the last exit's reason, and the
// registers (where a hung guest is: a spin shows a moving rip between two
// dumps, a halt a rip just after hlt). A vCPU that does not answer within
// wait (its thread stuck in a device handler) is reported as such.
func (m *VM) DebugVCPUs(wait time.Duration) string {
	m.mu.Lock()
	tids := make(map[int]int, len(m.threads))
	for id, tid := range m.threads {
		tids[id] = tid
	}
	m.mu.Unlock()
	for i, c := range m.vcpus {
		p := m.probes[i]
		select {
		case <-p.reply: // a late answer to an earlier dump
		default:
		}
		c.SetImmediateExit(true)
		p.want.Store(true)
		if tid, ok := tids[c.ID]; ok {
			_ = unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
		}
	}
	var b strings.Builder
	deadline := time.After(wait)
	for i, c := range m.vcpus {
		p := m.probes[i]
		fmt.Fprintf(&b, "vcpu%d: exits %d, last %s; ", c.ID, p.exits.Load(), exitName(p.lastExit.Load()))
		if _, running := tids[c.ID]; !running {
			b.WriteString("not running\n")
			continue
		}
		select {
		case s := <-p.reply:
			b.WriteString(s + "\n")
		case <-deadline:
			b.WriteString("no answer (its thread is busy outside KVM_RUN)\n")
		}
	}
	return b.String()
}
