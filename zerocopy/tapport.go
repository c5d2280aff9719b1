package zerocopy

import (
	"errors"
	"fmt"
	"os"

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
}

// OpenTap attaches to (or creates) tap interface name.
func OpenTap(name string) (*TapPort, error) {
	fd, created, err := tap.OpenFD(name, true)
	if err != nil {
		return nil, fmt.Errorf("zerocopy: %w", err)
	}
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
		n, err := p.rxv.Readv(p.fd, p.iov)
		switch {
		case err == nil && n < len(hdr):
			continue // cannot happen with IFF_VNET_HDR; skip it
		case err == nil:
			return n - len(hdr), nil
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return 0, fmt.Errorf("zerocopy: tap read: %w", err)
		case !wait && errors.Is(err, unix.EAGAIN):
			return 0, ErrWouldBlock
		}
		p.fds[0].Revents, p.fds[1].Revents = 0, 0
		if _, err := p.waiter.Wait(p.fds[:], -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("zerocopy: tap poll: %w", err)
		}
		if p.fds[1].Revents != 0 {
			osthread.Drain(p.intrFD)
			return 0, ErrInterrupted
		}
	}
}

// Writev implements Port. A frame the kernel refuses is dropped, as on a wire.
func (p *TapPort) Writev(segs [][]byte) error {
	if _, err := p.txv.Writev(p.fd, segs); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("zerocopy: tap write: %w", err)
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
