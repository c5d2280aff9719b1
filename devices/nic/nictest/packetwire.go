package nictest

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// PacketWire is the far end of a model attached to a host interface (a
// tap): an AF_PACKET socket on that interface with PACKET_VNET_HDR, so a
// frame the model sent with a partial checksum or as a GSO frame shows up
// with its virtio_net_hdr, as the host stack holds it. Use it inside a
// private network namespace (internal/testnet), never on a shared link.
type PacketWire struct {
	fd      int
	ifindex int
	buf     []byte
}

// vnetHdrLen is the header PACKET_VNET_HDR prepends (struct virtio_net_hdr).
const vnetHdrLen = 10

// NewPacketWire brings the interface up and opens the socket on it.
func NewPacketWire(ifname string) (*PacketWire, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("nictest: %w", err)
	}
	if err := linkUp(ifname); err != nil {
		return nil, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("nictest: AF_PACKET socket: %w", err)
	}
	w := &PacketWire{fd: fd, ifindex: ifi.Index, buf: make([]byte, vnetHdrLen+1<<16)}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		w.Close()
		return nil, fmt.Errorf("nictest: PACKET_VNET_HDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		w.Close()
		return nil, fmt.Errorf("nictest: bind to %s: %w", ifname, err)
	}
	return w, nil
}

func linkUp(ifname string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nictest: %w", err)
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq(ifname)
	if err != nil {
		return fmt.Errorf("nictest: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, req); err != nil {
		return fmt.Errorf("nictest: SIOCGIFFLAGS %s: %w", ifname, err)
	}
	req.SetUint16(req.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, req); err != nil {
		return fmt.Errorf("nictest: bring %s up: %w", ifname, err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Send implements Wire: the frame leaves the interface toward the model.
func (w *PacketWire) Send(frame []byte) error {
	var hdr [vnetHdrLen]byte
	_, err := unix.Writev(w.fd, [][]byte{hdr[:], frame})
	return err
}

// Recv implements Wire. Frames the host itself sends out of the interface
// are skipped: only what the model put on it counts.
func (w *PacketWire) Recv(timeout time.Duration) (hdr, frame []byte, err error) {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms <= 0 {
			return nil, nil, errors.New("nictest: no frame on the wire")
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			return nil, nil, err
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		n, from, err := unix.Recvfrom(w.fd, w.buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n < vnetHdrLen {
			continue
		}
		b := append([]byte(nil), w.buf[:n]...)
		return b[:vnetHdrLen], b[vnetHdrLen:], nil
	}
}

// Close closes the socket.
func (w *PacketWire) Close() error { return unix.Close(w.fd) }
