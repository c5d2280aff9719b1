// Package ixgbeemu is a device model of the Intel 82599 10 GbE controller
// (datasheet 331520, "Intel 82599 10 GbE Controller Datasheet"), complete
// enough for the stock Linux ixgbe driver (device id 0x10F7, KX4 backplane)
// and for in-VMM use as a zero-copy receive/transmit engine.
//
// All descriptor-ring and packet-buffer accesses go through a DMA interface
// (guest RAM), never raw pointers, and every guest-controlled value is
// validated: a hostile ring configuration drops frames and bumps an error
// counter, it never panics.
//
// # Locking
//
// Three kinds of locks, always taken in this order:
//
//	d.mu (RWMutex, the global register file: filters, MAC, link, control)
//	  → q.mu (one per rx queue and one per tx queue; rings and queue registers)
//	    → d.imu (the interrupt block: EICR/EIMS/…/EITR timers)
//	      → IRQ.Trigger / IRQ.SetINTx (called with d.imu held; they must
//	        not call back into the Device)
//
// The rx and tx data paths hold d.mu for reading only, so queues run in
// parallel; register writes to global registers take it exclusively. MAC
// loopback (HLREG0.LPBK) is the one path holding two queue locks: a tx
// queue's, then receive queue 0's.
// Statistics counters are atomics and need no lock.
package ixgbeemu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// DMA is the device's view of the address space it bus-masters into.
type DMA interface {
	// Slice returns n bytes at addr as a writable/readable view (no copy),
	// or an error if outside the address space. The space never changes
	// under a device, so a view stays valid (the model caches ring views).
	Slice(addr, n uint64) ([]byte, error)
}

// Wire is the network port.
type Wire interface {
	// Send is called for each transmitted frame; segs are views of DMA
	// memory (the frame is their concatenation) or of device scratch
	// buffers. They are only valid during the call.
	Send(segs [][]byte) error
}

// IRQ delivers interrupts. Both methods are called with the interrupt
// lock held and must not call back into the Device.
type IRQ interface {
	// Trigger sends the MSI-X message of vector (GPIE.MSIX_MODE set).
	Trigger(vector int) error
	// SetINTx sets the level of the single legacy interrupt (GPIE.MSIX_MODE
	// clear). An MSI implementation sends its message on a false→true edge.
	SetINTx(asserted bool)
}

// Config configures a Device.
type Config struct {
	MAC    [6]byte
	Queues int // rx/tx queue pairs that can be enabled, 1..128; default 64
	DMA    DMA
	Wire   Wire // may be nil: transmitted frames are counted and discarded
	IRQ    IRQ  // may be nil: interrupts are not delivered
	// RxNotify, if set, is called whenever the receive state of a queue
	// (-1: possibly every queue) may have changed: the driver posted
	// descriptors (RDT), (re)configured or enabled a queue or the receive
	// unit, or reset the device. A port reader waiting in RxNoRoom uses it
	// as its wake-up. It is called on the vCPU thread of the register
	// write, without device locks held, and must not block.
	RxNotify func(queue int)
	// SkipRxChecksum: the wire's frames come from a host kernel that has
	// already checked their checksums or marked them partial (a tap's
	// vnet header says which, and the VMM passes that on), so the model
	// does not read every payload byte to verify them again; write-backs
	// then carry the packet type but no checksum status (§7.1.11).
	SkipRxChecksum bool
}

// MaxQueues is the number of rx and tx queues of the 82599 (§1.3).
const MaxQueues = 128

// Errors returned by the data-path entry points.
var (
	ErrBadQueue      = errors.New("ixgbe: no such queue")
	ErrRxDisabled    = errors.New("ixgbe: receive disabled")
	ErrFiltered      = errors.New("ixgbe: frame rejected by address filter")
	ErrOversize      = errors.New("ixgbe: frame exceeds max frame size")
	ErrUndersize     = errors.New("ixgbe: frame shorter than an Ethernet header")
	ErrNoDescriptors = errors.New("ixgbe: rx ring has no free descriptors")
	ErrBadRing       = errors.New("ixgbe: invalid ring configuration")
	ErrDMA           = errors.New("ixgbe: DMA outside the address space")
	ErrStale         = errors.New("ixgbe: rx reservation no longer valid")
)

// Device is one 82599 function.
type Device struct {
	cfg  Config
	dma  DMA
	wire Wire
	irq  IRQ

	mu       sync.RWMutex
	store    []uint32 // plain register backing store, indexed by offset/4
	eeprom   []uint16
	linkUp   bool
	gioDis   bool
	rarValid [2]uint64 // RAH(n).AV cache for the rx filter

	rxq [MaxQueues]*rxQueue
	txq [MaxQueues]*txQueue

	imu sync.Mutex
	ic  intrState

	cnt    counters
	closed atomic.Bool
}

// New creates a device in its power-on state with the link up.
func New(cfg Config) (*Device, error) {
	if cfg.DMA == nil {
		return nil, fmt.Errorf("ixgbe: Config.DMA is required")
	}
	if cfg.Queues == 0 {
		cfg.Queues = 64
	}
	if cfg.Queues < 1 || cfg.Queues > MaxQueues {
		return nil, fmt.Errorf("ixgbe: Queues %d out of range 1..%d", cfg.Queues, MaxQueues)
	}
	if cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("ixgbe: MAC %x is multicast", cfg.MAC)
	}
	d := &Device{cfg: cfg, dma: cfg.DMA, wire: cfg.Wire, irq: cfg.IRQ, linkUp: true}
	d.store = make([]uint32, BAR0Size/4)
	d.eeprom = buildEEPROM(cfg.MAC)
	for i := range d.rxq {
		d.rxq[i] = &rxQueue{idx: i}
		d.txq[i] = &txQueue{idx: i}
	}
	d.cnt.init()
	d.ic.init(d)
	d.reset()
	return d, nil
}

