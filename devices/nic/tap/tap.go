// Package tap is the Linux TAP NIC model: receive is one readv(2) from the
// tap straight into the guest's posted buffers and transmit one writev(2)
// from the guest's frame, so payload bytes never pass through a VMM buffer
// (Firecracker's approach). The tap runs with IFF_VNET_HDR, so the
// virtio_net_hdr at the front of each frame, with its checksum and GSO
// metadata, goes to and from the kernel unchanged.
package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/internal/osthread"
)

// maxFrame bounds what one tap read can return: a 64 KiB GSO frame plus
// Ethernet and VLAN headers.
const maxFrame = 65535 + 14 + 4

// Tap is a tap device used as a nic.Model.
type Tap struct {
	name    string
	f       *os.File // owns the descriptor (Close)
	fd      int      // the same, for syscalls: f.Fd() would make it blocking
	created bool     // govmm created the interface; it disappears when f closes
	stopFD  int      // eventfd: wakes the reader for Stop
	postFD  int      // eventfd: wakes the reader when buffers are posted

	cfg  nic.Config
	sink nic.Sink
	need int // bytes of buffer a read must have room for

	mu        sync.Mutex
	bufs      []nic.Buf // posted, not yet used
	accepting bool      // PostRx takes buffers: between Start and Stop
	done      chan struct{}
	started   bool
	stopping  atomic.Bool // Stop is waiting for the reader

	iov   [][]byte     // reader-only scratch
	rxv   osthread.IOV // reader-only
	txv   osthread.IOV // Transmit's
	used  []nic.Used   // reader-only scratch
	rx    nic.RxBatch  // frames read since the last report (reader only)
	txIDs []uint16     // Transmit scratch (Transmit is never called concurrently)
}

// OpenFD opens tap interface name, creating it if it does not exist (a
// created tap is not persistent: it disappears when the last descriptor
// closes), in IFF_TAP|IFF_NO_PI mode plus IFF_VNET_HDR if vnetHdr. The
// descriptor is non-blocking and close-on-exec. It is the one place govmm
// talks TUNSETIFF; the tap model, the zero-copy port and the guest-visible
// 82599 all open their taps through it.
func OpenFD(name string, vnetHdr bool) (fd int, created bool, err error) {
	fds, created, err := OpenQueues(name, 1, vnetHdr)
	if err != nil {
		return -1, false, err
	}
	return fds[0], created, nil
}

// MaxQueues bounds the queues of one multi-queue tap (the kernel's
// MAX_TAP_QUEUES is 256; govmm needs no more than a guest's queue pairs).
const MaxQueues = 16

// OpenQueues opens n queues of tap interface name, as OpenFD does one.
// With n > 1 the tap is multi-queue (IFF_MULTI_QUEUE): the kernel spreads
// flows over the descriptors, each of which reads and writes its own
// queue. A tap created beforehand must have been made multi-queue too (ip
// tuntap add NAME mode tap multi_queue).
func OpenQueues(name string, n int, vnetHdr bool) (fds []int, created bool, err error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return nil, false, fmt.Errorf("tap: bad interface name %q", name)
	}
	if n < 1 || n > MaxQueues {
		return nil, false, fmt.Errorf("tap %s: %d queues, want 1..%d", name, n, MaxQueues)
	}
	_, statErr := os.Stat("/sys/class/net/" + name)
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	if n > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	for range n {
		fd, err := openQueue(name, flags)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			if n > 1 && statErr == nil && errors.Is(err, unix.EINVAL) {
				err = fmt.Errorf("%w (a tap made beforehand must be multi-queue for %d queues: ip tuntap add %s mode tap multi_queue)", err, n, name)
			}
			return nil, false, err
		}
		fds = append(fds, fd)
	}
	return fds, errors.Is(statErr, os.ErrNotExist), nil
}

func openQueue(name string, flags uint16) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("tap %s: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(flags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	return fd, nil
}

// SetQueue attaches (on) or detaches one queue of a multi-queue tap
// (TUNSETQUEUE). The kernel steers no frame to a detached queue; reading
// or writing its descriptor fails with EBADFD until it is attached again.
func SetQueue(fd int, on bool) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return fmt.Errorf("tap: TUNSETQUEUE: %w", err)
	}
	flag := uint16(unix.IFF_DETACH_QUEUE)
	if on {
		flag = unix.IFF_ATTACH_QUEUE
	}
	ifr.SetUint16(flag)
	if err := unix.IoctlIfreq(fd, unix.TUNSETQUEUE, ifr); err != nil {
		return fmt.Errorf("tap: TUNSETQUEUE attach=%v: %w", on, err)
	}
	return nil
}

