// Package afxdp is a NIC model on an AF_XDP socket whose UMEM is guest RAM:
// the host NIC (or veth) writes received frames straight into the buffers
// the guest's virtio-net driver posted, and transmits straight from the
// guest's frames. No VMM copies either way, and with a zero-copy driver no
// kernel copy either: the NIC DMAs into guest memory, which is what the 2010
// RFC behind govmm asked for.
//
// How a guest buffer becomes a fill-ring entry, and which buffers cannot
// (they take the counted copy lane, through govmm's own bounce chunks in
// the host-only scratch after guest RAM), is zerocopy.DecideXDP. The UMEM
// headroom is set so that the kernel's frame limit is the guest's largest
// frame (zerocopy.XDPHeadroomFor).
//
// Registering the UMEM pins all of guest RAM (and the scratch) for as long
// as the socket lives, as VFIO does: RLIMIT_MEMLOCK must allow it, or govmm
// needs CAP_IPC_LOCK. The pin cap of the 82599 path does not apply here.
//
// The kernel owns every buffer on the fill ring, and the only way to take
// them back is to close the socket: Stop does, and Start opens a new one.
package afxdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp/xsk"
	"github.com/govmm/govmm/devices/nic/gso"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/zerocopy"
)

const (
	// chunkSize is the UMEM chunk: the smallest the kernel takes, so the
	// headroom in front of a frame (guest memory the driver did not lend
	// for it) is as small as it can be.
	chunkSize = 2048
	// ringSize is each of the socket's four rings: more than a virtqueue.
	ringSize = 1024
	// rxBounceChunks is how many rx bounce chunks the copy lane has.
	rxBounceChunks = 128
	// txBounceChunks is how many tx bounce chunks there are: the copy lane's,
	// and the wire frames of offloaded frames (a 64 KiB TSO frame is 46 of
	// them), so about eleven such frames can be in flight.
	txBounceChunks = 512
)

// ScratchBytes is the host-only memory (guestmem.NewWithScratch) one model
// needs for its bounce chunks.
const ScratchBytes = (rxBounceChunks + txBounceChunks) * chunkSize

// Config configures a model.
type Config struct {
	Ifname string // host interface
	// Ifindex, if not 0, is Ifname's index, known from an earlier boot:
	// New then needs no netlink lookup (which govmm's seccomp filter
	// forbids once the first guest runs).
	Ifindex int
	Queue   int // its receive queue
	Mode    xsk.Mode
	// Mem is guest RAM: its Span is registered as the UMEM.
	Mem *guestmem.Memory
	// ScratchOff is where this model's ScratchBytes start in Mem.Scratch().
	ScratchOff uint64
	// MTU is the guest's MTU (0: 1500); frames are at most MTU+18 bytes.
	MTU int
	Log *slog.Logger
}

// Stats are the model's counters.
type Stats struct {
	RxFrames, RxZeroCopyFrames, RxCopiedFrames, RxCopiedBytes, RxDropped atomic.Uint64
	TxFrames, TxZeroCopyFrames, TxCopiedFrames, TxCopiedBytes, TxDropped atomic.Uint64
	// TxOffloaded counts guest frames whose checksum or segmentation
	// govmm finished (package gso), TxSegments the wire frames they made;
	// their bytes count in TxCopiedBytes.
	TxOffloaded, TxSegments atomic.Uint64
	// RxCopyReasons counts buffers put on the copy lane, by reason.
	RxCopyReasons [zerocopy.XDPReasons]atomic.Uint64
}

// entry is one fill-ring chunk: a guest buffer (zero-copy) or a bounce
// chunk (copy lane).
type entry struct {
	buf    nic.Buf
	seq    uint64 // posting order
	bounce int    // bounce chunk index, or -1 for a guest buffer
}

