package xsk

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// XDPHeadroom is XDP_PACKET_HEADROOM: a received frame lands this many
// bytes (plus Config.Headroom) after its fill address.
const XDPHeadroom = unix.XDP_PACKET_HEADROOM

// Mode picks how the socket binds.
type Mode int

const (
	// ModeAuto binds zero-copy if the driver can, else copy.
	ModeAuto Mode = iota
	// ModeZeroCopy binds zero-copy or fails.
	ModeZeroCopy
	// ModeCopy binds in copy mode.
	ModeCopy
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeZeroCopy:
		return "zero-copy"
	case ModeCopy:
		return "copy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config describes a socket.
type Config struct {
	Ifindex int
	Queue   int
	// UMEM is page-aligned host memory registered as the UMEM as is
	// (unaligned chunks, UMEM headroom 0). It must be a mapping (not Go
	// heap memory) that outlives the socket; the kernel pins all of it.
	UMEM []byte
	// ChunkSize is XDP_UMEM_REG's chunk_size: at least 2048, and at most
	// the page size (4096) for a UMEM in ordinary pages.
	ChunkSize uint32
	// Headroom is XDP_UMEM_REG's headroom, 0 unless set: bytes the
	// kernel leaves before the XDP headroom, so a received frame lands
	// at fill address + Headroom + 256 and is at most
	// ChunkSize-Headroom-256 bytes. It must be below ChunkSize-256.
	Headroom uint32
	// RingSize, a power of two, is the size of all four rings.
	RingSize uint32
	Mode     Mode
}

// Desc is a received or transmitted frame: Addr is a UMEM offset with any
// unaligned-mode offset already folded in (for Receive, the address of the
// first frame byte), Len its length.
type Desc struct {
	Addr uint64
	Len  uint32
}

// Stats are the socket's XDP_STATISTICS counters.
type Stats struct {
	RxDropped       uint64 // frames dropped: no fill entry, or too long for a chunk
	RxInvalidDescs  uint64 // invalid rx-ring entries; not invalid fill addresses, which no counter shows
	TxInvalidDescs  uint64 // tx descriptors the kernel skipped (outside the UMEM, longer than a chunk)
	RxRingFull      uint64 // frames dropped because the rx ring was full
	RxFillRingEmpty uint64 // times the kernel found the fill ring empty
	TxRingEmpty     uint64 // times the kernel found the tx ring empty
}

// Socket is a bound AF_XDP socket and its mapped rings.
type Socket struct {
	fd       int
	zeroCopy bool
	umem     []byte // kept referenced: the kernel has it pinned

	fill, comp, rx, tx *ring

	// oddTx counts the frames in flight at odd addresses (copy mode):
	// see oddAddr.
	oddTx map[uint64]int

	closed bool
}

// Open creates an AF_XDP socket, registers cfg.UMEM, maps its rings and
// binds it to cfg.Ifindex's queue cfg.Queue. The error names the step that
// failed and wraps the errno.
func Open(cfg Config) (*Socket, error) {
	pageSize := os.Getpagesize()
	switch {
	case len(cfg.UMEM) == 0:
		return nil, errors.New("xsk: empty UMEM")
	case uintptr(unsafe.Pointer(&cfg.UMEM[0]))%uintptr(pageSize) != 0:
		return nil, fmt.Errorf("xsk: UMEM at %p is not page-aligned", &cfg.UMEM[0])
	case cfg.RingSize == 0 || cfg.RingSize&(cfg.RingSize-1) != 0:
		return nil, fmt.Errorf("xsk: ring size %d is not a power of two", cfg.RingSize)
	case cfg.Queue < 0:
		return nil, fmt.Errorf("xsk: negative queue %d", cfg.Queue)
	}
	bindFlags := uint16(unix.XDP_USE_NEED_WAKEUP)
	switch cfg.Mode {
	case ModeAuto:
		// No mode flag: the kernel tries zero-copy and falls back to
		// copy by itself if the driver cannot (xp_assign_dev), which
		// is what ModeAuto means, in one bind.
	case ModeZeroCopy:
		bindFlags |= unix.XDP_ZEROCOPY
	case ModeCopy:
		bindFlags |= unix.XDP_COPY
	default:
		return nil, fmt.Errorf("xsk: unknown mode %d", int(cfg.Mode))
	}

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("xsk: socket(AF_XDP): %w", err)
	}
	s := &Socket{fd: fd, umem: cfg.UMEM, oddTx: make(map[uint64]int)}
	if err := s.setup(cfg, bindFlags); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Socket) setup(cfg Config, bindFlags uint16) error {
	reg := unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&cfg.UMEM[0]))),
		Len:      uint64(len(cfg.UMEM)),
		Size:     cfg.ChunkSize,
		Headroom: cfg.Headroom,
		Flags:    unix.XDP_UMEM_UNALIGNED_CHUNK_FLAG,
	}
	if err := sockopt(unix.SYS_SETSOCKOPT, s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		step := fmt.Sprintf("xsk: register UMEM (XDP_UMEM_REG, %d bytes, chunk size %d, headroom %d)", len(cfg.UMEM), cfg.ChunkSize, cfg.Headroom)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EPERM) {
			// ENOBUFS is the kernel's answer when the pages would
			// exceed RLIMIT_MEMLOCK without CAP_IPC_LOCK.
			return fmt.Errorf("%s: cannot pin the memory (RLIMIT_MEMLOCK too low without CAP_IPC_LOCK, or out of memory): %w", step, err)
		}
		return fmt.Errorf("%s: %w", step, err)
	}
	for _, r := range []struct {
		opt  int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"},
		{unix.XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"},
		{unix.XDP_RX_RING, "XDP_RX_RING"},
		{unix.XDP_TX_RING, "XDP_TX_RING"},
	} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, r.opt, int(cfg.RingSize)); err != nil {
			return fmt.Errorf("xsk: set ring size (%s, %d): %w", r.name, cfg.RingSize, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := sockopt(unix.SYS_GETSOCKOPT, s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("xsk: get ring offsets (XDP_MMAP_OFFSETS): %w", err)
	}
	var err error
	if s.fill, err = mapRing(s.fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.RingSize, true, true); err != nil {
		return fmt.Errorf("xsk: map fill ring: %w", err)
	}
	if s.comp, err = mapRing(s.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.RingSize, true, false); err != nil {
		return fmt.Errorf("xsk: map completion ring: %w", err)
	}
	if s.rx, err = mapRing(s.fd, unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RingSize, false, false); err != nil {
		return fmt.Errorf("xsk: map rx ring: %w", err)
	}
	if s.tx, err = mapRing(s.fd, unix.XDP_PGOFF_TX_RING, off.Tx, cfg.RingSize, false, true); err != nil {
		return fmt.Errorf("xsk: map tx ring: %w", err)
	}
	sa := &unix.SockaddrXDP{Flags: bindFlags, Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if err := unix.Bind(s.fd, sa); err != nil {
		return fmt.Errorf("xsk: bind to ifindex %d queue %d (%s): %w", cfg.Ifindex, cfg.Queue, cfg.Mode, err)
	}
	opts, err := unix.GetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return fmt.Errorf("xsk: get options (XDP_OPTIONS): %w", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	return nil
}

// sockopt is setsockopt or getsockopt (call) at level SOL_XDP with a
// struct argument, which x/sys/unix has no helper for.
func sockopt(call uintptr, fd, opt int, p unsafe.Pointer, size uintptr) error {
	var errno unix.Errno
	if call == unix.SYS_GETSOCKOPT {
		n := uint32(size)
		_, _, errno = unix.Syscall6(call, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	} else {
		_, _, errno = unix.Syscall6(call, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// FD is the socket's descriptor, for poll(2) and the XSKMAP; -1 once closed.
func (s *Socket) FD() int {
	if s.closed {
		return -1
	}
	return s.fd
}

// ZeroCopy says whether the kernel bound the socket in zero-copy mode
// (XDP_OPTIONS_ZEROCOPY).
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// Fill gives the kernel chunks to receive into: each addr is the UMEM offset
// where a chunk starts, and a frame will land at addr+Config.Headroom+256.
// It returns how many fit in the fill ring. The kernel silently discards
// an addr whose chunk is not wholly inside the UMEM.
func (s *Socket) Fill(addrs []uint64) int {
	r := s.fill
	n := r.free(len(addrs))
	for i, a := range addrs[:n] {
		r.addrs[(r.cachedProd+uint32(i))&r.mask] = a
	}
	r.submit(n)
	return n
}

// FillFree is the number of free fill-ring slots.
func (s *Socket) FillFree() int { return s.fill.free(int(s.fill.size)) }

// Receive takes up to len(descs) received frames off the rx ring.
func (s *Socket) Receive(descs []Desc) int {
	r := s.rx
	n := r.available(len(descs))
	for i := range descs[:n] {
		d := r.descs[(r.cachedCons+uint32(i))&r.mask]
		// Unaligned mode: the low 48 bits are the chunk's address, the
		// top 16 the frame's offset in it.
		descs[i] = Desc{Addr: d.Addr&(1<<48-1) + d.Addr>>48, Len: d.Len}
	}
	r.release(n)
	return n
}

// Transmit puts frames on the tx ring and returns how many fit, then kicks
// the kernel if it asked to be (XDP_RING_NEED_WAKEUP), which in copy mode
// is always: there the kick is what transmits. The kick's errors are not
// reported; KickTx reports them.
func (s *Socket) Transmit(descs []Desc) int {
	r := s.tx
	n := r.free(len(descs))
	for i, d := range descs[:n] {
		r.descs[(r.cachedProd+uint32(i))&r.mask] = unix.XDPDesc{Addr: d.Addr, Len: d.Len}
		if d.Addr&1 != 0 && !s.zeroCopy {
			s.oddTx[d.Addr]++
		}
	}
	r.submit(n)
	if n > 0 {
		_ = s.KickTx()
	}
	return n
}

// KickTx wakes the kernel's transmit (sendto with MSG_DONTWAIT). In
// zero-copy mode it does so only if the tx ring has XDP_RING_NEED_WAKEUP
// set, and the driver then drains the ring. In copy mode each sendto is
// the transmit, on this thread: it stops after 32 frames, and at an
// invalid descriptor, so KickTx calls again while frames are left and the
// kernel keeps taking them. It stops when the kernel cannot take more (a
// full completion ring, a busy device): call it again after Completed.
// EAGAIN, EBUSY and ENOBUFS are not errors.
func (s *Socket) KickTx() error {
	r := s.tx
	if s.zeroCopy {
		if atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP == 0 {
			return nil
		}
		return benign(unix.Sendto(s.fd, nil, unix.MSG_DONTWAIT, nil), "tx wakeup (sendto)")
	}
	pending := r.cachedProd - atomic.LoadUint32(r.consumer)
	if pending == 0 {
		return nil
	}
	// Each call consumes at least one entry unless the kernel is
	// blocked, so pending+1 calls are enough.
	for tries := pending + 1; tries > 0; tries-- {
		before := atomic.LoadUint32(r.consumer)
		err := unix.Sendto(s.fd, nil, unix.MSG_DONTWAIT, nil)
		after := atomic.LoadUint32(r.consumer)
		switch {
		case after == r.cachedProd:
			return benign(err, "tx (sendto)") // all taken
		case err == nil || err == unix.EBUSY:
			// Stopped at an invalid descriptor (the consumer index
			// is published on the next call), or a frame the
			// device dropped.
		case err == unix.EAGAIN && after != before:
			// Out of budget with frames left.
		default:
			return benign(err, "tx (sendto)")
		}
	}
	return nil
}

// benign wraps err unless it is nil or one that only means "not now".
func benign(err error, step string) error {
	if err == nil || err == unix.EAGAIN || err == unix.EBUSY || err == unix.ENOBUFS {
		return nil
	}
	return fmt.Errorf("xsk: %s: %w", step, err)
}

// Completed takes up to len(addrs) transmitted frames' addresses, as they
// were submitted, off the completion ring.
func (s *Socket) Completed(addrs []uint64) int {
	r := s.comp
	n := r.available(len(addrs))
	for i := range addrs[:n] {
		a := r.addrs[(r.cachedCons+uint32(i))&r.mask]
		if len(s.oddTx) > 0 {
			a = s.oddAddr(a)
		}
		addrs[i] = a
	}
	r.release(n)
	return n
}

// oddAddr is completion address a as it was submitted. In copy mode the
// kernel keeps a frame's address for its completion in the skb's
// destructor_arg tagged with bit 0 (since the fix for immature completion
// descriptors, in 6.18 and stable kernels), so an odd address comes back
// with bit 0 cleared. Transmit counts the odd addresses in flight and this
// puts the bit back. Two frames in flight at a and a|1, which would
// overlap, are told apart by neither.
func (s *Socket) oddAddr(a uint64) uint64 {
	odd := a | 1
	switch n := s.oddTx[odd]; n {
	case 0:
		return a
	case 1:
		delete(s.oddTx, odd)
	default:
		s.oddTx[odd] = n - 1
	}
	return odd
}

// WakeRx kicks the kernel's receive (recvfrom with MSG_DONTWAIT) if the
// fill ring has XDP_RING_NEED_WAKEUP set, as a zero-copy driver does when
// it ran out of fill entries. Copy mode never sets it.
func (s *Socket) WakeRx() error {
	if atomic.LoadUint32(s.fill.flags)&unix.XDP_RING_NEED_WAKEUP == 0 {
		return nil
	}
	_, _, err := unix.Recvfrom(s.fd, nil, unix.MSG_DONTWAIT)
	return benign(err, "rx wakeup (recvfrom)")
}

// Stats reads the socket's XDP_STATISTICS.
func (s *Socket) Stats() (Stats, error) {
	var st unix.XDPStatistics
	if err := sockopt(unix.SYS_GETSOCKOPT, s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return Stats{}, fmt.Errorf("xsk: get statistics (XDP_STATISTICS): %w", err)
	}
	return Stats{
		RxDropped:       st.Rx_dropped,
		RxInvalidDescs:  st.Rx_invalid_descs,
		TxInvalidDescs:  st.Tx_invalid_descs,
		RxRingFull:      st.Rx_ring_full,
		RxFillRingEmpty: st.Rx_fill_ring_empty_descs,
		TxRingEmpty:     st.Tx_ring_empty_descs,
	}, nil
}

// Close unmaps the rings and closes the socket, which also takes it out of
// any XSKMAP. It is idempotent.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, r := range []*ring{s.fill, s.comp, s.rx, s.tx} {
		if err := r.unmap(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unix.Close(s.fd); err != nil {
		errs = append(errs, fmt.Errorf("xsk: close: %w", err))
	}
	return errors.Join(errs...)
}

// ring is one of the four mmapped rings. Its producer and consumer indices
// are free-running u32s shared with the kernel; an entry is at index&mask.
// Like libxdp, the side this process owns is kept in a cached copy and
// published with a release store, and the kernel's side is read with an
// acquire load only when the cached view runs out.
type ring struct {
	mem                []byte
	producer, consumer *uint32
	flags              *uint32
	size, mask         uint32

	// For a ring this process produces (fill, tx): cachedProd is its
	// producer index and cachedCons the kernel's consumer index plus
	// size, so cachedCons-cachedProd is the free space. For a ring it
	// consumes (rx, completion): cachedCons is its consumer index and
	// cachedProd the kernel's producer as last read.
	cachedProd, cachedCons uint32

	addrs []uint64       // fill and completion entries
	descs []unix.XDPDesc // rx and tx entries
}

// mapRing maps the ring at page offset pgoff, laid out as off says, with
// n entries of u64 addresses (umem) or xdp_desc, and initialises the
// cached indices for a ring this process produces (prod) or consumes.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, umem, prod bool) (*ring, error) {
	entry := unsafe.Sizeof(unix.XDPDesc{})
	if umem {
		entry = unsafe.Sizeof(uint64(0))
	}
	length := off.Desc + uint64(n)*uint64(entry)
	mem, err := unix.Mmap(fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	r := &ring{mem: mem, size: n, mask: n - 1}
	if r.producer, err = r.u32(off.Producer); err == nil {
		if r.consumer, err = r.u32(off.Consumer); err == nil {
			r.flags, err = r.u32(off.Flags)
		}
	}
	if err == nil && (off.Desc%uint64(entry) != 0 || length > uint64(len(mem))) {
		err = fmt.Errorf("descriptors at %d (%d of %d bytes) outside the %d-byte mapping", off.Desc, n, entry, len(mem))
	}
	if err != nil {
		unix.Munmap(mem)
		return nil, err
	}
	// The mapping is the kernel's ring, not Go memory: view its
	// descriptor array as a slice. Bounds and alignment checked above;
	// mmap returns a page-aligned base.
	base := unsafe.Pointer(&mem[off.Desc])
	if umem {
		r.addrs = unsafe.Slice((*uint64)(base), n)
	} else {
		r.descs = unsafe.Slice((*unix.XDPDesc)(base), n)
	}
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
	if prod {
		r.cachedCons += n
	}
	return r, nil
}

// u32 is the shared u32 at byte offset off of the mapping, for sync/atomic.
// The offset comes from the kernel (XDP_MMAP_OFFSETS): it is checked to be
// inside the mapping and 4-byte aligned (the base is page-aligned).
func (r *ring) u32(off uint64) (*uint32, error) {
	if off%4 != 0 || off+4 > uint64(len(r.mem)) {
		return nil, fmt.Errorf("index at %d outside the %d-byte mapping", off, len(r.mem))
	}
	return (*uint32)(unsafe.Pointer(&r.mem[off])), nil
}

// free is how many of want entries can be produced now (at most want);
// it reads the kernel's consumer only if the cached view has too few.
func (r *ring) free(want int) int {
	free := r.cachedCons - r.cachedProd
	if int64(free) < int64(want) {
		r.cachedCons = atomic.LoadUint32(r.consumer) + r.size // acquire
		free = r.cachedCons - r.cachedProd
	}
	return int(min(int64(free), int64(want)))
}

// submit publishes n entries written after the producer index.
func (r *ring) submit(n int) {
	if n == 0 {
		return
	}
	r.cachedProd += uint32(n)
	atomic.StoreUint32(r.producer, r.cachedProd) // release: entries before index
}

// available is how many of want entries can be consumed now (at most
// want); it reads the kernel's producer only if the cached view has too
// few.
func (r *ring) available(want int) int {
	avail := r.cachedProd - r.cachedCons
	if int64(avail) < int64(want) {
		r.cachedProd = atomic.LoadUint32(r.producer) // acquire: entries after index
		avail = r.cachedProd - r.cachedCons
	}
	return int(min(int64(avail), int64(want)))
}

// release hands n consumed entries back to the kernel.
func (r *ring) release(n int) {
	if n == 0 {
		return
	}
	r.cachedCons += uint32(n)
	atomic.StoreUint32(r.consumer, r.cachedCons) // release: done reading entries
}

// unmap unmaps the ring; a nil ring (setup failed before it) is fine.
func (r *ring) unmap() error {
	if r == nil || r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	*r = ring{}
	if err != nil {
		return fmt.Errorf("xsk: unmap ring: %w", err)
	}
	return nil
}
