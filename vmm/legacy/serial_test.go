package legacy

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeIRQ records every level the device drives.
type fakeIRQ struct {
	mu     sync.Mutex
	levels []bool
	fail   bool
}

func (f *fakeIRQ) SetLevel(high bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("injected")
	}
	f.levels = append(f.levels, high)
	return nil
}

func (f *fakeIRQ) high() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels) > 0 && f.levels[len(f.levels)-1]
}

func rd(s *Serial, reg uint64) byte {
	b := []byte{0}
	s.Read(reg, b)
	return b[0]
}

func wr(s *Serial, reg uint64, v byte) { s.Write(reg, []byte{v}) }

func newTestSerial() (*Serial, *bytes.Buffer, *fakeIRQ) {
	var out bytes.Buffer
	irq := &fakeIRQ{}
	return NewSerial(&out, irq), &out, irq
}

func TestSerialOutput(t *testing.T) {
	s, out, _ := newTestSerial()
	for _, c := range []byte("hello\n") {
		wr(s, regRBR, c)
	}
	require.Equal(t, "hello\n", out.String())
}

func TestSerialLSR(t *testing.T) {
	s, _, _ := newTestSerial()
	require.Equal(t, byte(lsrTHRE|lsrTEMT), rd(s, regLSR), "idle: transmitter ready, no data")
	require.Equal(t, 2, s.Input([]byte("ab")))
	require.Equal(t, byte(lsrTHRE|lsrTEMT|lsrDR), rd(s, regLSR))
	require.Equal(t, byte('a'), rd(s, regRBR))
	require.Equal(t, byte('b'), rd(s, regRBR))
	require.Equal(t, byte(lsrTHRE|lsrTEMT), rd(s, regLSR))
	require.Equal(t, byte(0), rd(s, regRBR), "empty RBR reads harmlessly")
}

func TestSerialDivisorLatch(t *testing.T) {
	s, out, _ := newTestSerial()
	wr(s, regLCR, lcrDLAB|0x03)
	wr(s, regRBR, 0x01) // DLL: 115200 baud
	wr(s, regIER, 0x00) // DLM
	require.Equal(t, byte(0x01), rd(s, regRBR))
	require.Equal(t, byte(0x00), rd(s, regIER))
	wr(s, regLCR, 0x03)
	require.Empty(t, out.String(), "divisor writes must not reach THR")
	require.Zero(t, rd(s, regIER), "divisor writes must not reach IER")
	wr(s, regRBR, 'x')
	require.Equal(t, "x", out.String())

	// Input is not consumed through the latch.
	s.Input([]byte{'y'})
	wr(s, regLCR, lcrDLAB)
	require.Equal(t, byte(0x01), rd(s, regRBR))
	wr(s, regLCR, 0)
	require.Equal(t, byte('y'), rd(s, regRBR))
}

func TestSerialIERReadback(t *testing.T) {
	// Linux autoconfig: IER bits 3:0 read back, 7:4 read 0 (not an
	// XScale UUE bit, not a 16750).
	s, _, _ := newTestSerial()
	wr(s, regIER, 0x0F)
	require.Equal(t, byte(0x0F), rd(s, regIER))
	wr(s, regIER, 0xF0)
	require.Equal(t, byte(0), rd(s, regIER))
}

func TestSerialIIRPriorities(t *testing.T) {
	s, _, _ := newTestSerial()
	require.Equal(t, byte(iirNoInt), rd(s, regIIR))

	wr(s, regIER, ierERBFI|ierETBEI|ierELSI)
	s.Input([]byte{'a'})
	require.Equal(t, byte(iirRDI), rd(s, regIIR), "RX data before THRE")
	require.Equal(t, byte(iirRDI), rd(s, regIIR), "reading IIR does not clear RDI")
	rd(s, regRBR)
	require.Equal(t, byte(iirTHRI), rd(s, regIIR), "then THRE")
	require.Equal(t, byte(iirNoInt), rd(s, regIIR), "reading IIR cleared THRE")

	// Overrun: line status outranks received data.
	s.Input(make([]byte, SerialInputMax+1))
	require.Equal(t, byte(iirRLSI), rd(s, regIIR))
	require.NotZero(t, rd(s, regLSR)&lsrOE)
	require.Equal(t, byte(iirRDI), rd(s, regIIR), "LSR read cleared the error")
}

