// The host packet port: opening the tap or adopting a port, and sending onto it.

package pcidev

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
	"github.com/govmm/govmm/devices/nic/tap"
)

// vnetHdrLen is the virtio_net_hdr in front of every frame on our tap.
const vnetHdrLen = 10

// openTap attaches to tap interface name (creating a non-persistent one if
// it does not exist) with IFF_VNET_HDR, so that the 82599's checksum and
// TSO requests reach the host kernel whole (ixgbeemu.OffloadWire) instead
// of being done in software. Frames from the host arrive finished
// (TUNSETOFFLOAD 0): a guest 82599 driver takes no GSO frames.
func openTap(name string) (fd int, created bool, err error) {
	fd, created, err = tap.OpenFD(name, true)
	if err != nil {
		return -1, false, fmt.Errorf("ixgbe pcidev: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("ixgbe pcidev: tap %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("ixgbe pcidev: tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	return fd, created, nil
}

// adoptPort takes a private non-blocking descriptor for f and closes f
// (its Fd method would switch the shared file description to blocking
// mode behind our back otherwise).
func adoptPort(f *os.File) (int, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("ixgbe pcidev: dup port: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ixgbe pcidev: port: %w", err)
	}
	return fd, nil
}

// portWire is the model's Wire on a port without virtio_net_hdr: one
// writev per frame, straight from guest memory. A frame the host refuses
// (full queue, interface down) is lost as on a wire.
type portWire struct{ d *Device }

func (w portWire) Send(segs [][]byte) error { return w.d.writev(segs) }

// vnetWire is the Wire on our tap: a virtio_net_hdr goes first, all zero
// for a finished frame, or carrying the 82599's offload request, so the
// frame's payload still goes straight from guest memory.
type vnetWire struct {
	d   *Device
	hdr []byte
	iov [][]byte
}

// Send implements ixgbeemu.Wire. The model calls its Wire under the tx
// queue lock, one frame at a time (one queue carries traffic here; with
// more, they serialise on the shared scratch through txMu).
func (w *vnetWire) Send(segs [][]byte) error {
	return w.SendOffload(segs, ixgbeemu.TxOffload{})
}

// SendOffload implements ixgbeemu.OffloadWire.
func (w *vnetWire) SendOffload(segs [][]byte, off ixgbeemu.TxOffload) error {
	w.d.txMu.Lock()
	defer w.d.txMu.Unlock()
	off.PutVnetHeader(w.hdr)
	w.iov = append(append(w.iov[:0], w.hdr), segs...)
	return w.d.writev(w.iov)
}

func (d *Device) wire() ixgbeemu.Wire {
	if d.vnet == 0 {
		return portWire{d}
	}
	return &vnetWire{d: d, hdr: make([]byte, d.vnet)}
}

func (d *Device) writev(segs [][]byte) error {
	for {
		_, err := unix.Writev(d.fd, segs)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			d.txErrs.Add(1)
			return err
		}
		return nil
	}
}
