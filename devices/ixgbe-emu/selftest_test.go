package ixgbeemu

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Transcriptions of the ixgbe driver's offline self-test (ethtool -t eth0
// offline: ixgbe_ethtool.c, Linux 6.1): a failure here is a FAIL line in a
// guest's ethtool output. The e2e test TestIxgbeGuestVisible runs the real
// one.

// regTestEntry is one line of the driver's reg_test_82599 table.
type regTestEntry struct {
	name     string
	reg      uint32
	n        int
	kind     regTestKind
	mask, wr uint32
}

type regTestKind int

const (
	patternTest regTestKind = iota + 1
	setReadTest
	writeNoTest
	table32Test
	table64LoTest
	table64HiTest
)

var regTest82599 = []regTestEntry{
	{"FCRTL(0)", 0x3220, 1, patternTest, 0x8007FFF0, 0x8007FFF0},
	{"FCRTH(0)", 0x3260, 1, patternTest, 0x8007FFF0, 0x8007FFF0},
	{"PFCTOP", 0x3008, 1, patternTest, 0xFFFFFFFF, 0xFFFFFFFF},
	{"VLNCTRL", 0x5088, 1, patternTest, 0, 0},
	{"RDBAL", 0x1000, 4, patternTest, 0xFFFFFF80, 0xFFFFFF80},
	{"RDBAH", 0x1004, 4, patternTest, 0xFFFFFFFF, 0xFFFFFFFF},
	{"RDLEN", 0x1008, 4, patternTest, 0x000FFF80, 0x000FFFFF},
	{"RXDCTL", 0x1028, 4, writeNoTest, 0, rxdctlEnable},
	{"RDT", 0x1018, 4, patternTest, 0xFFFF, 0xFFFF},
	{"RXDCTL", 0x1028, 4, writeNoTest, 0, 0},
	{"FCRTH(0)", 0x3260, 1, patternTest, 0x8007FFF0, 0x8007FFF0},
	{"FCTTV(0)", 0x3200, 1, patternTest, 0xFFFFFFFF, 0xFFFFFFFF},
	{"TDBAL", 0x6000, 4, patternTest, 0xFFFFFF80, 0xFFFFFFFF},
	{"TDBAH", 0x6004, 4, patternTest, 0xFFFFFFFF, 0xFFFFFFFF},
	{"TDLEN", 0x6008, 4, patternTest, 0x000FFF80, 0x000FFF80},
	{"RXCTRL", 0x3000, 1, setReadTest, 1, 1},
	{"RAL", 0x5400, 16, table64LoTest, 0xFFFFFFFF, 0xFFFFFFFF},
	{"RAH", 0x5400, 16, table64HiTest, 0x8001FFFF, 0x800CFFFF},
	{"MTA", 0x5200, 128, table32Test, 0xFFFFFFFF, 0xFFFFFFFF},
}

// TestLinuxRegisterTest: ixgbe_reg_test. The STATUS toggle first (the
// read-only bits must not move), then every table entry; the driver stops
// at the first register that fails and reports its offset.
func TestLinuxRegisterTest(t *testing.T) {
	r := newRig(t)
	r.wr(regCTRL, ctrlRst)
	const toggle = 0x7FFFF30F
	before := r.rd(regSTATUS)
	value := r.rd(regSTATUS) & toggle
	r.wr(regSTATUS, toggle)
	assert.Equal(t, value, r.rd(regSTATUS)&toggle, "STATUS is read-only")
	r.wr(regSTATUS, before)

	patterns := []uint32{0x5A5A5A5A, 0xA5A5A5A5, 0, 0xFFFFFFFF}
	pattern := func(reg, mask, write uint32) error {
		for _, p := range patterns {
			b := r.rd(reg)
			r.wr(reg, p&write)
			v := r.rd(reg)
			r.wr(reg, b)
			if v != p&write&mask {
				return fmt.Errorf("pattern test reg %04X failed: got %#08x expected %#08x", reg, v, p&write&mask)
			}
		}
		return nil
	}
	for _, e := range regTest82599 {
		for i := 0; i < e.n; i++ {
			var err error
			switch e.kind {
			case patternTest:
				err = pattern(e.reg+uint32(i)*0x40, e.mask, e.wr)
			case setReadTest:
				reg := e.reg + uint32(i)*0x40
				b := r.rd(reg)
				r.wr(reg, e.wr&e.mask)
				if v := r.rd(reg); v&e.mask != e.wr&e.mask {
					err = fmt.Errorf("set/check reg %04X failed: got %#08x expected %#08x", reg, v, e.wr&e.mask)
				}
				r.wr(reg, b)
			case writeNoTest:
				r.wr(e.reg+uint32(i)*0x40, e.wr)
			case table32Test:
				err = pattern(e.reg+uint32(i)*4, e.mask, e.wr)
			case table64LoTest:
				err = pattern(e.reg+uint32(i)*8, e.mask, e.wr)
			case table64HiTest:
				err = pattern(e.reg+4+uint32(i)*8, e.mask, e.wr)
			}
			require.NoError(t, err, "%s[%d]", e.name, i)
		}
	}
}

