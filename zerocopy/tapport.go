package zerocopy

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TUN ioctls and flags (include/uapi/linux/if_tun.h).
const (
	tunSetIff       = 0x400454CA
	tunSetOffload   = 0x400454D0
	tunSetVnetHdrSz = 0x400454D8
	iffTap          = 0x0002
	iffNoPI         = 0x1000
	iffVnetHdr      = 0x4000
)

// TapPort is a Port on a Linux tap with IFF_VNET_HDR: ReadFrame is one
// readv(2) whose iovec is [vnet header scratch | the 82599 descriptor
// views], so the kernel's copy out of the skb is the only write of the
// payload, straight into guest memory. Offloads are off (TUNSETOFFLOAD 0):
// the kernel hands over finished, checksummed frames of at most the MTU.
type TapPort struct {
	f      *os.File
	fd     int
	intrFD int // eventfd: Interrupt
	iov    [][]byte
	fds    [2]unix.PollFd
}

// OpenTap attaches to (or creates) tap interface name.
func OpenTap(name string) (*TapPort, error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("zerocopy: bad tap name %q", name)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("zerocopy: tap %s: open /dev/net/tun: %w", name, err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = iffTap | iffNoPI | iffVnetHdr
	if err := ioctl(fd, tunSetIff, uintptr(unsafe.Pointer(&req[0]))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("zerocopy: tap %s: TUNSETIFF: %w", name, err)
	}
	if err := ioctl(fd, tunSetOffload, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("zerocopy: tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("zerocopy: tap %s: eventfd: %w", name, err)
	}
	p := &TapPort{f: os.NewFile(uintptr(fd), "tap-"+name), fd: fd, intrFD: efd}
	p.fds = [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
	return p, nil
}

func ioctl(fd int, req, arg uintptr) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg); e != 0 {
		return e
	}
	return nil
}

// SetHdrLen implements HdrLenSetter (TUNSETVNETHDRSZ).
func (p *TapPort) SetHdrLen(n int) error {
	v := int32(n)
	if err := ioctl(p.fd, tunSetVnetHdrSz, uintptr(unsafe.Pointer(&v))); err != nil {
		return fmt.Errorf("zerocopy: TUNSETVNETHDRSZ %d: %w", n, err)
	}
	return nil
}

// ReadFrame implements Port. Only the model's reader goroutine calls it.
func (p *TapPort) ReadFrame(hdr []byte, bufs [][]byte) (int, error) {
	p.iov = append(append(p.iov[:0], hdr), bufs...)
	for {
		n, err := unix.Readv(p.fd, p.iov)
		switch {
		case err == nil && n < len(hdr):
			continue // cannot happen with IFF_VNET_HDR; skip it
		case err == nil:
			return n - len(hdr), nil
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return 0, fmt.Errorf("zerocopy: tap read: %w", err)
		}
		p.fds[0].Revents, p.fds[1].Revents = 0, 0
		if _, err := unix.Poll(p.fds[:], -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("zerocopy: tap poll: %w", err)
		}
		if p.fds[1].Revents != 0 {
			var b [8]byte
			_, _ = unix.Read(p.intrFD, b[:])
			return 0, ErrInterrupted
		}
	}
}

// Writev implements Port. A frame the kernel refuses is dropped, as on a wire.
func (p *TapPort) Writev(segs [][]byte) error {
	if _, err := unix.Writev(p.fd, segs); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("zerocopy: tap write: %w", err)
	}
	return nil
}

// Interrupt implements Port.
func (p *TapPort) Interrupt() {
	_, _ = unix.Write(p.intrFD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

// Close closes the tap (a non-persistent tap disappears).
func (p *TapPort) Close() error {
	unix.Close(p.intrFD)
	return p.f.Close()
}