// SetPersist sets or clears TUNSETPERSIST on an attached tap descriptor.
// govmm keeps a tap it created alive across a guest reboot this way (the
// machine, and with it the descriptor, is rebuilt) and clears it again so
// the tap still disappears with govmm.
func SetPersist(fd int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, v); err != nil {
		return fmt.Errorf("tap: TUNSETPERSIST %d: %w", v, err)
	}
	return nil
}

// Open attaches to tap interface name, creating it if it does not exist
// (a created tap is not persistent: it is deleted when govmm exits).
func Open(name string) (*Tap, error) {
	fd, created, err := OpenFD(name, true)
	if err != nil {
		return nil, err
	}
	var efd [2]int
	for i := range efd {
		if efd[i], err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("tap %s: eventfd: %w", name, err)
		}
	}
	return &Tap{
		name:    name,
		f:       os.NewFile(uintptr(fd), "tap-"+name),
		fd:      fd,
		created: created,
		stopFD:  efd[0],
		postFD:  efd[1],
	}, nil
}

// Name implements nic.Model.
func (t *Tap) Name() string { return "tap" }

// Interface returns the host interface name.
func (t *Tap) Interface() string { return t.name }

// TapFD returns the tap descriptor (for SetPersist).
func (t *Tap) TapFD() int { return t.fd }

// Created reports whether govmm created the interface.
func (t *Tap) Created() bool { return t.created }

// Capabilities implements nic.Model: the tap carries checksum and GSO
// metadata in the vnet header.
func (t *Tap) Capabilities() nic.Capabilities { return nic.Capabilities{Csum: true, TSO: true} }

// OffloadFlags returns the TUNSETOFFLOAD flags for a guest that negotiated
// cfg: what the tap may hand over to the reader (partial checksums, GSO
// frames). Frames written to a tap may carry any offload regardless.
func OffloadFlags(cfg nic.Config) int {
	var off int
	if cfg.GuestCsum {
		off |= unix.TUN_F_CSUM
		if cfg.GuestTSO4 {
			off |= unix.TUN_F_TSO4 | unix.TUN_F_TSO_ECN
		}
		if cfg.GuestTSO6 {
			off |= unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
		}
	}
	return off
}

// Start implements nic.Model.
func (t *Tap) Start(cfg nic.Config, sink nic.Sink) error {
	if err := unix.IoctlSetPointerInt(t.fd, unix.TUNSETVNETHDRSZ, cfg.HdrLen); err != nil {
		return fmt.Errorf("tap %s: TUNSETVNETHDRSZ %d: %w", t.name, cfg.HdrLen, err)
	}
	off := OffloadFlags(cfg)
	if err := unix.IoctlSetInt(t.fd, unix.TUNSETOFFLOAD, off); err != nil {
		return fmt.Errorf("tap %s: TUNSETOFFLOAD %#x: %w", t.name, off, err)
	}
	t.cfg, t.sink = cfg, sink
	t.need = cfg.HdrLen + 1514 + 4
	if cfg.GuestTSO4 || cfg.GuestTSO6 {
		t.need = cfg.HdrLen + maxFrame
	}
	t.done = make(chan struct{})
	t.started = true
	t.mu.Lock()
	t.accepting = true
	t.mu.Unlock()
	go t.reader()
	return nil
}

// PostRx implements nic.Model; the tap takes every buffer.
func (t *Tap) PostRx(bufs []nic.Buf) int {
	t.mu.Lock()
	if !t.accepting {
		t.mu.Unlock()
		return 0 // stopped: Stop may already have handed back what it held
	}
	t.bufs = append(t.bufs, bufs...)
	t.mu.Unlock()
	signal(t.postFD)
	return len(bufs)
}

// Transmit implements nic.Model: one writev per frame, straight from guest
// memory. A frame the kernel rejects is dropped, as a wire would.
func (t *Tap) Transmit(frames []nic.Buf) {
	ids := t.txIDs[:0]
	for _, f := range frames {
		if _, err := t.txv.Writev(t.fd, f.Segs); err != nil && !errors.Is(err, unix.EAGAIN) {
			slog.Debug("tap: write dropped", "tap", t.name, "err", err)
		}
		ids = append(ids, f.ID)
	}
	t.txIDs = ids
	t.sink.TxDone(ids) // the sink copies them: the slice is reused
}