// TestLinuxInterruptTest: ixgbe_intr_test on its MSI path (with MSI-X the
// driver skips it): causes set through EICS must reach the interrupt
// handler (which reads EICR) exactly when unmasked.
func TestLinuxInterruptTest(t *testing.T) {
	r := newRig(t)
	r.wr(regCTRL, ctrlRst)
	var icr uint32
	edges := 0
	isr := func() {
		if _, e := r.irq.intx(); e != edges {
			edges = e
			icr |= r.rd(regEICR)
		}
	}
	r.wr(regEIMC, 0xFFFFFFFF)
	isr()
	for i := 0; i < 10; i++ {
		mask := uint32(1) << i
		icr = 0
		r.wr(regEIMC, ^mask&0x7FFF)
		r.wr(regEICS, ^mask&0x7FFF)
		isr()
		require.Zero(t, icr&mask, "cause %d: masked-off cause seen (result 3)", i)
		icr = 0
		r.wr(regEIMS, mask)
		r.wr(regEICS, mask)
		isr()
		require.NotZero(t, icr&mask, "cause %d: unmasked cause not seen (result 4)", i)
		icr = 0
		r.wr(regEIMC, ^mask&0x7FFF)
		r.wr(regEICS, ^mask&0x7FFF)
		isr()
		require.Zero(t, icr, "cause %d: masked causes seen (result 5)", i)
	}
}

// linuxLoopback transcribes ixgbe_loopback_test (ixgbe_setup_desc_rings,
// ixgbe_setup_loopback_test, ixgbe_run_loopback_test, ixgbe_clean_test_rings):
// 18 rounds of 64 1024-byte broadcast frames sent with HLREG0.LPBK set,
// each round expecting exactly 64 good frames back on receive queue 0.
// between, if set, runs after each round's transmits (frames from the
// port, say).
// It returns the driver's result code (0 pass, 13 wrong receive count)
// and what went wrong.
func linuxLoopback(r *rig, between func(round int)) (int, string) {
	const n = 512
	const size = 1024
	r.wr(regCTRL, ctrlRst)
	// Transmit ring (ixgbe_setup_desc_rings → ixgbe_configure_tx_ring).
	r.wr(regDMATXCTL, r.rd(regDMATXCTL)|dmatxctlTE)
	tb := txQueueBase(0)
	r.wr(tb+qRXDCTL, 0)
	r.wr(tb+qRDBAL, uint32(txRingOf(0)))
	r.wr(tb+qRDBAH, 0)
	r.wr(tb+qRDLEN, n*16)
	r.wr(tb+qRDH, 0)
	r.wr(tb+qRDT, 0)
	r.wr(tb+qRXDCTL, txdctlEnable|1<<16|1<<8|32)
	// Receive ring (ixgbe_configure_rx_ring), 2 KiB buffers.
	r.wr(regRXCTRL, r.rd(regRXCTRL)&^rxctrlRXEN)
	rb := rxQueueBase(0)
	r.wr(rb+qRXDCTL, r.rd(rb+qRXDCTL)&^rxdctlEnable)
	r.wr(rb+qRDBAL, uint32(rxRingOf(0)))
	r.wr(rb+qRDBAH, 0)
	r.wr(rb+qRDLEN, n*16)
	r.wr(rb+qRDH, 0)
	r.wr(rb+qRDT, 0)
	r.wr(0x2100, 256<<2|2|1<<25) // SRRCTL(0): 2 KiB, advanced one-buffer, DROP_EN
	bufAddr := func(i int) uint64 { return rxBufs + uint64(i)*2048 }
	r.put64(rxRingOf(0)+8, 0)
	r.wr(rb+qRXDCTL, r.rd(rb+qRXDCTL)|rxdctlEnable)
	post := func(i int) {
		r.put64(rxRingOf(0)+uint64(i)*16, bufAddr(i))
		next := rxRingOf(0) + uint64((i+1)%n)*16
		binary.LittleEndian.PutUint16(r.ram[next+12-memBase:], 0) // wb.upper.length
	}
	for i := 0; i < n-1; i++ {
		post(i)
	}
	rxNTU := n - 1
	r.wr(rb+qRDT, uint32(rxNTU))
	r.wr(regRXCTRL, r.rd(regRXCTRL)|2) // DMBYPS
	r.wr(regRXCTRL, r.rd(regRXCTRL)|rxctrlRXEN)
	// ixgbe_setup_loopback_test: MAC loopback, broadcast/unicast promiscuous.
	r.wr(regHLREG0, r.rd(regHLREG0)|hlreg0Lpbk)
	r.wr(regFCTRL, r.rd(regFCTRL)|fctrlBAM|2|fctrlMPE)
	r.wr(regAUTOC, r.rd(regAUTOC)|1)
	// ixgbe_create_lbtest_frame.
	frame := make([]byte, size)
	for i := range frame {
		frame[i] = 0xFF
	}
	for i := 0; i < size/4-1; i++ {
		frame[size/2+i] = 0xAA
	}
	frame[size/2+10], frame[size/2+12] = 0xBE, 0xAF
	copy(r.bytes(txBufs, size), frame)
	txNTU, txNTC, rxNTC := 0, 0, 0
	for round := 0; round <= (n/64)*2+1; round++ {
		for i := 0; i < 64; i++ {
			d := txRingOf(0) + uint64(txNTU)*16
			r.put64(d, txBufs)
			cmd := uint32(size) | txdDTypData<<txdDTypShift | txdCmdDEXT | 1<<25 | txdCmdEOP | txdCmdRS
			r.put64(d+8, uint64(cmd)|uint64(size<<14)<<32)
			txNTU = (txNTU + 1) % n
			r.wr(tb+qRDT, uint32(txNTU))
		}
		if between != nil {
			between(round)
		}
		// ixgbe_clean_test_rings: reap tx (DD), count good rx frames.
		for txNTC != txNTU {
			if binary.LittleEndian.Uint32(r.ram[txRingOf(0)+uint64(txNTC)*16+12-memBase:])&1 == 0 {
				break
			}
			txNTC = (txNTC + 1) % n
		}
		count := 0
		for {
			d := rxRingOf(0) + uint64(rxNTC)*16
			if binary.LittleEndian.Uint16(r.ram[d+12-memBase:]) == 0 {
				break
			}
			b := r.bytes(bufAddr(rxNTC), size)
			if b[3] != 0xFF || b[size/2+10] != 0xBE || b[size/2+12] != 0xAF {
				break
			}
			count++
			rxNTC = (rxNTC + 1) % n
		}
		for k := 0; k < count; k++ {
			post(rxNTU)
			rxNTU = (rxNTU + 1) % n
		}
		if count > 0 {
			r.wr(rb+qRDT, uint32(rxNTU))
		}
		if count != 64 {
			return 13, fmt.Sprintf("round %d: %d good frames received", round, count)
		}
		if txNTC != txNTU {
			return 13, fmt.Sprintf("round %d: transmit descriptors not done", round)
		}
	}
	return 0, ""
}

