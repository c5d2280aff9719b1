package zerocopy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Config configures a Model.
type Config struct {
	MAC  [6]byte
	Mem  *guestmem.Memory // guest RAM: the only memory guest buffers may name
	Port Port             // host side: received frames come from it, transmitted ones go to it
	// RxQueueSize is the virtio rx queue size (default 256). It sizes the
	// default pin limit and the 82599 rx ring.
	RxQueueSize int
	Pin         PinLimit // zero: DefaultPinLimit(RxQueueSize)
	// MTU of the link (default 1500, max 16000). Above 1500 the 82599 runs
	// with jumbo frames and a frame spans more mergeable buffers.
	MTU int
	Log *slog.Logger
}

// Model is the zero-copy NIC model: an emulated 82599 that the VMM drives
// like a driver would, whose rx descriptors point straight at the guest's
// virtio-net receive buffers. It implements nic.Model.
type Model struct {
	cfg   Config
	log   *slog.Logger
	dev   *ixgbeemu.Device
	space *guestmem.Memory
	priv  []byte
	wire  portWire

	rxSize, txSize       uint32 // descriptors per ring
	rxRing, txRing, txBB uint64 // bus addresses in the private region
	txHdr                uint64 // TSO header scratch in the private region

	mu      sync.Mutex
	ncfg    nic.Config
	sink    nic.Sink
	layout  GuestLayout
	req     Requirements
	need    uint32 // descriptors a maximum-size frame needs
	running bool
	zcq     postQueue // zero-copy lane, in posting order
	lay     []uint16  // for each descriptor laid out from rxHead: its zcq entry
	rxHead  uint32    // the NIC's next descriptor (= RDH)
	bounce  []posted  // fallback lane, in posting order
	seq     uint64
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	segs    []Segment // PostRx scratch

	// Reader-goroutine scratch.
	hdr       []byte
	iov       [][]byte
	bounceBuf []byte
	used      []nic.Used
	lens      []int
	batch     nic.RxBatch // frames read, not yet reported

	txMu      sync.Mutex
	txTail    uint32
	txHdrLen  int // negotiated header length, for the tx path (under txMu)
	txIDs     []uint16
	txPieces  []txPiece // txOne scratch (under txMu)
	txFailing bool      // the last send failed (under txMu)
	txCsum    bool      // the guest negotiated CSUM / HOST_TSO4|6 (under txMu)
	txTSO     bool
	txRest    []txPiece

	pin pinAccount
	cnt counters

	manual bool // tests: no reader goroutine, rxOnce is called directly
}

// posted is one guest buffer lent to the model.
type posted struct {
	buf  nic.Buf
	dec  Decision
	size uint64 // bytes charged to the pin account
	seq  uint64 // posting order, for Stop
}

const txRingSize = 256