// Stop implements nic.Model.
func (t *Tap) Stop() []nic.Buf {
	t.mu.Lock()
	t.accepting = false
	t.mu.Unlock()
	if t.started {
		t.stopping.Store(true) // seen between frames when the reader never polls
		signal(t.stopFD)
		<-t.done
		t.started = false
		t.stopping.Store(false)
		// Drain the wake-up, or the next Start's reader would stop at once.
		var b [8]byte
		_, _ = unix.Read(t.stopFD, b[:])
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bufs
	t.bufs = nil
	return b
}

// Close stops the model and closes the tap (deleting it if govmm made it).
func (t *Tap) Close() error {
	t.Stop()
	unix.Close(t.stopFD)
	unix.Close(t.postFD)
	return t.f.Close()
}

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// signal increments an eventfd; EAGAIN (counter saturated) still wakes.
func signal(fd int) { _, _ = unix.Write(fd, one) }

// takeBufs returns posted buffers whose total room is at least t.need (a
// read must never truncate a frame), or, without mergeable buffers, the
// first buffer alone, which the driver sized for a whole frame.
func (t *Tap) takeBufs() []nic.Buf {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bufs) == 0 {
		return nil
	}
	if !t.cfg.Mergeable {
		return t.bufs[:1:1]
	}
	room := 0
	for i := range t.bufs {
		room += t.bufs[i].Len()
		if room >= t.need {
			return t.bufs[: i+1 : i+1]
		}
	}
	return nil
}

// consume drops the first n buffers from the posted list.
func (t *Tap) consume(n int) {
	t.mu.Lock()
	t.bufs = t.bufs[n:]
	t.mu.Unlock()
}

func (t *Tap) reader() {
	defer close(t.done)
	defer osthread.Own("tap-rx")()
	var w osthread.Waiter
	// Frames read but not yet reported go to the sink before Stop returns:
	// their buffers left t.bufs, so Stop would not return them either.
	defer t.flush()
	fds := []unix.PollFd{
		{Fd: int32(t.fd)},
		{Fd: int32(t.stopFD), Events: unix.POLLIN},
		{Fd: int32(t.postFD), Events: unix.POLLIN},
	}
	var drain [8]byte
	for !t.stopping.Load() {
		bufs := t.takeBufs()
		if bufs != nil {
			// Read first, poll only when nothing is queued: under load a
			// frame is usually waiting, and a poll per frame would double
			// the system calls.
			err := t.readFrame(bufs)
			if err == nil {
				if t.rx.Len() >= nic.RxBudget {
					t.flush()
				}
				continue
			}
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				// EBADFD: the interface was deleted under us (ip link del).
				// Receive stops; the guest runs on, its transmits dropped.
				t.flush()
				slog.Error("tap: read failed, receive stopped", "tap", t.name, "err", err)
				return
			}
		}
		// The tap is empty (or the buffers are): the frames read so far go
		// to the guest together, before any wait.
		t.flush()
		// Without room for a whole frame, do not read: frames wait in the
		// tap's queue (which drops when full, as a NIC with an empty ring
		// would) until the guest posts more buffers.
		fds[0].Events = 0
		if bufs != nil {
			fds[0].Events = unix.POLLIN
		} else {
			t.sink.RxStarved()
		}
		if _, err := w.Wait(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			slog.Error("tap: poll failed", "tap", t.name, "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[2].Revents != 0 {
			_, _ = unix.Read(t.postFD, drain[:])
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			// The interface is gone: poll would report POLLERR forever.
			slog.Error("tap: the interface is gone, receive stopped", "tap", t.name, "revents", fds[0].Revents)
			return
		}
	}
}

// readFrame reads one frame into bufs (one readv, straight into guest
// memory) and reports it to the sink.
func (t *Tap) readFrame(bufs []nic.Buf) error {
	t.iov = t.iov[:0]
	for i := range bufs {
		t.iov = append(t.iov, bufs[i].Segs...)
	}
	n, err := t.rxv.Readv(t.fd, t.iov)
	if err != nil || n == 0 {
		return err
	}
	t.used = t.used[:0]
	left := n
	for i := range bufs {
		l := min(bufs[i].Len(), left)
		t.used = append(t.used, nic.Used{ID: bufs[i].ID, Written: uint32(l)})
		left -= l
		if left == 0 {
			break
		}
	}
	t.consume(len(t.used))
	t.rx.Add(t.used...)
	return nil
}

// flush reports the frames read since the last flush.
func (t *Tap) flush() {
	if t.rx.Len() > 0 {
		t.sink.RxFrames(&t.rx)
		t.rx.Reset()
	}
}

// DebugState implements nic.Debugger.
func (t *Tap) DebugState() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	room := 0
	for i := range t.bufs {
		room += t.bufs[i].Len()
	}
	return fmt.Sprintf("tap %s: %d rx buffers posted (%d bytes), a read needs %d", t.name, len(t.bufs), room, t.need)
}
