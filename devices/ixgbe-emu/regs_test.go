package ixgbeemu

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// §4.2.1.6.1 / §8.2.3.1.1: CTRL.RST resets the device and self-clears;
// registers return to their defaults. LNK_RST self-clears too.
func TestResetRestoresDefaults(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	r.wr(regEIMS, 0xFFFF)
	r.wr(regGPIE, gpieMSIXMode)
	r.wr(regMTA+4, 0xDEAD)
	r.wr(regRAL+8, 0x11223344)
	r.wr(regRAL+12, 0x5566|rahAV)

	r.wr(regCTRL, r.rd(regCTRL)|ctrlRst)
	require.Zero(t, r.rd(regCTRL)&ctrlRst, "CTRL.RST self-clears")
	require.Zero(t, r.rd(rxQueueBase(0)+qRDLEN))
	require.Zero(t, r.rd(rxQueueBase(0)+qRXDCTL))
	require.Equal(t, uint32(0x402), r.rd(rxQueueBase(0)+qSRRCTL), "SRRCTL default (§8.2.3.8.7)")
	require.Equal(t, uint32(0x402), r.rd(0x2100), "SRRCTL alias at 0x2100")
	require.Zero(t, r.rd(regEIMS))
	require.Zero(t, r.rd(regGPIE))
	require.Zero(t, r.rd(regMTA+4))
	require.Zero(t, r.rd(regRAL+12), "RAH(1) cleared")
	require.Zero(t, r.rd(regRXCTRL))
	require.Equal(t, uint32(1518<<16), r.rd(regMAXFRS))

	r.wr(regCTRL, ctrlLnkRst)
	require.Zero(t, r.rd(regCTRL)&ctrlLnkRst, "CTRL.LNK_RST self-clears")
}

// §8.2.3.1.2: STATUS.GIO Master Enable Status clears when CTRL.GIO_DIS is
// set (ixgbe_disable_pcie_primary polls it) and comes back after reset.
func TestGIODisable(t *testing.T) {
	r := newRig(t)
	require.NotZero(t, r.rd(regSTATUS)&statusGIO)
	r.wr(regCTRL, ctrlGIODis)
	require.Zero(t, r.rd(regSTATUS)&statusGIO)
	r.wr(regCTRL, ctrlGIODis|ctrlRst)
	require.NotZero(t, r.rd(regSTATUS)&statusGIO)
	require.Zero(t, r.rd(regCTRL)&ctrlGIODis)
}

// linuxEEPROMChecksum is ixgbe_calc_eeprom_checksum_generic, transcribed,
// reading words through EERD like ixgbe_read_eerd_generic.
func linuxEEPROMChecksum(read func(uint16) uint16) uint16 {
	var checksum uint16
	for i := uint16(0); i < 0x3F; i++ {
		checksum += read(i)
	}
	for i := uint16(0x03); i < 0x0F; i++ {
		pointer := read(i)
		if pointer == 0xFFFF || pointer == 0 {
			continue
		}
		length := read(pointer)
		if length == 0xFFFF || length == 0 {
			continue
		}
		for j := pointer + 1; j <= pointer+length; j++ {
			checksum += read(j)
		}
	}
	return 0xBABA - checksum
}

// §6.2 / §8.2.3.2.1-2: EEC reports a present, auto-read EEPROM; EERD reads
// words (addr<<2|START → DONE, data 31:16); the checksum word makes the
// Linux sum come out at 0xBABA.
func TestEEPROMReadAndChecksum(t *testing.T) {
	r := newRig(t)
	eec := r.rd(regEEC)
	require.NotZero(t, eec&eecPRES)
	require.NotZero(t, eec&eecARD)
	require.Equal(t, uint32(eepromWords), uint32(1)<<((eec>>eecSizeShift&0xF)+6), "EE_SIZE → word_size")
	reads := 0
	read := func(a uint16) uint16 {
		reads++
		r.wr(regEERD, uint32(a)<<2|eerdStart)
		v := r.rd(regEERD)
		require.NotZero(t, v&eerdDone, "EERD.DONE")
		return uint16(v >> 16)
	}
	require.Equal(t, read(0x3F), linuxEEPROMChecksum(read))
	require.Greater(t, reads, 0x3F+3, "pointer section followed")
	// MAC lives in the LAN core 0 section pointed to by word 0x09.
	p := read(0x09)
	require.Equal(t, uint16(testMAC[0])|uint16(testMAC[1])<<8, read(p+1))
	// EEC.REQ → GNT (bit-bang access handshake).
	r.wr(regEEC, eecREQ)
	require.NotZero(t, r.rd(regEEC)&eecGNT)
}

// §8.2.3.4.11: SWSM.SMBI is set by a read (the semaphore is taken by the
// reader that saw 0) and cleared by a write; FWSM.FW_VAL set.
func TestSWSMSemaphore(t *testing.T) {
	r := newRig(t)
	require.Zero(t, r.rd(regSWSM)&swsmSMBI)
	require.NotZero(t, r.rd(regSWSM)&swsmSMBI)
	r.wr(regSWSM, 2)
	require.Equal(t, uint32(2), r.rd(regSWSM)&3)
	r.wr(regSWSM, 0)
	require.Zero(t, r.rd(regSWSM))
	require.NotZero(t, r.rd(regFWSM)&fwsmFWVal)
}