// NewModel creates the model and its 82599. It owns no host resources
// besides memory; Close releases the device timers.
func NewModel(cfg Config) (*Model, error) {
	if cfg.Mem == nil || cfg.Port == nil {
		return nil, errors.New("zerocopy: Config.Mem and Config.Port are required")
	}
	if cfg.RxQueueSize <= 0 {
		cfg.RxQueueSize = defaultRing
	}
	if cfg.Pin == (PinLimit{}) {
		cfg.Pin = DefaultPinLimit(cfg.RxQueueSize)
	}
	if cfg.Pin.Descs <= 0 || cfg.Pin.Descs > 32767 || cfg.Pin.Bytes == 0 {
		return nil, fmt.Errorf("zerocopy: pin limit %+v out of range", cfg.Pin)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 68 || cfg.MTU > 16000 {
		return nil, fmt.Errorf("zerocopy: MTU %d out of range 68..16000", cfg.MTU)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Model{cfg: cfg, log: cfg.Log, txSize: txRingSize}
	// One descriptor more than the cap allows buffers: a full ring keeps one
	// slot empty (RDH == RDT means empty); RDLEN is in 128-byte units.
	m.rxSize = uint32(cfg.Pin.Descs+1+7) &^ 7
	rxBytes := alignUp(uint64(m.rxSize)*descBytes, pageSize)
	txBytes := alignUp(uint64(m.txSize)*descBytes, pageSize)
	m.rxRing, m.txRing, m.txBB = PrivateBase, PrivateBase+rxBytes, PrivateBase+rxBytes+txBytes
	m.txHdr = m.txBB + alignUp(gsoMaxFrame, pageSize)
	var err error
	m.space, m.priv, err = NewSpace(cfg.Mem, int(m.txHdr-PrivateBase+txHdrArea))
	if err != nil {
		return nil, err
	}
	m.wire.port = cfg.Port
	m.dev, err = ixgbeemu.New(ixgbeemu.Config{MAC: cfg.MAC, Queues: 1, DMA: m.space, Wire: &m.wire, SkipRxChecksum: true})
	if err != nil {
		return nil, fmt.Errorf("zerocopy: %w", err)
	}
	m.zcq.init(cfg.Pin.Descs)
	m.pin.limit = cfg.Pin
	m.bounceBuf = make([]byte, gsoMaxFrame)
	return m, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// Name implements nic.Model.
func (m *Model) Name() string { return "ixgbe-zerocopy" }

// Capabilities implements nic.Model. Checksum and TCP segmentation
// offloads are offered both ways: on transmit they become 82599 context
// descriptors, which the 82599 hands on to the tap (offload.go); on
// receive the tap's vnet header travels with the frame to the guest.
func (m *Model) Capabilities() nic.Capabilities { return nic.Capabilities{Csum: true, TSO: true} }

// Device exposes the 82599 (for its statistics registers and tests).
func (m *Model) Device() *ixgbeemu.Device { return m.dev }

// Close releases the device. The model must be stopped.
func (m *Model) Close() { m.dev.Close() }

// Start implements nic.Model: it resets and programs the 82599 for the
// negotiated layout and starts the receive goroutine.
func (m *Model) Start(cfg nic.Config, sink nic.Sink) error {
	if cfg.HdrLen != 10 && cfg.HdrLen != 12 && cfg.HdrLen != 20 {
		return fmt.Errorf("zerocopy: virtio_net_hdr length %d", cfg.HdrLen)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		// Before touching the port: the running reader's frames depend on
		// its header length.
		return errors.New("zerocopy: already started")
	}
	if s, ok := m.cfg.Port.(HdrLenSetter); ok {
		if err := s.SetHdrLen(cfg.HdrLen); err != nil {
			return fmt.Errorf("zerocopy: port header length: %w", err)
		}
	}
	if s, ok := m.cfg.Port.(OffloadSetter); ok {
		if err := s.SetOffload(cfg); err != nil {
			return fmt.Errorf("zerocopy: port offloads: %w", err)
		}
	}
	m.ncfg, m.sink = cfg, sink
	m.layout = LayoutFromConfig(cfg, m.cfg.MTU)
	m.req = IxgbeRequirements(m.layout)
	// RxTarget reserves enough descriptors for the largest frame.
	m.need = (m.layout.MaxFrame + m.req.MinBuf - 1) / m.req.MinBuf
	if int(m.need) > m.pin.limit.Descs {
		return fmt.Errorf("zerocopy: pin limit of %d buffers is below the %d a frame needs", m.pin.limit.Descs, m.need)
	}
	m.hdr = make([]byte, cfg.HdrLen)
	m.wire.setHdrLen(cfg.HdrLen)
	if err := m.program(); err != nil {
		return err
	}
	m.wake, m.stop, m.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	m.running = true
	if m.manual {
		close(m.done)
	} else {
		go m.reader(m.stop, m.done)
	}
	return nil
}

// program brings the 82599 up the way ixgbe_configure_rx_ring /
// ixgbe_configure_tx_ring do (datasheet §4.6.7, §4.6.8), on queue 0, with
// the rings in the private region. Called with m.mu held.
func (m *Model) program() error {
	d := m.dev
	d.WriteReg(regCTRL, ctrlRst) // §4.2.1.6.1 software reset; self-clearing
	clear(m.priv)
	m.rxHead = 0
	// The guest filters addresses itself, as behind a tap: promiscuous.
	d.WriteReg(regFCTRL, fctrlUPE|fctrlMPE|fctrlBAM)
	// Frame size limit (§8.2.3.22.13 MAXFRS.MFS counts the FCS; the 82599
	// adds 4 bytes for a VLAN tag): MTU + Ethernet header + FCS, or, when
	// the guest takes GSO frames, the largest the 16-bit field holds (the
	// tap hands over coalesced frames, as the 82599's RSC would).
	mfs := uint32(m.cfg.MTU + 14 + 4)
	if m.ncfg.GuestTSO4 || m.ncfg.GuestTSO6 {
		mfs = min(m.layout.MaxFrame+4, 0xFFFF)
	}
	d.WriteReg(regHLREG0, d.ReadReg(regHLREG0)|hlreg0JumboEn)
	d.WriteReg(regMAXFRS, mfs<<16)
	d.WriteReg(regRDBAL, uint32(m.rxRing))
	d.WriteReg(regRDBAH, uint32(m.rxRing>>32))
	d.WriteReg(regRDLEN, m.rxSize*descBytes)
	d.WriteReg(regRDH, 0)
	d.WriteReg(regRDT, 0)
	d.WriteReg(regSRRCTL, m.req.MinBuf/bsizeUnit|srrctlOneBuf)
	d.WriteReg(regRXDCTL, xdctlEnable)
	if d.ReadReg(regRXDCTL)&xdctlEnable == 0 {
		return errors.New("zerocopy: 82599 rx queue 0 did not enable")
	}
	d.WriteReg(regRXCTRL, rxctrlRXEN)

	m.txMu.Lock()
	defer m.txMu.Unlock()
	d.WriteReg(regDMATXCTL, dmatxctlTE)
	d.WriteReg(regTDBAL, uint32(m.txRing))
	d.WriteReg(regTDBAH, uint32(m.txRing>>32))
	d.WriteReg(regTDLEN, m.txSize*descBytes)
	d.WriteReg(regTDH, 0)
	d.WriteReg(regTDT, 0)
	m.txTail, m.txHdrLen = 0, m.ncfg.HdrLen
	m.txCsum, m.txTSO = m.ncfg.HostCsum, m.ncfg.HostTSO4 || m.ncfg.HostTSO6
	d.WriteReg(regTXDCTL, xdctlEnable)
	if d.ReadReg(regTXDCTL)&xdctlEnable == 0 {
		return errors.New("zerocopy: 82599 tx queue 0 did not enable")
	}
	return nil
}

// ring returns descriptor idx of the ring at bus address base.
func (m *Model) ring(base uint64, idx uint32) []byte {
	off := base - PrivateBase + uint64(idx)*descBytes
	return m.priv[off : off+descBytes : off+descBytes]
}

// PostRx implements nic.Model. Each buffer is classified by Decide; a
// zero-copy one joins the zero-copy lane, whose buffers the 82599's rx
// descriptors point into, a fallback one waits in the bounce lane. Buffers are
// accepted in order while the pin cap allows; the rest stay with the device.
func (m *Model) PostRx(bufs []nic.Buf) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running {
		return 0
	}
	n := 0
	for ; n < len(bufs); n++ {
		b := &bufs[n]
		dec := m.decide(b)
		if dec.Kind != Fallback && m.zcq.full() {
			break // cannot happen within the cap, kept as a guard
		}
		size := uint64(b.Len())
		if !m.pin.take(size) {
			break
		}
		m.cnt.decided(dec)
		p := posted{buf: *b, dec: dec, size: size, seq: m.seq}
		m.seq++
		if dec.Kind == Fallback {
			m.bounce = append(m.bounce, p)
			continue
		}
		// Descriptors are laid out over the zero-copy buffers when a frame
		// is about to arrive (layoutRx), not here: how many a buffer gets
		// depends on whether it starts a frame.
		m.zcq.push(p)
	}
	if left := len(bufs) - n; left > 0 {
		m.pin.refusedBuf.Add(uint64(left))
	}
	if n > 0 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	return n
}

func (m *Model) decide(b *nic.Buf) Decision {
	if len(b.GPAs) != len(b.Segs) {
		return fallback(ReasonNoGPA)
	}
	m.segs = m.segs[:0]
	for i, s := range b.Segs {
		if uint64(len(s)) > 1<<32-1 {
			return fallback(ReasonNotInRAM)
		}
		m.segs = append(m.segs, Segment{GPA: b.GPAs[i], Len: uint32(len(s))})
	}
	return Decide(m.req, m.layout, Chain{Segs: m.segs, RAM: m.cfg.Mem})
}

// Stop implements nic.Model: it stops the reader, disables the rx queue and
// hands back every buffer it holds, in posting order.
func (m *Model) Stop() []nic.Buf {
	m.mu.Lock()
	if !m.running {
		m.mu.Unlock()
		return nil
	}
	m.running = false
	close(m.stop)
	done := m.done
	m.mu.Unlock()
	m.cfg.Port.Interrupt()
	<-done

	m.mu.Lock()
	defer m.mu.Unlock()
	m.dev.WriteReg(regRXDCTL, 0)
	m.dev.WriteReg(regRXCTRL, 0)
	var out []nic.Buf
	i, j := 0, 0
	for i < m.zcq.len() || j < len(m.bounce) {
		if j == len(m.bounce) || (i < m.zcq.len() && m.zcq.at(i).seq < m.bounce[j].seq) {
			out = append(out, m.zcq.at(i).buf)
			i++
			continue
		}
		out = append(out, m.bounce[j].buf)
		j++
	}
	m.zcq.pop(m.zcq.len())
	m.rxHead, m.bounce = 0, nil
	m.pin.reset()
	return out
}

// postQueue is a fixed-capacity FIFO of posted buffers (the pin cap bounds
// how many there can be), so taking a frame's buffers off the front moves
// nothing.
type postQueue struct {
	q       []posted
	head, n int
}

func (p *postQueue) init(capacity int) { p.q, p.head, p.n = make([]posted, capacity), 0, 0 }
func (p *postQueue) len() int          { return p.n }
func (p *postQueue) full() bool        { return p.n == len(p.q) }

// at returns entry i from the front (i < len()).
func (p *postQueue) at(i int) *posted { return &p.q[(p.head+i)%len(p.q)] }

func (p *postQueue) push(x posted) {
	p.q[(p.head+p.n)%len(p.q)] = x
	p.n++
}

// pop drops k entries from the front.
func (p *postQueue) pop(k int) {
	for range k {
		p.q[p.head] = posted{}
		p.head = (p.head + 1) % len(p.q)
	}
	p.n -= k
}

// DebugState implements nic.Debugger.
func (m *Model) DebugState() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("zero-copy: running=%v, zero-copy lane %d buffers, bounce lane %d, rx head %d of %d, a frame needs %d descriptors",
		m.running, m.zcq.len(), len(m.bounce), m.rxHead, m.rxSize, m.need)
}

// SetQueueEnabled implements nic.QueueSwitch when the port serves one
// queue of a multi-queue tap (TapPort); other ports have nothing to switch.
func (m *Model) SetQueueEnabled(on bool) error {
	if s, ok := m.cfg.Port.(nic.QueueSwitch); ok {
		return s.SetQueueEnabled(on)
	}
	return nil
}
