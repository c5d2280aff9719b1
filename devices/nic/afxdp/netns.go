package afxdp

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// netns is a handle on the network namespace a model was made in.
type netns struct {
	fd  int
	ino uint64
}

func thisNetns() (netns, error) {
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netns{fd: -1}, fmt.Errorf("network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return netns{fd: -1}, fmt.Errorf("network namespace: %w", err)
	}
	return netns{fd: fd, ino: st.Ino}, nil
}

// current reports whether the calling thread is in the namespace.
func (n netns) current() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/thread-self/ns/net", &st) == nil && st.Ino == n.ino
}

// do runs f on a fresh thread moved into the namespace. The thread is not
// given back to the Go scheduler: it ends with f's goroutine.
func (n netns) do(f func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("entering the interface's network namespace: %w", err)
			return
		}
		done <- f()
	}()
	return <-done
}

func (n netns) close() {
	if n.fd >= 0 {
		unix.Close(n.fd)
	}
}

// checkMemlock fails with one line when registering n bytes would exceed
// RLIMIT_MEMLOCK for a process without CAP_IPC_LOCK: the kernel's own
// answer (ENOBUFS at XDP_UMEM_REG) does not say which limit.
func checkMemlock(n uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY || lim.Cur >= n {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil && data[0].Effective&(1<<unix.CAP_IPC_LOCK) != 0 {
		return nil
	}
	return fmt.Errorf("registering guest RAM as the AF_XDP UMEM pins all %d MiB of it, and RLIMIT_MEMLOCK is %d KiB: raise it (ulimit -l) or give govmm CAP_IPC_LOCK",
		n>>20, lim.Cur>>10)
}