// Model is the AF_XDP model.
type Model struct {
	cfg     Config
	log     *slog.Logger
	ns      netns // where the interface is
	ifindex int
	prog    *xsk.Program
	rules   zerocopy.XDPRules
	layout  zerocopy.GuestLayout
	drvHdr  uint32 // bytes the NIC writes in front of a frame when zero-copy (driverHeader)
	span    []byte
	scratch uint64 // span offset of this model's scratch
	Stats   Stats

	sinkMu sync.Mutex // serialises Sink calls (the contract: never concurrent)

	mu       sync.Mutex // receive state, the fill ring, sock
	sock     *xsk.Socket
	sink     nic.Sink
	hdrLen   int
	offload  offloads // what the guest may ask of a transmitted frame
	running  bool
	seq      uint64
	held     map[uint64]entry // by fill address
	copyQ    []entry          // copy-lane buffers waiting for a frame, in posting order
	rxFree   []int            // free rx bounce chunks
	fillAddr []uint64         // scratch for Fill
	cpUsed   []nic.Used       // scratch for copyOut
	zc       bool             // the socket is zero-copy

	txMu     sync.Mutex
	inflight map[uint64]txEntry // by tx descriptor address
	// txParts counts the wire frames in flight of each guest frame that
	// went out as several (segmented): it completes with its last one.
	txParts map[uint16]int
	txFree  []int
	txFrame [][]byte   // Transmit scratch: a frame's views after its header
	txBad   gso.Header // the last refused offload request logged (one line per kind)
	txDescs []xsk.Desc
	txIDs   []uint16
	txDone  []uint16 // Transmit's completions (tx worker)
	rxDone  []uint16 // the receive loop's (and Stop's) completions
	comp    []uint64

	stopFD int
	wg     sync.WaitGroup
}

type txEntry struct {
	id     uint16
	bounce int
}

// New attaches the steering program to the interface and opens the socket,
// so that a configuration the host cannot serve fails before the guest
// boots.
func New(cfg Config) (*Model, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Mem == nil || cfg.Mem.Span() == nil {
		return nil, errors.New("afxdp: guest memory has no span to register")
	}
	scratch := cfg.Mem.Scratch()
	if cfg.ScratchOff+ScratchBytes > uint64(len(scratch)) {
		return nil, fmt.Errorf("afxdp: needs %d bytes of scratch at %d, guest memory has %d", ScratchBytes, cfg.ScratchOff, len(scratch))
	}
	if err := checkMemlock(uint64(len(cfg.Mem.Span()))); err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	ns, err := thisNetns()
	if err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	ifindex := cfg.Ifindex
	if ifindex == 0 {
		ifc, err := net.InterfaceByName(cfg.Ifname)
		if err != nil {
			ns.close()
			return nil, fmt.Errorf("afxdp: interface %q: %w", cfg.Ifname, err)
		}
		ifindex = ifc.Index
	}
	layout := zerocopy.LayoutFromConfig(nic.Config{HdrLen: 12}, cfg.MTU)
	head, err := zerocopy.XDPHeadroomFor(chunkSize, layout)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("afxdp: MTU %d: %w", cfg.MTU, err)
	}
	span := cfg.Mem.Span()
	m := &Model{cfg: cfg, log: cfg.Log, ns: ns, ifindex: ifindex, span: span, layout: layout,
		scratch: uint64(len(span)-len(scratch)) + cfg.ScratchOff,
		rules:   zerocopy.XDPRules{ChunkSize: chunkSize, Headroom: head, UMEMSize: uint64(len(span))},
		held:    make(map[uint64]entry, 2*ringSize), inflight: make(map[uint64]txEntry, 2*ringSize),
		txParts: make(map[uint16]int), stopFD: -1}
	// Read once, here: sysfs is off seccomp's allow-list once the guest runs,
	// and the socket is opened again on every driver reset.
	hdr, drv, err := driverHeader("/sys", cfg.Ifname)
	if err != nil {
		hdr = ^uint32(0) // cannot tell: every buffer on the copy lane
		m.log.Warn("afxdp: the driver's receive header size is unknown; in zero-copy mode every frame is copied", "if", cfg.Ifname, "err", err)
	} else if hdr > uint32(layout.HdrLen) {
		m.log.Warn("afxdp: the NIC writes more in front of each frame than the guest's header holds; in zero-copy mode every frame is copied",
			"if", cfg.Ifname, "driver", drv, "bytes", hdr)
	}
	m.drvHdr = hdr
	for i := 0; i < rxBounceChunks; i++ {
		m.rxFree = append(m.rxFree, i)
	}
	for i := 0; i < txBounceChunks; i++ {
		m.txFree = append(m.txFree, i)
	}
	if m.prog, err = program(ns, ifindex); err != nil {
		ns.close()
		return nil, fmt.Errorf("afxdp: %s: %w", cfg.Ifname, err)
	}
	if err := m.open(); err != nil {
		ns.close()
		return nil, err
	}
	mode := "copy"
	if m.zc {
		mode = "zerocopy"
	}
	m.log.Info("afxdp: socket bound", "if", cfg.Ifname, "queue", cfg.Queue, "xdp-mode", mode, "program", m.prog.Mode().String(),
		"umem-bytes", len(span), "umem-headroom", head, "frame-limit", m.rules.FrameSize())
	return m, nil
}

