package zerocopy

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/tap"
	"github.com/govmm/govmm/internal/osthread"
)

// TapPort is a Port on a Linux tap with IFF_VNET_HDR: ReadFrame is one
// readv(2) whose iovec is [vnet header scratch | the 82599 descriptor
// views], so the kernel's copy out of the skb is the only write of the
// payload, straight into guest memory. Offloads are off (TUNSETOFFLOAD 0):
// the kernel hands over finished, checksummed frames of at most the MTU.
type TapPort struct {
	f       *os.File
	fd      int
	intrFD  int // eventfd: Interrupt
	created bool
	iov     [][]byte
	rxv     osthread.IOV // the reader's
	txv     osthread.IOV // the transmitter's
	fds     [2]unix.PollFd
	waiter  osthread.Waiter // the reader's
	// detached: this queue of a multi-queue tap is detached
	// (SetQueueEnabled): the kernel steers nothing to it, and reading it
	// fails with EBADFD, so the reader waits on intrFD alone.
	detached atomic.Bool
}

// OpenTap attaches to (or creates) tap interface name.
func OpenTap(name string) (*TapPort, error) {
	ports, err := OpenTapQueues(name, 1)
	if err != nil {
		return nil, err
	}
	return ports[0], nil
}

// OpenTapQueues attaches to (or creates) tap interface name with n queues
// (multi-queue with n > 1), a port per queue. Only the first port reports
// Created.
func OpenTapQueues(name string, n int) ([]*TapPort, error) {
	fds, created, err := tap.OpenQueues(name, n, true)
	if err != nil {
		return nil, fmt.Errorf("zerocopy: %w", err)
	}
	ports := make([]*TapPort, 0, n)
	for i, fd := range fds {
		p, err := newTapPort(name, fd, created && i == 0)
		if err != nil {
			for _, fd := range fds[i+1:] {
				unix.Close(fd)
			}
			for _, p := range ports {
				p.Close()
			}
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// newTapPort makes a port of an open tap descriptor (closed on error).
func newTapPort(name string, fd int, created bool) (*TapPort, error) {
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("zerocopy: tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("zerocopy: tap %s: eventfd: %w", name, err)
	}
	p := &TapPort{f: os.NewFile(uintptr(fd), "tap-"+name), fd: fd, intrFD: efd, created: created}
	p.fds = [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
	return p, nil
}

// TapFD returns the tap descriptor (for tap.SetPersist).
func (p *TapPort) TapFD() int { return p.fd }

// Created reports whether opening the port created the interface.
func (p *TapPort) Created() bool { return p.created }

// SetHdrLen implements HdrLenSetter (TUNSETVNETHDRSZ).
func (p *TapPort) SetHdrLen(n int) error {
	if err := unix.IoctlSetPointerInt(p.fd, unix.TUNSETVNETHDRSZ, n); err != nil {
		return fmt.Errorf("zerocopy: TUNSETVNETHDRSZ %d: %w", n, err)
	}
	return nil
}

// SetOffload implements OffloadSetter (TUNSETOFFLOAD).
func (p *TapPort) SetOffload(cfg nic.Config) error {
	if err := unix.IoctlSetInt(p.fd, unix.TUNSETOFFLOAD, tap.OffloadFlags(cfg)); err != nil {
		return fmt.Errorf("zerocopy: TUNSETOFFLOAD: %w", err)
	}
	return nil
}

// ReadFrame implements Port. Only the model's reader goroutine calls it.
func (p *TapPort) ReadFrame(hdr []byte, bufs [][]byte, wait bool) (int, error) {
	p.iov = append(append(p.iov[:0], hdr), bufs...)
	for {
		detached := p.detached.Load()
		var n int
		var err error = unix.EAGAIN
		if !detached {
			n, err = p.rxv.Readv(p.fd, p.iov)
		}
		switch {
		case err == nil && n < len(hdr):
			continue // cannot happen with IFF_VNET_HDR; skip it
		case err == nil:
			return n - len(hdr), nil
		case errors.Is(err, unix.EBADFD) && p.detached.Load():
			detached = true // detached under the read
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return 0, fmt.Errorf("zerocopy: tap read: %w", err)
		}
		if !wait {
			return 0, ErrWouldBlock
		}
		fds := p.fds[:]
		if detached {
			fds = p.fds[1:] // a detached queue polls as an error at once
		}
		p.fds[0].Revents, p.fds[1].Revents = 0, 0
		if _, err := p.waiter.Wait(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("zerocopy: tap poll: %w", err)
		}
		if p.fds[1].Revents != 0 {
			osthread.Drain(p.intrFD)
			return 0, ErrInterrupted
		}
	}
}

// Writev implements Port. A frame the kernel refuses is dropped, as on a
// wire, and so is one sent on a detached queue.
func (p *TapPort) Writev(segs [][]byte) error {
	if _, err := p.txv.Writev(p.fd, segs); err != nil && !errors.Is(err, unix.EAGAIN) &&
		!(errors.Is(err, unix.EBADFD) && p.detached.Load()) {
		return fmt.Errorf("zerocopy: tap write: %w", err)
	}
	return nil
}

// SetQueueEnabled implements nic.QueueSwitch: it attaches or detaches
// this port's queue of a multi-queue tap.
func (p *TapPort) SetQueueEnabled(on bool) error {
	if p.detached.Load() != on {
		return nil // already so
	}
	if !on {
		p.detached.Store(true) // before: a read failing with EBADFD must find it set
	}
	if err := tap.SetQueue(p.fd, on); err != nil {
		p.detached.Store(!on)
		return fmt.Errorf("zerocopy: %w", err)
	}
	p.detached.Store(!on)
	if on {
		// A reader waiting on the interrupt alone polls the tap again. A
		// detached queue needs no wake-up: its poll reports an error, and
		// the read then finds it detached.
		p.Interrupt()
	}
	return nil
}

// Interrupt implements Port.
func (p *TapPort) Interrupt() {
	_ = osthread.Signal(p.intrFD)
}

// Close closes the tap (a non-persistent tap disappears).
func (p *TapPort) Close() error {
	unix.Close(p.intrFD)
	return p.f.Close()
}