// Close stops the interrupt moderation timers.
func (d *Device) Close() {
	d.closed.Store(true)
	d.imu.Lock()
	d.ic.stopTimers()
	d.imu.Unlock()
}

// MAC returns the configured (permanent) MAC address.
func (d *Device) MAC() [6]byte { return d.cfg.MAC }

// Queues returns the number of usable queue pairs.
func (d *Device) Queues() int { return d.cfg.Queues }

// EEPROM returns a copy of the EEPROM image (words).
func (d *Device) EEPROM() []uint16 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]uint16(nil), d.eeprom...)
}

// reset puts every register back to its datasheet default (§4.2.1 "Reset
// operation": a software reset via CTRL.RST resets the MAC, DMA and all
// registers except PCI config and the EEPROM-loaded fields, then re-loads
// the EEPROM; the MAC is re-read into RAL/RAH(0)).
func (d *Device) reset() {
	d.mu.Lock()
	for i := range d.rxq {
		d.rxq[i].mu.Lock()
		d.txq[i].mu.Lock()
	}
	d.imu.Lock()

	clear(d.store)
	s := d.store
	s[regCTRL/4] = 0
	s[regCTRLEXT/4] = 0
	s[regEEC/4] = eepromSizeField << eecSizeShift
	s[regFWSM/4] = fwsmFWVal
	s[regAUTOC/4] = autocDefault
	s[regHLREG0/4] = 0x2FFF // §8.2.3.22.8 default: TXCRCEN, RXCRCSTRP, TXPADEN, …
	s[regMAXFRS/4] = 1518 << 16
	s[regRDRXCTL/4] = 0x00000080 // CRCStrip-consistent default
	s[regFCTRL/4] = 0
	s[regDTXTCPFLGL/4] = 0x0FF6<<16 | 0x0FF6 // §8.2.3.9.12: first/middle segment TCP flag masks
	s[regDTXTCPFLGH/4] = 0x0F7F              // last segment mask
	s[regRXCSUM/4] = 0
	// Packet buffer sizes (RXPBSIZE §8.2.3.8, TXPBSIZE §8.2.3.9 defaults):
	// all 512 KB / 160 KB in buffer 0 without DCB. ixgbe_sw_init computes
	// its flow-control watermarks from RXPBSIZE(0) before configuring the
	// buffers and warns "Packet Buffer(0) can not provide enough headroom"
	// if it reads 0.
	s[regRXPBSIZE/4] = 0x00080000
	s[regTXPBSIZE/4] = 0x000A0000
	d.gioDis = false
	d.rarValid = [2]uint64{}
	// RAL/RAH(0) are loaded from the EEPROM LAN core section (§8.2.3.7.9).
	mac := d.eepromMAC()
	s[regRAL/4] = uint32(mac[0]) | uint32(mac[1])<<8 | uint32(mac[2])<<16 | uint32(mac[3])<<24
	s[regRAL/4+1] = uint32(mac[4]) | uint32(mac[5])<<8 | rahAV
	d.rarValid[0] = 1

	for i := range d.rxq {
		d.rxq[i].reset()
		d.txq[i].reset()
	}
	d.ic.reset()
	d.cnt.clearRegs()

	d.imu.Unlock()
	for i := range d.rxq {
		d.txq[i].mu.Unlock()
		d.rxq[i].mu.Unlock()
	}
	d.mu.Unlock()
}

func (d *Device) eepromMAC() [6]byte {
	var m [6]byte
	for i := 0; i < 3; i++ {
		w := d.eeprom[eepromLANCore0+1+i]
		m[2*i], m[2*i+1] = byte(w), byte(w>>8)
	}
	return m
}

// SetLink changes the link state and raises EICR.LSC (§7.3.1, "Link Status
// Change" interrupt cause) on a change.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	changed := d.linkUp != up
	d.linkUp = up
	d.mu.Unlock()
	if changed {
		d.imu.Lock()
		d.ic.raiseOther(eicrLSC)
		d.imu.Unlock()
	}
}

// LinkUp reports the link state.
func (d *Device) LinkUp() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.linkUp
}

// Stats are cumulative counters for the VMM; unlike the statistics
// registers they are not cleared by reads or by CTRL.RST.
type Stats struct {
	RxFrames, RxBytes uint64
	RxMissed          uint64 // no free descriptor (empty ring)
	RxOversize        uint64 // longer than MAXFRS / 1518
	RxUndersize       uint64
	RxFiltered        uint64 // rejected by the address filter
	RxDisabled        uint64 // arrived while RXCTRL.RXEN or the queue was off
	RxErrors          uint64 // bad ring configuration or DMA error
	TxFrames, TxBytes uint64 // frames handed to the Wire (TSO segments counted individually)
	TxErrors          uint64 // bad descriptors, DMA errors, Wire errors
}

// Stats returns the cumulative counters.
func (d *Device) Stats() Stats {
	c := &d.cnt
	return Stats{
		RxFrames:    c.gprc.total(),
		RxBytes:     c.gorc.total(),
		RxMissed:    c.mpc[0].total(),
		RxOversize:  c.roc.total(),
		RxUndersize: c.ruc.total(),
		RxFiltered:  c.rxFiltered.Load(),
		RxDisabled:  c.rxDisabled.Load(),
		RxErrors:    c.rxErrors.Load(),
		TxFrames:    c.gptc.total(),
		TxBytes:     c.gotc.total(),
		TxErrors:    c.txErrors.Load(),
	}
}
