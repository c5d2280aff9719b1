package legacy

import (
	"io"
	"log/slog"
	"sync"
)

// 16550A register offsets (PC16550D datasheet, Table II). DLL/DLM overlay
// RBR/THR and IER while LCR.DLAB is set.
const (
	regRBR = 0 // read: receiver buffer; write: THR
	regIER = 1
	regIIR = 2 // read: IIR; write: FCR
	regLCR = 3
	regMCR = 4
	regLSR = 5
	regMSR = 6
	regSCR = 7

	serialRegs = 8
)

// Register bits (PC16550D datasheet §8).
const (
	ierERBFI = 1 << 0 // received data available
	ierETBEI = 1 << 1 // transmitter holding register empty
	ierELSI  = 1 << 2 // receiver line status
	ierEDSSI = 1 << 3 // modem status
	ierMask  = 0x0F   // bits 7:4 always read 0

	iirNoInt   = 0x01
	iirMSI     = 0x00 // modem status (lowest priority)
	iirTHRI    = 0x02
	iirRDI     = 0x04
	iirRLSI    = 0x06 // receiver line status (highest priority)
	iirFIFOsOn = 0xC0 // bits 7:6 = 11 when FCR bit 0 is set

	fcrEnable  = 1 << 0
	fcrClearRX = 1 << 1
	fcrClearTX = 1 << 2

	lcrDLAB = 1 << 7

	mcrDTR  = 1 << 0
	mcrRTS  = 1 << 1
	mcrOUT1 = 1 << 2
	mcrOUT2 = 1 << 3
	mcrLoop = 1 << 4
	mcrMask = 0x1F

	lsrDR     = 1 << 0
	lsrOE     = 1 << 1
	lsrErrors = 0x1E // OE, PE, FE, BI: cleared by reading LSR
	lsrTHRE   = 1 << 5
	lsrTEMT   = 1 << 6

	msrDCTS = 1 << 0
	msrDDSR = 1 << 1
	msrTERI = 1 << 2
	msrDDCD = 1 << 3
	msrCTS  = 1 << 4
	msrDSR  = 1 << 5
	msrRI   = 1 << 6
	msrDCD  = 1 << 7
)

// SerialInputMax bounds the bytes queued by Input and not yet read by the
// guest. Beyond it input is dropped and LSR.OE reported, as a real UART
// does when its FIFO overflows.
const SerialInputMax = 4096

// Serial is a 16550A UART (e.g. COM1 at layout.PortCOM1, 8 ports).
//
// Transmission is instantaneous: a THR write goes straight to the output
// writer, so THRE and TEMT always read 1. The receive FIFO is the bounded
// Input queue; the FIFO trigger level is ignored and "data available" is
// reported as soon as one byte is queued, which Linux's 8250 driver handles
// (it drains the FIFO while LSR.DR is set).
//
// The interrupt output follows the PC wiring: the UART's INTR pin reaches
// the interrupt controller only while MCR.OUT2 is set, and in loopback mode
// OUT2 is forced inactive (datasheet §8.6), so the line is low then.
type Serial struct {
	mu  sync.Mutex
	out io.Writer
	irq IRQLine // nil: no interrupts, polled use only

	ier, lcr, mcr, scr, fcr byte
	dll, dlm                byte
	lsrErr                  byte // sticky LSR error bits (OE)
	msrDelta                byte // MSR bits 3:0
	thrPending              bool // THRE interrupt pending (see updateTHRI)
	rx                      []byte
	irqHigh                 bool
	outErr, irqErr          bool    // failure already logged
	txByte                  [1]byte // THR byte handed to out: no allocation per byte
}

// NewSerial returns a UART that writes transmitted bytes to out and drives
// irq (either may be nil). Writes to out happen with the device lock held,
// on the vCPU thread, one byte each: give it a ConsoleBuffer, not a file,
// so a slow reader does not stall the guest.
func NewSerial(out io.Writer, irq IRQLine) *Serial {
	if out == nil {
		out = io.Discard
	}
	// Divisor 12 = 9600 baud, the power-on value firmware usually leaves.
	return &Serial{out: out, irq: irq, dll: 12}
}

