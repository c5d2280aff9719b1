// Package seccomp confines a running govmm to the system calls a VMM
// needs, as Firecracker confines its threads: once the first machine is
// built, every thread of the process (SECCOMP_FILTER_FLAG_TSYNC; threads
// created later inherit it) runs under an allow-list, and any other call
// (execve, fork, ptrace, mount, bpf, socket, kexec, module loading, ...)
// stops govmm with SIGSYS, which the Go runtime reports as
// "SIGSYS: bad system call" with the offending goroutine's stack: a clear
// failure, never an error code some path might swallow and hang on.
//
// The filter is built with github.com/elastic/go-seccomp-bpf (the
// maintained Go assembler for seccomp BPF) rather than by hand. It matches
// system-call numbers only; Firecracker also checks ioctl and other
// arguments per thread, which is left for later.
package seccomp

import (
	"fmt"

	bpf "github.com/elastic/go-seccomp-bpf"
)

// Mode is --seccomp.
type Mode int

// Modes.
const (
	On  Mode = iota // disallowed calls stop govmm (SIGSYS)
	Log             // disallowed calls are allowed and logged by the kernel (audit type 1326 in dmesg)
	Off             // no filter
)

// ParseMode reads --seccomp: on, log or off.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "on":
		return On, nil
	case "log":
		return Log, nil
	case "off":
		return Off, nil
	}
	return Off, fmt.Errorf("--seccomp %q: want on, log or off", s)
}

// Allowed is what govmm calls once its first machine exists, grouped by
// who calls it. A guest reboot builds a new machine under the filter, so
// what building one takes (opening /dev/kvm and /dev/net/tun, their
// ioctls, mmap of guest RAM and vCPU state) is on the list too.
var Allowed = []string{
	// Go runtime: memory, threads, scheduling, signals, timers, netpoller.
	"mmap", "munmap", "mremap", "madvise", "mprotect", "mincore",
	"clone", "clone3", "exit", "exit_group", "arch_prctl", "gettid", "getpid",
	"futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime", "gettimeofday",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill", "tkill", "kill", "restart_syscall",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "pipe2",
	"timer_create", "timer_settime", "timer_delete", "setitimer", // CPU profiling (--cpuprofile)
	"getrandom", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr", "uname", "prlimit64",
	// Files: the console and logs, the --stats file (temporary file, then
	// renamed), the images and device nodes read again for a reboot.
	"read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close",
	"openat", "newfstatat", "fstat", "statx", "fcntl", "unlinkat", "renameat", "renameat2",
	// --cpu-pin-scope all lists the process's threads (/proc/self/task)
	// each time a machine starts running, reboots included.
	"getdents64",
	// KVM, the tap, eventfd doorbells and interrupts, device workers.
	"ioctl", "eventfd2", "poll", "ppoll",
}

// Feature is an optional part of govmm that needs calls the base list
// does not allow.
type Feature int

// Features.
const (
	// AFXDP: an AF_XDP NIC (--net xdp=) wakes the kernel's transmit and
	// receive (sendto, recvfrom), reads its socket's statistics
	// (getsockopt), and opens a new socket each time the guest's driver
	// starts the device (socket, for AF_XDP only; setsockopt, bind, and
	// the one bpf command that steers the queue to it, a map update;
	// capget for its RLIMIT_MEMLOCK check).
	AFXDP Feature = iota
)

const (
	afXDP            = 44 // AF_XDP
	bpfMapUpdateElem = 2  // BPF_MAP_UPDATE_ELEM
	bpfMapDeleteElem = 3  // BPF_MAP_DELETE_ELEM
)

// groups returns the allow rules of the features.
func groups(features []Feature) []bpf.SyscallGroup {
	var out []bpf.SyscallGroup
	for _, f := range features {
		if f != AFXDP {
			continue
		}
		arg0 := func(name string, v uint64) bpf.NameWithConditions {
			return bpf.NameWithConditions{Name: name, Conditions: bpf.ArgumentConditions{{Argument: 0, Operation: bpf.Equal, Value: v}}}
		}
		out = append(out, bpf.SyscallGroup{Action: bpf.ActionAllow,
			Names: []string{"sendto", "recvfrom", "getsockopt", "setsockopt", "bind", "capget"},
			NamesWithCondtions: []bpf.NameWithConditions{
				arg0("socket", afXDP), arg0("bpf", bpfMapUpdateElem), arg0("bpf", bpfMapDeleteElem),
			}})
	}
	return out
}

// Install loads the filter for mode, with the calls the features need,
// into every thread of the process. It cannot be undone.
func Install(mode Mode, features ...Feature) error {
	if mode == Off {
		return nil
	}
	if !bpf.Supported() {
		return fmt.Errorf("seccomp: not supported by this kernel (run with --seccomp=off)")
	}
	def := bpf.ActionTrap
	if mode == Log {
		def = bpf.ActionLog
	}
	f := bpf.Filter{
		NoNewPrivs: true,
		Flag:       bpf.FilterFlagTSync,
		Policy: bpf.Policy{
			DefaultAction: def,
			Syscalls:      append([]bpf.SyscallGroup{{Action: bpf.ActionAllow, Names: Allowed}}, groups(features)...),
		},
	}
	if err := bpf.LoadFilter(f); err != nil {
		return fmt.Errorf("seccomp: loading the filter: %w", err)
	}
	return nil
}
