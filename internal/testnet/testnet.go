// Package testnet gives tests a private network namespace, so the taps
// they create and every frame they send stay off the machine's own
// network.
package testnet

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// InNewNetns runs f on a thread moved into a fresh network namespace and
// waits for it. The test is skipped without root or /dev/net/tun. The
// thread is never returned to the Go scheduler's pool: it dies with f's
// goroutine, and the namespace with it.
func InNewNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and a tap")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked: see above
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		f()
	}()
	<-done
}

// DeleteLink deletes interface name with ip(8) (RTM_DELLINK), as an
// administrator would under a running VMM. Call it inside InNewNetns: the
// command runs on the calling thread's namespace. It skips the test where
// ip(8) is missing.
func DeleteLink(t *testing.T, name string) {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip(8)")
	}
	if out, err := exec.Command(ip, "link", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip link del %s: %v: %s", name, err, out)
	}
}

// Netns is a private network namespace held by one locked thread, for a
// test whose subtests each need to create interfaces in it: Do runs a
// function on that thread. Descriptors opened there (a tap, a packet
// socket) keep their namespace when used from any other thread.
type Netns struct {
	work chan func()
}

// NewNetns creates the namespace; it goes when the test ends. The test is
// skipped without root or /dev/net/tun.
func NewNetns(t *testing.T) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and a tap")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	n := &Netns{work: make(chan func())}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range n.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { close(n.work) })
	return n
}

// Do runs f in the namespace and waits for it.
func (n *Netns) Do(f func()) {
	done := make(chan struct{})
	n.work <- func() { defer close(done); f() }
	<-done
}

// LinkUp sets interface name up, with IPv4 address addr unless nil, in
// the calling thread's network namespace, and returns it.
func LinkUp(t *testing.T, name string, addr []byte) *net.Interface {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testnet: socket: %v", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
	}
	if err == nil {
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		err = unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
	}
	if err == nil && addr != nil {
		if err = ifr.SetInet4Addr(addr); err == nil {
			err = unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr)
		}
	}
	if err != nil {
		t.Fatalf("testnet: %s up: %v", name, err)
	}
	ifc, err := net.InterfaceByName(name) // netlink, on this thread: its namespace
	if err != nil {
		t.Fatalf("testnet: %s: %v", name, err)
	}
	return ifc
}