// Input queues bytes received from the host side (e.g. stdin) and raises
// the receive interrupt if enabled. It returns how many bytes were
// accepted: bytes beyond SerialInputMax pending are dropped with LSR.OE
// set. While the UART is in loopback mode its serial input is disconnected
// and all bytes are dropped.
func (s *Serial) Input(b []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mcr&mcrLoop != 0 {
		return 0
	}
	n := min(len(b), SerialInputMax-len(s.rx))
	s.rx = append(s.rx, b[:n]...)
	if n < len(b) {
		s.lsrErr |= lsrOE
		slog.Debug("serial: input overrun", "dropped", len(b)-n)
	}
	s.updateIRQ()
	return n
}

// Read implements bus.Device. Wider accesses are split into byte accesses
// to consecutive registers, as the ISA bus does; bytes beyond the eight
// registers read as 0xFF.
func (s *Serial) Read(offset uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		if offset+uint64(i) >= serialRegs || offset+uint64(i) < offset {
			data[i] = 0xFF
			continue
		}
		data[i] = s.readReg(byte(offset) + byte(i))
	}
	s.updateIRQ()
}

// Write implements bus.Device, splitting wide accesses like Read.
func (s *Serial) Write(offset uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range data {
		if offset+uint64(i) >= serialRegs || offset+uint64(i) < offset {
			continue
		}
		s.writeReg(byte(offset)+byte(i), v)
	}
	s.updateIRQ()
}

func (s *Serial) readReg(reg byte) byte {
	switch reg {
	case regRBR:
		if s.lcr&lcrDLAB != 0 {
			return s.dll
		}
		if len(s.rx) == 0 {
			return 0
		}
		b := s.rx[0]
		s.rx = s.rx[1:]
		if len(s.rx) == 0 {
			s.rx = nil // let the backing array go
		}
		return b
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			return s.dlm
		}
		return s.ier
	case regIIR:
		iir := s.iir()
		// Reading IIR while it reports THRE clears that source
		// (datasheet Table IV: "Reading the IIR register (if source of
		// interrupt)").
		if iir&0x0F == iirTHRI {
			s.thrPending = false
		}
		if s.fcr&fcrEnable != 0 {
			iir |= iirFIFOsOn
		}
		return iir
	case regLCR:
		return s.lcr
	case regMCR:
		return s.mcr
	case regLSR:
		lsr := s.lsr()
		s.lsrErr = 0
		return lsr
	case regMSR:
		msr := s.msrStatus() | s.msrDelta
		s.msrDelta = 0
		return msr
	case regSCR:
		return s.scr
	}
	return 0xFF
}

func (s *Serial) writeReg(reg, v byte) {
	switch reg {
	case regRBR:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			return
		}
		s.transmit(v)
	case regIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			return
		}
		old := s.ier
		s.ier = v & ierMask
		s.updateTHRI(old)
	case regIIR:
		s.writeFCR(v)
	case regLCR:
		s.lcr = v
	case regMCR:
		s.writeMCR(v & mcrMask)
	case regSCR:
		s.scr = v
	}
	// LSR and MSR writes are factory-test only: ignored.
}

// transmit sends one byte: out of the UART, or back into the receiver in
// loopback mode. The transmitter is instantly empty again, so an enabled
// THRE interrupt is raised anew (datasheet Table IV: THRE is cleared by
// writing THR and set when it empties).
func (s *Serial) transmit(v byte) {
	if s.mcr&mcrLoop != 0 {
		if len(s.rx) < SerialInputMax {
			s.rx = append(s.rx, v)
		} else {
			s.lsrErr |= lsrOE
		}
	} else {
		s.txByte[0] = v
		if _, err := s.out.Write(s.txByte[:]); err != nil && !s.outErr {
			s.outErr = true // log once; a dead console must not flood the log
			slog.Warn("serial: output write failed, dropping output", "err", err)
		}
	}
	s.thrPending = s.ier&ierETBEI != 0
}

