// Command child is run by the seccomp package's tests, built without the
// race detector (whose runtime threads make system calls govmm never
// does): it installs the filter in the mode of its first argument, does
// what a running VMM does (goroutines, timers, the --stats file's
// write-and-rename) and then, if its second argument is "exec", a call the
// filter refuses.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/govmm/govmm/vmm/seccomp"
)

func main() {
	mode, err := seccomp.ParseMode(os.Args[1])
	check(err)
	check(seccomp.Install(mode))
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
	fmt.Println("CHILD: allowed work done")
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
