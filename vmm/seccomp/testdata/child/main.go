// Command child is run by the seccomp package's tests, built without the
// race detector (whose runtime threads make system calls govmm never
// does): it installs the filter in the mode of its first argument, does
// what a running VMM does (goroutines, timers, the --stats file's
// write-and-rename, listing its threads for --cpu-pin) and then, if its second argument is "exec", a call the
// filter refuses. "xdp" installs the filter with the AF_XDP feature, opens
// an AF_XDP socket (allowed) and then an AF_INET one (refused).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/vmm/seccomp"
)

func main() {
	mode, err := seccomp.ParseMode(os.Args[1])
	check(err)
	var features []seccomp.Feature
	if os.Args[2] == "xdp" {
		features = append(features, seccomp.AFXDP)
	}
	check(seccomp.Install(mode, features...))
	done := make(chan struct{})
	go func() { time.Sleep(10 * time.Millisecond); close(done) }()
	<-done
	dir := os.Args[3]
	tmp, err := os.CreateTemp(dir, ".stats-*")
	check(err)
	_, err = tmp.WriteString("{}\n")
	check(err)
	check(tmp.Close())
	check(os.Rename(tmp.Name(), filepath.Join(dir, "stats.json")))
	// --cpu-pin-scope all moves every thread: it lists them first.
	_, err = os.ReadDir("/proc/self/task")
	check(err)
	fmt.Println("CHILD: allowed work done")
	if os.Args[2] == "xdp" {
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
		check(err)
		unix.Close(fd)
		fmt.Println("CHILD: AF_XDP socket opened")
		_, _ = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0) // refused
		fmt.Println("CHILD: AF_INET socket returned")
	}
	if os.Args[2] == "exec" {
		_ = exec.Command("/bin/true").Run() // execve (after clone): refused
		fmt.Println("CHILD: exec returned")
	}
}

func check(err error) {
	if err != nil {
		fmt.Println("CHILD:", err)
		os.Exit(3)
	}
}