// open opens the socket and steers the queue to it, in the network
// namespace the model was made in: a socket binds to an interface of its
// own namespace, and Start may run on any thread.
func (m *Model) open() error {
	if !m.ns.current() {
		return m.ns.do(m.openRetry)
	}
	return m.openRetry()
}

// openRetry opens the socket, waiting while the queue still belongs to
// the previous one: the kernel releases a closed socket's buffer pool
// from a work queue, and until then binding the queue fails with EBUSY.
// In zero-copy mode that wait is what makes the driver let go of guest
// buffers (see closeSocket).
func (m *Model) openRetry() error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := m.openHere()
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *Model) openHere() error {
	s, err := xsk.Open(xsk.Config{Ifindex: m.ifindex, Queue: m.cfg.Queue, UMEM: m.span,
		ChunkSize: chunkSize, Headroom: m.rules.Headroom, RingSize: ringSize, Mode: m.cfg.Mode})
	if err != nil {
		return fmt.Errorf("afxdp: %s queue %d: %w", m.cfg.Ifname, m.cfg.Queue, err)
	}
	if err := m.prog.Register(m.cfg.Queue, s); err != nil {
		s.Close()
		return fmt.Errorf("afxdp: %s queue %d: %w", m.cfg.Ifname, m.cfg.Queue, err)
	}
	m.sock, m.zc = s, s.ZeroCopy()
	m.rules.PageSize, m.rules.DriverHeader = 0, 0
	if m.zc {
		// A zero-copy driver DMAs a chunk within one page of guest RAM
		// (4 KiB, or 2 MiB with --mem-hugepages), and may let its NIC
		// write in front of the frame (virtio_net: its header).
		m.rules.PageSize = m.cfg.Mem.PageSize()
		m.rules.DriverHeader = m.drvHdr
	}
	return nil
}

// Name implements nic.Model.
func (m *Model) Name() string { return "afxdp" }

// Capabilities implements nic.Model. An AF_XDP socket carries neither
// checksum nor segmentation requests (Linux 6.1 has no tx metadata), so
// govmm finishes the guest's in software (package gso): the guest may send
// 64 KiB TCP frames, one kick for 46 wire frames. Received frames arrive
// complete and at most MTU-sized, so no receive offload is offered.
func (m *Model) Capabilities() nic.Capabilities {
	return nic.Capabilities{HostCsum: true, HostTSO: true}
}

// ZeroCopy reports whether the socket is bound in zero-copy mode (the
// driver DMAs into guest RAM) rather than copy mode (the kernel copies
// into it).
func (m *Model) ZeroCopy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.zc
}

// Start implements nic.Model.
func (m *Model) Start(cfg nic.Config, sink nic.Sink) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return errors.New("afxdp: already started")
	}
	if m.sock == nil {
		if err := m.open(); err != nil {
			return err
		}
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("afxdp: eventfd: %w", err)
	}
	m.stopFD, m.sink, m.hdrLen, m.running = fd, sink, cfg.HdrLen, true
	m.offload = offloads{csum: cfg.HostCsum, tso4: cfg.HostCsum && cfg.HostTSO4, tso6: cfg.HostCsum && cfg.HostTSO6}
	m.layout = zerocopy.LayoutFromConfig(nic.Config{HdrLen: cfg.HdrLen, Mergeable: cfg.Mergeable}, m.cfg.MTU)
	m.wg.Add(1)
	go m.rxLoop(m.sock, fd)
	return nil
}

// Stop implements nic.Model: it stops the receive loop, reports what the
// socket received meanwhile, closes the socket (the kernel lets go of
// every fill-ring buffer) and returns the buffers still held, in posting
// order.
func (m *Model) Stop() []nic.Buf {
	m.mu.Lock()
	if !m.running {
		m.mu.Unlock()
		return nil
	}
	m.running = false
	fd := m.stopFD
	m.mu.Unlock()
	_, _ = unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	m.wg.Wait()
	unix.Close(fd)

	m.mu.Lock()
	sock := m.sock
	m.mu.Unlock()
	m.receive(sock) // what arrived before the loop stopped
	m.reap(sock)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.closeSocket()
	var left []entry
	for _, e := range m.held {
		if e.bounce < 0 {
			left = append(left, e)
		} else {
			m.rxFree = append(m.rxFree, e.bounce)
		}
	}
	left = append(left, m.copyQ...)
	sort.Slice(left, func(i, j int) bool { return left[i].seq < left[j].seq })
	clear(m.held)
	m.copyQ = m.copyQ[:0]
	out := make([]nic.Buf, len(left))
	for i, e := range left {
		out[i] = e.buf
	}
	// Transmits in flight are done: the socket is gone, nothing reads them.
	m.txMu.Lock()
	var ids []uint16
	for a, t := range m.inflight {
		ids = append(ids, t.id)
		if t.bounce >= 0 {
			m.txFree = append(m.txFree, t.bounce)
		}
		delete(m.inflight, a)
	}
	clear(m.txParts)
	m.txMu.Unlock()
	// A segmented frame had several wire frames in flight: report it once.
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > 0 {
		m.Stats.TxDropped.Add(uint64(len(ids)))
		m.sinkMu.Lock()
		m.sink.TxDone(ids)
		m.sinkMu.Unlock()
	}
	return out
}