// updateTHRI applies the 8250 behaviour Linux's THRE test relies on
// (serial8250_do_startup): setting IER.ETBEI while the THR is empty raises
// a THRE interrupt at once; clearing it drops a pending one.
func (s *Serial) updateTHRI(oldIER byte) {
	if (oldIER^s.ier)&ierETBEI == 0 {
		return
	}
	s.thrPending = s.ier&ierETBEI != 0 // THR is always empty
}

// writeFCR handles the FIFO control register. Changing the enable bit
// resets both FIFOs (datasheet §8.4); the TX FIFO is always empty here.
func (s *Serial) writeFCR(v byte) {
	if (v^s.fcr)&fcrEnable != 0 || v&fcrClearRX != 0 {
		s.rx = nil
	}
	s.fcr = v &^ (fcrClearRX | fcrClearTX) // the clear bits self-reset
}

// writeMCR updates the modem outputs. In loopback they drive the modem
// inputs, so changes appear as MSR deltas (datasheet §8.6): RI's delta is
// TERI, set on its trailing edge only.
func (s *Serial) writeMCR(v byte) {
	before := s.msrStatus()
	s.mcr = v
	after := s.msrStatus()
	changed := before ^ after
	if changed&msrCTS != 0 {
		s.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		s.msrDelta |= msrDDSR
	}
	if changed&msrDCD != 0 {
		s.msrDelta |= msrDDCD
	}
	if before&msrRI != 0 && after&msrRI == 0 {
		s.msrDelta |= msrTERI
	}
}

// msrStatus returns MSR bits 7:4. In loopback CTS=RTS, DSR=DTR, RI=OUT1,
// DCD=OUT2; otherwise a present, ready modem: DCD, DSR and CTS asserted
// (what Linux's loopback-free probe and getty expect to see).
func (s *Serial) msrStatus() byte {
	if s.mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var m byte
	if s.mcr&mcrRTS != 0 {
		m |= msrCTS
	}
	if s.mcr&mcrDTR != 0 {
		m |= msrDSR
	}
	if s.mcr&mcrOUT1 != 0 {
		m |= msrRI
	}
	if s.mcr&mcrOUT2 != 0 {
		m |= msrDCD
	}
	return m
}

func (s *Serial) lsr() byte {
	lsr := byte(lsrTHRE|lsrTEMT) | s.lsrErr
	if len(s.rx) > 0 {
		lsr |= lsrDR
	}
	return lsr
}

// iir returns the highest-priority pending interrupt (datasheet Table IV):
// line status, then received data, then THRE, then modem status.
func (s *Serial) iir() byte {
	switch {
	case s.ier&ierELSI != 0 && s.lsrErr&lsrErrors != 0:
		return iirRLSI
	case s.ier&ierERBFI != 0 && len(s.rx) > 0:
		return iirRDI
	case s.ier&ierETBEI != 0 && s.thrPending:
		return iirTHRI
	case s.ier&ierEDSSI != 0 && s.msrDelta != 0:
		return iirMSI
	}
	return iirNoInt
}

// updateIRQ recomputes the output line after every access and drives it
// on change. Called with mu held, so level changes reach the line in order.
func (s *Serial) updateIRQ() {
	high := s.iir()&iirNoInt == 0 && s.mcr&mcrOUT2 != 0 && s.mcr&mcrLoop == 0
	if s.irq == nil || high == s.irqHigh {
		return
	}
	if err := s.irq.SetLevel(high); err != nil {
		if !s.irqErr {
			s.irqErr = true
			slog.Warn("serial: cannot drive IRQ line", "high", high, "err", err)
		}
		return // retried on the next access
	}
	s.irqHigh = high
}