// TestLinuxLoopbackTest: with HLREG0.LPBK the transmitted frames come back
// on receive queue 0 and none reaches the wire; frames from the port are
// not received meanwhile (a real MAC in loopback does not listen to its
// PHY). Clearing LPBK sends to the wire again.
func TestLinuxLoopbackTest(t *testing.T) {
	r := newRig(t)
	code, why := linuxLoopback(r, nil)
	require.Zero(t, code, why)
	assert.Empty(t, r.wire.get(), "looped-back frames reach the wire")
	assert.Equal(t, uint64(18*64), r.d.Stats().RxFrames, "looped-back frames count as received")

	r = newRig(t)
	code, why = linuxLoopback(r, func(int) {
		_ = r.d.Receive(0, udp4Frame(bcastMAC, payloadBytes(100)))
		if _, ok := r.d.RxTarget(0); ok {
			_ = r.d.RxComplete(0, 100)
		}
	})
	require.Zero(t, code, "frames from the port during the loopback test: %s", why)
	assert.Positive(t, r.d.Stats().RxDisabled, "port frames are dropped and counted while in loopback")

	r.wr(regHLREG0, r.rd(regHLREG0)&^hlreg0Lpbk)
	n := len(r.wire.get())
	tdt := r.rd(txQueueBase(0) + qRDT)
	desc := txRingOf(0) + uint64(tdt)*16
	r.put64(desc, txBufs)
	cmd := uint32(1024) | txdDTypData<<txdDTypShift | txdCmdDEXT | 1<<25 | txdCmdEOP | txdCmdRS
	r.put64(desc+8, uint64(cmd)|uint64(1024<<14)<<32)
	r.wr(txQueueBase(0)+qRDT, (tdt+1)%512)
	assert.Len(t, r.wire.get(), n+1, "LPBK cleared: frames go to the wire again")
}