func TestSerialTHREQuirk(t *testing.T) {
	// serial8250_do_startup's THRE test: enabling ETBEI with an empty THR
	// raises THRE, and so does re-enabling it after IER=0.
	s, _, _ := newTestSerial()
	wr(s, regIER, ierETBEI)
	require.Equal(t, byte(iirTHRI), rd(s, regIIR))
	wr(s, regIER, 0)
	wr(s, regIER, ierETBEI)
	require.Equal(t, byte(iirTHRI), rd(s, regIIR))
	require.Equal(t, byte(iirNoInt), rd(s, regIIR))

	// A THR write re-arms THRE once the byte has gone.
	wr(s, regRBR, 'x')
	require.Equal(t, byte(iirTHRI), rd(s, regIIR))

	// Disabling ETBEI drops a pending THRE.
	wr(s, regRBR, 'x')
	wr(s, regIER, 0)
	require.Equal(t, byte(iirNoInt), rd(s, regIIR))
}

func TestSerialIRQLine(t *testing.T) {
	s, _, irq := newTestSerial()
	wr(s, regIER, ierERBFI)
	s.Input([]byte{'a'})
	require.False(t, irq.high(), "OUT2 clear: the PC gate keeps the line low")
	require.Empty(t, irq.levels, "no redundant SetLevel calls")

	wr(s, regMCR, mcrOUT2|mcrDTR|mcrRTS)
	require.True(t, irq.high(), "OUT2 set: pending RX reaches the line")
	rd(s, regRBR)
	require.False(t, irq.high(), "drained")

	s.Input([]byte{'b'})
	require.True(t, irq.high())
	wr(s, regIER, 0)
	require.False(t, irq.high(), "IER cleared")
	wr(s, regIER, ierERBFI)
	require.True(t, irq.high())
	wr(s, regMCR, mcrDTR|mcrRTS)
	require.False(t, irq.high(), "OUT2 cleared")
	require.Equal(t, []bool{true, false, true, false, true, false}, irq.levels)
}

func TestSerialIRQErrorRetried(t *testing.T) {
	s, _, irq := newTestSerial()
	irq.fail = true
	wr(s, regMCR, mcrOUT2)
	wr(s, regIER, ierETBEI)
	require.Empty(t, irq.levels)
	irq.fail = false
	rd(s, regLSR) // any access retries
	require.Equal(t, []bool{true}, irq.levels)
}

func TestSerialLoopback(t *testing.T) {
	s, out, irq := newTestSerial()
	wr(s, regIER, ierERBFI|ierEDSSI)

	// Linux autoconfig: MCR = LOOP|OUT2|RTS must read MSR[7:4] = DCD|CTS.
	wr(s, regMCR, mcrLoop|mcrOUT2|mcrRTS)
	require.Equal(t, byte(msrDCD|msrCTS), rd(s, regMSR)&0xF0)
	require.Zero(t, rd(s, regMSR)&0x0F, "deltas cleared by the previous read")

	wr(s, regMCR, mcrLoop|mcrDTR|mcrOUT1)
	require.Equal(t, byte(msrDSR|msrRI|msrDCTS|msrDDSR|msrDDCD), rd(s, regMSR))
	wr(s, regMCR, mcrLoop)
	require.Equal(t, byte(msrDDSR|msrTERI), rd(s, regMSR), "TERI on RI trailing edge")

	wr(s, regRBR, 0x5A)
	require.Empty(t, out.String(), "looped back, not transmitted")
	require.Equal(t, byte(lsrDR), rd(s, regLSR)&lsrDR)
	require.Equal(t, byte(iirRDI), rd(s, regIIR))
	require.False(t, irq.high(), "OUT2 is forced inactive in loopback")
	require.Equal(t, byte(0x5A), rd(s, regRBR))

	require.Zero(t, s.Input([]byte("x")), "serial input disconnected in loopback")
	require.Zero(t, rd(s, regLSR)&lsrDR)

	wr(s, regMCR, mcrOUT2|mcrDTR|mcrRTS)
	require.Equal(t, byte(msrDCD|msrDSR|msrCTS), rd(s, regMSR)&0xF0, "modem ready outside loopback")
	wr(s, regRBR, 'z')
	require.Equal(t, "z", out.String())
}