// §8.2.3.7.9-10: RAL/RAH(0) hold the EEPROM MAC with AV after reset, at
// both 0x5400 and 0xA200.
func TestMACInRAR0(t *testing.T) {
	r := newRig(t)
	for _, base := range []uint32{regRALLow, regRAL} {
		ral, rah := r.rd(base), r.rd(base+4)
		require.Equal(t, uint32(0x12005452), ral)
		require.Equal(t, uint32(0x5634)|rahAV, rah)
	}
	r.wr(regRALLow+8, 0xAABBCCDD)
	require.Equal(t, uint32(0xAABBCCDD), r.rd(regRAL+8), "alias shares storage")
}

// §8.2.3.22.20 LINKS, §8.2.3.22.11 MSCA/MSRWD, §8.2.3.22.19 AUTOC, §7.3.1
// LSC cause.
func TestLink(t *testing.T) {
	r := newRig(t)
	l := r.rd(regLINKS)
	require.NotZero(t, l&linksUp)
	require.NotZero(t, l&linksKXANComp)
	require.Equal(t, uint32(3), l>>28&3, "10 Gb/s")
	require.NotZero(t, r.rd(regANLP1)&0xF0000)

	r.wr(regAUTOC, r.rd(regAUTOC)|autocANRestart)
	require.Zero(t, r.rd(regAUTOC)&autocANRestart)
	require.Equal(t, uint32(1), r.rd(regAUTOC)>>13&7, "LMS 10G no AN")

	r.wr(regMSCA, 1<<30|3<<26|1<<21)
	require.Zero(t, r.rd(regMSCA)&msCAMDICommand)
	require.Equal(t, uint32(0xFFFF), r.rd(regMSRWD)>>16)

	// MSI-X: LSC → "other" vector from IVAR_MISC byte 1.
	r.wr(regGPIE, gpieMSIXMode|gpieEIAME|gpiePBA)
	r.wr(regIVARMisc, (ivarValid|5)<<8)
	r.wr(regEIMS, eicrLSC)
	r.d.SetLink(false)
	require.Zero(t, r.rd(regLINKS)&linksUp)
	require.Equal(t, []int{5}, r.irq.fired())
	require.NotZero(t, r.rd(regEICS)&eicrLSC)
	r.d.SetLink(false) // no change → no interrupt
	require.Len(t, r.irq.fired(), 1)
	r.wr(regEICR, eicrLSC)
	require.Zero(t, r.rd(regEICS)&eicrLSC)
	r.d.SetLink(true)
	require.Equal(t, []int{5, 5}, r.irq.fired())
	require.NotZero(t, r.rd(regLINKS)&linksUp)
}

// §8.2.3.23: statistics are clear-on-read; 64-bit octet counters are
// read low then high.
func TestStatsClearOnRead(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	f := udp4Frame(testMAC, payloadBytes(100))
	require.NoError(t, r.d.Receive(0, f))
	require.NoError(t, r.d.Receive(0, f))
	require.Equal(t, uint32(2), r.rd(regGPRC))
	require.Zero(t, r.rd(regGPRC))
	require.Equal(t, uint32(2*len(f)), r.rd(regGORCL))
	require.Zero(t, r.rd(regGORCH))
	require.Zero(t, r.rd(regGORCL))
	require.Equal(t, uint32(2), r.rd(regQPRC))
	// Registers that count the same frames share a count but clear on
	// their own reads.
	require.Equal(t, uint32(2), r.rd(regTPR))
	require.Zero(t, r.rd(regTPR))
	require.Equal(t, uint32(2), r.rd(regRXNFGPC))
	require.Equal(t, uint32(2*len(f)), r.rd(regTORL))
	require.NoError(t, r.d.Receive(0, f))
	require.Equal(t, uint32(1), r.rd(regGPRC))
	require.Equal(t, uint32(1), r.rd(regTPR))
	require.Equal(t, uint32(1), r.rd(regRXNFGPC))
	for _, off := range []uint32{regCRCERRS, regMPC, regBPRC, regMPRC, regGPTC, regRUC, regROC, 0x04034, 0x03F60} {
		require.Zero(t, r.rd(off), "%#x", off)
	}
	require.Equal(t, uint64(3), r.d.Stats().RxFrames, "Stats are not cleared by reads")
}

// bus.Device access to BAR0: 4- and 8-byte accesses, out-of-range safe.
func TestBusAccess(t *testing.T) {
	r := newRig(t)
	b := make([]byte, 8)
	r.d.Read(regRAL, b)
	require.Equal(t, byte(0x52), b[0])
	require.Equal(t, byte(0x80), b[7])
	r.d.Write(regMTA, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	require.Equal(t, uint32(0x04030201), r.rd(regMTA))
	require.Equal(t, uint32(0x08070605), r.rd(regMTA+4))
	r.d.Read(BAR0Size-2, b[:4])
	r.d.Write(1<<40, b)
	r.d.Read(regRAL+1, b[:2])
	require.Equal(t, []byte{0x54, 0x00}, b[:2])
}