// closeSocket closes the socket; m.mu is held. In zero-copy mode the
// driver lets go of its buffers only when the kernel's deferred pool
// release has run: opening the next socket on the queue fails with EBUSY
// until then, so it is opened here, which is the wait.
func (m *Model) closeSocket() {
	if m.sock == nil {
		return
	}
	zc := m.zc
	m.sock.Close()
	m.sock = nil
	if !zc {
		return // copy mode: nothing writes after the close (xsk_release waits out the receive path)
	}
	if err := m.open(); err != nil {
		m.log.Warn("afxdp: reopening the zero-copy socket", "err", err)
	}
}

// Close stops the model and releases the socket and the program.
func (m *Model) Close() error {
	m.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sock != nil {
		m.sock.Close()
		m.sock = nil
	}
	m.ns.close()
	return nil
}

// Ifindex returns the interface's index (for Config.Ifindex of a later
// boot).
func (m *Model) Ifindex() int { return m.ifindex }

// The steering program of an interface is attached once and stays for the
// life of the process (the kernel detaches it when govmm exits, or when
// the interface goes): a guest reboot builds a new model under the seccomp
// filter, which allows a socket and a map update but not loading
// programs.
var programs struct {
	sync.Mutex
	m map[[2]uint64]*xsk.Program // by network namespace inode and ifindex
}

func program(ns netns, ifindex int) (*xsk.Program, error) {
	programs.Lock()
	defer programs.Unlock()
	k := [2]uint64{ns.ino, uint64(ifindex)}
	if p := programs.m[k]; p != nil {
		return p, nil
	}
	p, err := xsk.Attach(ifindex, xsk.AttachAuto)
	if err != nil {
		return nil, err
	}
	if programs.m == nil {
		programs.m = map[[2]uint64]*xsk.Program{}
	}
	programs.m[k] = p
	// The key's inode names the namespace only while it lives: a later
	// namespace may get the same inode, with an interface of the same
	// index that has no program. Holding a reference keeps this one alive
	// for as long as its entry (govmm has one namespace; tests make many).
	if fd, err := unix.Dup(ns.fd); err == nil {
		unix.CloseOnExec(fd)
	}
	return p, nil
}

// FallbackReasons counts the receive buffers put on the copy lane, by
// reason (zerocopy.DecideXDP).
func (m *Model) FallbackReasons() map[string]uint64 {
	out := map[string]uint64{}
	for i := range m.Stats.RxCopyReasons {
		if n := m.Stats.RxCopyReasons[i].Load(); n > 0 {
			out[zerocopy.XDPReason(i).String()] = n
		}
	}
	return out
}

// DebugState implements nic.Debugger.
func (m *Model) DebugState() string {
	m.mu.Lock()
	zc, held, copyQ := m.zc, len(m.held), len(m.copyQ)
	var ks string
	if m.sock != nil {
		if st, err := m.sock.Stats(); err == nil {
			ks = fmt.Sprintf("; kernel: rx dropped %d, rx invalid %d, tx invalid %d, rx ring full %d, fill ring empty %d",
				st.RxDropped, st.RxInvalidDescs, st.TxInvalidDescs, st.RxRingFull, st.RxFillRingEmpty)
		}
	}
	m.mu.Unlock()
	m.txMu.Lock()
	tx := len(m.inflight)
	m.txMu.Unlock()
	return fmt.Sprintf("afxdp %s queue %d: zero-copy socket %v, program %s; fill ring holds %d (copy lane waiting %d); tx in flight %d%s",
		m.cfg.Ifname, m.cfg.Queue, zc, m.prog.Mode(), held, copyQ, tx, ks)
}

// ParseMode reads --net's mode=: auto (or empty), zerocopy or copy.
func ParseMode(s string) (xsk.Mode, error) {
	switch s {
	case "", "auto":
		return xsk.ModeAuto, nil
	case "zerocopy":
		return xsk.ModeZeroCopy, nil
	case "copy":
		return xsk.ModeCopy, nil
	}
	return 0, fmt.Errorf("afxdp: mode %q: want auto, zerocopy or copy", s)
}