func TestSerialFIFOIdentification(t *testing.T) {
	// Linux autoconfig writes FCR=ENABLE_FIFO and expects IIR[7:6] = 11
	// (16550A); also in LCR=0xBF/0x80 "EFR" probes IIR must read non-zero
	// and IIR bit 5 must stay clear (no 64-byte 16750 FIFO).
	s, _, _ := newTestSerial()
	require.Zero(t, rd(s, regIIR)&0xC0, "FIFOs off after reset")
	wr(s, regIIR, fcrEnable)
	require.Equal(t, byte(0xC1), rd(s, regIIR))
	wr(s, regIIR, fcrEnable|0x20)
	require.Equal(t, byte(0xC1), rd(s, regIIR), "no 64-byte mode")
	wr(s, regLCR, 0xBF)
	require.NotZero(t, rd(s, regIIR), "no EFR behind LCR=0xBF")
	wr(s, regLCR, 0)

	// FCR clear-RX and FIFO toggling discard received data.
	s.Input([]byte("ab"))
	wr(s, regIIR, fcrEnable|fcrClearRX)
	require.Zero(t, rd(s, regLSR)&lsrDR)
	s.Input([]byte("ab"))
	wr(s, regIIR, 0)
	require.Zero(t, rd(s, regLSR)&lsrDR)
	require.Equal(t, byte(iirNoInt), rd(s, regIIR))
}

func TestSerialInputBound(t *testing.T) {
	s, _, _ := newTestSerial()
	require.Equal(t, SerialInputMax-1, s.Input(make([]byte, SerialInputMax-1)))
	require.Zero(t, rd(s, regLSR)&lsrOE)
	require.Equal(t, 1, s.Input([]byte{1, 2, 3}))
	require.Zero(t, s.Input([]byte{4}))
	require.NotZero(t, rd(s, regLSR)&lsrOE, "overrun reported")
	require.Zero(t, rd(s, regLSR)&lsrOE, "and cleared by the LSR read")
	var got []byte
	for rd(s, regLSR)&lsrDR != 0 {
		got = append(got, rd(s, regRBR))
	}
	require.Len(t, got, SerialInputMax)
	require.Equal(t, byte(1), got[len(got)-1], "the first byte past the bound was kept, the rest dropped")
}

func TestSerialScratch(t *testing.T) {
	s, _, _ := newTestSerial()
	wr(s, regSCR, 0xA5)
	require.Equal(t, byte(0xA5), rd(s, regSCR))
	wr(s, regLCR, 0x1B)
	require.Equal(t, byte(0x1B), rd(s, regLCR))
	wr(s, regMCR, 0xFF)
	require.Equal(t, byte(mcrMask), rd(s, regMCR), "MCR bits 7:5 read 0")
}

func TestSerialWideAndHostileAccess(t *testing.T) {
	s, out, _ := newTestSerial()
	// A 16-bit write to offset 0 is THR then IER, as the ISA bus splits it.
	s.Write(0, []byte{'w', ierERBFI})
	require.Equal(t, "w", out.String())
	require.Equal(t, byte(ierERBFI), rd(s, regIER))

	for _, off := range []uint64{6, 7, 8, 100, 1 << 63, ^uint64(0)} {
		for _, n := range []int{0, 1, 2, 3, 4, 8, 16} {
			d := make([]byte, n)
			s.Write(off, d)
			s.Read(off, d)
			if off >= serialRegs {
				require.Equal(t, bytes.Repeat([]byte{0xFF}, n), d, "off=%#x n=%d", off, n)
			}
		}
	}
}

func TestSerialNilIRQ(t *testing.T) {
	var out bytes.Buffer
	s := NewSerial(&out, nil)
	wr(s, regMCR, mcrOUT2)
	wr(s, regIER, 0x0F)
	s.Input([]byte("a"))
	require.Equal(t, byte(iirRDI), rd(s, regIIR))
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) { f.n++; return 0, errors.New("closed") }

func TestSerialOutputErrorDoesNotStall(t *testing.T) {
	w := &failWriter{}
	s := NewSerial(w, nil)
	wr(s, regIER, ierETBEI)
	rd(s, regIIR)
	wr(s, regRBR, 'a')
	wr(s, regRBR, 'b')
	require.Equal(t, 2, w.n)
	require.Equal(t, byte(lsrTHRE|lsrTEMT), rd(s, regLSR))
	require.Equal(t, byte(iirTHRI), rd(s, regIIR))
}

func TestSerialConcurrent(t *testing.T) {
	var out lockedBuffer
	irq := &fakeIRQ{}
	s := NewSerial(&out, irq)
	wr(s, regMCR, mcrOUT2)
	wr(s, regIER, ierERBFI|ierETBEI)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 1000 {
			s.Input([]byte("in"))
		}
	})
	for range 2 {
		wg.Go(func() {
			for range 1000 {
				wr(s, regRBR, 'o')
				rd(s, regIIR)
				rd(s, regRBR)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 2000, out.Len())
}

type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func TestSerialNilWriter(t *testing.T) {
	s := NewSerial(nil, nil)
	wr(s, regRBR, 'x')
	require.Equal(t, byte(lsrTHRE|lsrTEMT), rd(s, regLSR))
}
