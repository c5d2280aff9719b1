// Package osthread runs govmm's long-lived loops — vCPUs in KVM_RUN,
// device workers in ppoll — on OS threads of their own, named, and lets
// the device loops block without waking the Go runtime's monitor thread
// (sysmon) on every round.
//
// Why (measured in the nested test host, make experiment TRACE=1): a
// goroutine that loops on blocking syscalls never passes through the
// scheduler, so its P keeps an old schedtick. After 10 ms sysmon takes
// that P away at the next syscall it sees, all Ps are idle, sysmon goes
// to deep sleep, and the next entersyscall of any goroutine wakes it
// again — two sysmon wake-ups per device round. Under iperf3 that was
// 1,900–2,400 wake-ups a second of one thread, which preempted the vCPU
// thread 240–620 times a second and caused 160–560 of the guest's
// external-interrupt exits a second; QEMU's vCPU thread was never
// switched out. Blocking through a raw ppoll keeps each loop's P
// "running" Go code from the runtime's view: sysmon
// never deep-sleeps while a VM runs, retakes nothing, backs off to its
// 10 ms period, and preempts each loop once per 10 ms (a SIGURG that ends
// the wait with EINTR, which callers treat as a spurious wake-up).
// Each owned thread needs a P of its own for that: Own raises GOMAXPROCS.
// (The vCPU's KVM_RUN stays hooked: see kvm.VCPU.Run.)
// A thread whose wait lasted 10 ms or more is idle and waits
// through the hooks again until a wait ends sooner (QuietAfter), so an
// idle guest is not woken by those preemptions.
//
// GOVMM_SYSCALL_HOOKS=1 in the environment goes back to the runtime's
// hooked system calls (and leaves GOMAXPROCS alone), =raw keeps every
// owned thread raw even when idle: both for A/B measurements and for
// ruling this package out when debugging.
package osthread

import (
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	mu    sync.Mutex
	owned int
)

// Hooked reports GOVMM_SYSCALL_HOOKS=1: blocking calls go through the Go
// runtime's syscall hooks as before this package.
var Hooked = os.Getenv("GOVMM_SYSCALL_HOOKS") == "1"

// alwaysRaw reports GOVMM_SYSCALL_HOOKS=raw: no thread goes quiet.
var alwaysRaw = os.Getenv("GOVMM_SYSCALL_HOOKS") == "raw"

// idleAfter reports whether a wait that took d leaves its thread idle
// (QuietAfter).
func idleAfter(d time.Duration) bool { return d >= QuietAfter && !alwaysRaw }

// Own locks the calling goroutine to its OS thread for good (the thread
// exits with the goroutine, its name and CPU placement with it), names
// the thread as top -H, ps -L and the kernel's tracepoints show it (the
// kernel keeps 15 bytes), and makes sure the runtime has a P to spare for
// it. Call the returned function when the loop ends.
func Own(name string) (release func()) {
	runtime.LockOSThread()
	_ = os.WriteFile("/proc/thread-self/comm", []byte(name), 0)
	if Hooked {
		return func() {}
	}
	mu.Lock()
	owned++
	// Every owned thread may hold its P while it blocks; the rest of the
	// program keeps at least the CPUs it had.
	if want := runtime.NumCPU() + owned + 1; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
	mu.Unlock()
	return func() {
		mu.Lock()
		owned--
		mu.Unlock()
	}
}

// maxWait bounds one raw wait even without a timeout, so that a thread
// comes back to Go code now and then whatever the runtime's preemption
// does.
const maxWait = 100 * time.Millisecond

// QuietAfter is how long a wait must last for its thread to count as
// idle. An idle thread waits through the runtime's hooks: its P
// is taken once and it sleeps undisturbed, where a raw wait would be
// preempted every 10 ms, a wake-up each time, for as long as a guest
// sits idle. A wait that ends sooner makes the thread busy, and raw,
// again.
const QuietAfter = 10 * time.Millisecond

// A Waiter is one thread's ppoll(2): raw while the thread is busy, hooked
// while it is idle (QuietAfter). Not for concurrent use.
type Waiter struct{ quiet bool }

// Wait waits for fds like ppoll(2); timeout < 0 waits for an event. A raw
// wait lasts at most maxWait and then reports a timeout (0 events), and
// the runtime's preemption signal may end it with EINTR: callers retry
// both.
func (w *Waiter) Wait(fds []unix.PollFd, timeout time.Duration) (int, error) {
	start := time.Now()
	var n int
	var err error
	if Hooked || w.quiet {
		n, err = hookedWait(fds, timeout)
	} else {
		n, err = rawWait(fds, timeout)
	}
	w.quiet = idleAfter(time.Since(start))
	return n, err
}

func hookedWait(fds []unix.PollFd, timeout time.Duration) (int, error) {
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	return unix.Ppoll(fds, ts, nil)
}

func rawWait(fds []unix.PollFd, timeout time.Duration) (int, error) {
	if timeout < 0 || timeout > maxWait {
		timeout = maxWait
	}
	ts := unix.NsecToTimespec(int64(timeout))
	var p unsafe.Pointer
	if len(fds) > 0 {
		p = unsafe.Pointer(&fds[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(p), uintptr(len(fds)), uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// The calls below never block (eventfds and non-blocking taps) but can
// take long in a slow host: a tap writev runs the host's whole receive
// path. Through the runtime's hooks, a device thread observed inside one
// lost its P to sysmon like a blocked one (a stale schedtick), which
// sent sysmon back to polling every 20 µs; raw, they are ordinary Go
// code to the scheduler.

func rawSyscall(trap, a1, a2, a3 uintptr) (uintptr, unix.Errno) {
	if Hooked {
		r, _, e := unix.Syscall(trap, a1, a2, a3)
		return r, e
	}
	r, _, e := unix.RawSyscall(trap, a1, a2, a3)
	return r, e
}

var one = [8]byte{1}

// Signal adds one to an eventfd (an irqfd, a wake-up). A counter at its
// maximum (EAGAIN) is already signalled.
func Signal(fd int) error {
	if _, e := rawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&one[0])), 8); e != 0 && e != unix.EAGAIN {
		return e
	}
	return nil
}

// Drain resets a non-blocking eventfd's counter.
func Drain(fd int) {
	var b [8]byte
	_, _ = rawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 8)
}

// IOV is a reusable iovec array for Readv and Writev (one per thread).
type IOV struct{ v []unix.Iovec }

func (x *IOV) set(bufs [][]byte) (uintptr, int) {
	x.v = x.v[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		var v unix.Iovec
		v.Base = &b[0]
		v.SetLen(len(b))
		x.v = append(x.v, v)
	}
	if len(x.v) == 0 {
		return 0, 0
	}
	return uintptr(unsafe.Pointer(&x.v[0])), len(x.v)
}

// Readv is readv(2) into bufs.
func (x *IOV) Readv(fd int, bufs [][]byte) (int, error) {
	p, n := x.set(bufs)
	r, e := rawSyscall(unix.SYS_READV, uintptr(fd), p, uintptr(n))
	clear(x.v) // no pointers into guest memory kept past the call
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Writev is writev(2) from bufs.
func (x *IOV) Writev(fd int, bufs [][]byte) (int, error) {
	p, n := x.set(bufs)
	r, e := rawSyscall(unix.SYS_WRITEV, uintptr(fd), p, uintptr(n))
	clear(x.v)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
