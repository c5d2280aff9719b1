package ixgbeemu

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests for what the stock Linux ixgbe driver (drivers/net/ethernet/intel/
// ixgbe, Linux 6.1) needs beyond the register facts of DESIGN.md §4. The
// driver helpers below are transcriptions of the driver's register
// sequences, so a failure here is a probe/open failure in a guest.

// Register offsets only the tests use (ixgbe_type.h).
const (
	regAUTOC2Test = regAUTOC2
	regGSSRTest   = regGSSR
	regFDIRHASH   = 0x0EE28
	regMPSARLo    = 0x0A600
	regHICR       = 0x15F00
	regMANC       = 0x05820
	regMMNGC      = 0x042D0
	regFACTPS     = 0x10150
	regLINKS2     = 0x04324
	gssrPHY0SM    = 0x0002
	swsmSWESMBI   = 1 << 1
)

// linuxDriver performs the driver's register sequences on a Device.
type linuxDriver struct {
	t *testing.T
	d *Device
}

func (l linuxDriver) rd(off uint32) uint32    { return l.d.ReadReg(off) }
func (l linuxDriver) wr(off uint32, v uint32) { l.d.WriteReg(off, v) }

// getEEPROMSemaphore is ixgbe_get_eeprom_semaphore (SMBI, then SWESMBI).
func (l linuxDriver) getEEPROMSemaphore() bool {
	got := false
	for i := 0; i < 2000; i++ {
		if l.rd(regSWSM)&swsmSMBI == 0 {
			got = true
			break
		}
	}
	if !got {
		return false
	}
	for i := 0; i < 2000; i++ {
		swsm := l.rd(regSWSM) | swsmSWESMBI
		l.wr(regSWSM, swsm)
		if l.rd(regSWSM)&swsmSWESMBI != 0 {
			return true
		}
	}
	return false
}

func (l linuxDriver) releaseEEPROMSemaphore() {
	l.wr(regSWSM, l.rd(regSWSM)&^(swsmSWESMBI|swsmSMBI))
}

// acquireSWFW is ixgbe_acquire_swfw_sync (SW_FW_SYNC/GSSR at 0x10160).
func (l linuxDriver) acquireSWFW(mask uint32) bool {
	for i := 0; i < 200; i++ {
		if !l.getEEPROMSemaphore() {
			return false
		}
		gssr := l.rd(regGSSRTest)
		if gssr&(mask|mask<<5) == 0 {
			l.wr(regGSSRTest, gssr|mask)
			l.releaseEEPROMSemaphore()
			return true
		}
		l.releaseEEPROMSemaphore()
	}
	return false
}

func (l linuxDriver) releaseSWFW(mask uint32) {
	require.True(l.t, l.getEEPROMSemaphore())
	l.wr(regGSSRTest, l.rd(regGSSRTest)&^mask)
	l.releaseEEPROMSemaphore()
}

// mdioRead is ixgbe_read_phy_reg_generic + ixgbe_read_phy_reg_mdi.
func (l linuxDriver) mdioRead(phy, mmd, reg uint32) (uint16, bool) {
	if !l.acquireSWFW(gssrPHY0SM) {
		return 0, false
	}
	defer l.releaseSWFW(gssrPHY0SM)
	for _, cmd := range []uint32{0 /* address cycle */, 3 << 26 /* read */} {
		l.wr(regMSCA, reg|mmd<<16|phy<<21|cmd|msCAMDICommand)
		done := false
		for i := 0; i < 100; i++ {
			if l.rd(regMSCA)&msCAMDICommand == 0 {
				done = true
				break
			}
		}
		if !done {
			return 0, false
		}
	}
	return uint16(l.rd(regMSRWD) >> 16), true
}

// eepromRead is ixgbe_read_eerd_generic.
func (l linuxDriver) eepromRead(addr uint16) uint16 {
	l.wr(regEERD, uint32(addr)<<2|eerdStart)
	for i := 0; i < 100000; i++ {
		if v := l.rd(regEERD); v&eerdDone != 0 {
			return uint16(v >> 16)
		}
	}
	l.t.Fatalf("EERD read of word %#x never completed", addr)
	return 0
}

// resetHW82599 is ixgbe_reset_hw_82599 with ixgbe_stop_adapter_generic,
// ixgbe_disable_pcie_primary and ixgbe_identify_phy_82599 inlined. It
// returns the permanent MAC.
func (l linuxDriver) resetHW82599() [6]byte {
	t := l.t
	// stop_adapter
	l.wr(regRXCTRL, l.rd(regRXCTRL)&^rxctrlRXEN)
	l.wr(regEIMC, 0x7FFFFFFF)
	l.rd(regEICR)
	for i := 0; i < MaxQueues; i++ {
		l.wr(txQueueBase(i)+qRXDCTL, txdctlSWFlsh)
		v := l.rd(rxQueueBase(i) + qRXDCTL)
		l.wr(rxQueueBase(i)+qRXDCTL, v&^rxdctlEnable|rxdctlSWFlsh)
	}
	// disable_pcie_primary: GIO_DIS must read back, then STATUS.GIO clear.
	l.wr(regCTRL, ctrlGIODis)
	require.NotZero(t, l.rd(regCTRL)&ctrlGIODis)
	require.Zero(t, l.rd(regSTATUS)&statusGIO, "GIO master disable: no double reset")

	// identify_phy_generic: 32 addresses, none answers.
	for phy := uint32(0); phy < 32; phy++ {
		id, ok := l.mdioRead(phy, 1, 2)
		require.True(t, ok, "MDIO to phy %d", phy)
		require.Equal(t, uint16(0xFFFF), id, "no PHY: ixgbe_phy_none")
	}

	// check_link decides between CTRL.RST and LNK_RST.
	links := l.rd(regLINKS)
	ctrl := uint32(ctrlLnkRst)
	if links&linksUp != 0 {
		ctrl = ctrlRst
	}
	l.wr(regCTRL, ctrl|l.rd(regCTRL))
	require.Zero(t, l.rd(regCTRL)&(ctrlRst|ctrlLnkRst), "reset polling")

	autoc := l.rd(regAUTOC)
	autoc2 := l.rd(regAUTOC2Test)
	require.Zero(t, autoc2&(1<<28), "AUTOC2.LINK_DISABLE clear")
	require.Equal(t, uint32(1), autoc>>13&7, "LMS = 10G link, no AN: get_link_capabilities → 10GB_FULL")

	// get_mac_addr_generic: RAL/RAH(0) through the 0x5400 alias.
	ral, rah := l.rd(regRALLow), l.rd(regRALLow+4)
	var mac [6]byte
	binary.LittleEndian.PutUint32(mac[:4], ral)
	mac[4], mac[5] = byte(rah), byte(rah>>8)

	// init_rx_addrs_generic, clear_vmdq
	_ = l.rd(regMPSARLo)
	for i := uint32(1); i < 128; i++ {
		l.wr(ralOff(i), 0)
		l.wr(ralOff(i)+4, 0)
	}
	for i := uint32(0); i < 128; i++ {
		l.wr(regMTA+4*i, 0)
	}
	// get_san_mac_addr: pointer word 0x28 says "none".
	p := l.eepromRead(eepromSANMACPtr)
	require.True(t, p == 0 || p == 0xFFFF)
	// verify_lesm_fw_enabled_82599: FW pointer says "none".
	p = l.eepromRead(eepromFWPtr)
	require.True(t, p == 0 || p == 0xFFFF)
	return mac
}

func ralOff(i uint32) uint32 {
	if i <= 15 {
		return regRALLow + 8*i
	}
	return regRAL + 8*i
}

// resetPipeline is ixgbe_reset_pipeline_82599 (start_hw → setup_fc →
// prot_autoc_write, setup_link).
func (l linuxDriver) resetPipeline() {
	autoc := l.rd(regAUTOC) | autocANRestart
	l.wr(regAUTOC, autoc^(4<<13))
	require.NotZero(l.t, l.rd(regANLP1)&0x000F0000, "AN left state 0")
	l.wr(regAUTOC, autoc)
	require.Equal(l.t, uint32(1), l.rd(regAUTOC)>>13&7, "LMS restored")
}

// TestLinuxProbeSequence runs ixgbe_probe's register traffic for an 82599
// KX4: sw_init (EEC, RXPBSIZE), reset_hw, EEPROM checksum, MAC, WoL caps,
// bus info, PBA string, start_hw, set_fw_drv_ver, and the
// ixgbe_non_sfp_link_config/watchdog link checks of ixgbe_open.
func TestLinuxProbeSequence(t *testing.T) {
	r := newRig(t)
	l := linuxDriver{t: t, d: r.d}

	// probe: EEC.PRES selects EERD reads; init_eeprom_params sizes it.
	eec := l.rd(regEEC)
	require.NotZero(t, eec&eecPRES)
	// sw_init → ixgbe_pbthresh_setup: RXPBSIZE(0)>>10 must exceed the
	// flow-control delay value (~ 36 KB at 1518-byte frames).
	require.Greater(t, l.rd(regRXPBSIZE)>>10, uint32(64), "no 'Packet Buffer(0) can not provide enough headroom'")
	// init_ipsec_offload: offload fused off.
	require.NotZero(t, l.rd(regSECTXSTAT)&secStatOffDis)
	require.NotZero(t, l.rd(regSECRXSTAT)&secStatOffDis)
	// check_fw_error: FWSM.FW_VAL, no EXT_ERR_IND, not in pass-through
	// manageability mode (ixgbe_mng_enabled false).
	fwsm := l.rd(regFWSM)
	require.NotZero(t, fwsm&fwsmFWVal)
	require.Zero(t, fwsm&0x01F80000)
	require.Zero(t, fwsm&0xE)

	mac := l.resetHW82599()
	require.Equal(t, testMAC, mac)

	// validate_checksum: the Linux sum over EERD reads.
	require.Equal(t, l.eepromRead(eepromChecksumW), linuxEEPROMChecksum(l.eepromRead))
	_ = l.eepromRead(eepromDevCaps) // eeprom_cap, device caps for crosstalk fix
	// read_pba_string: legacy (non-0xFAFA) format.
	require.NotEqual(t, uint16(0xFAFA), l.eepromRead(eepromPBA0))
	// set_lan_id_multi_port_pcie: LAN ID 0, FACTPS.LFS clear.
	require.Zero(t, l.rd(regSTATUS)&0xC)
	require.Zero(t, l.rd(regFACTPS)&(1<<30))

	// start_hw: NS_DIS, setup_fc on backplane rewrites AUTOC and resets
	// the pipeline; ixgbe_check_reset_blocked reads MMNGC.
	l.wr(regCTRLEXT, l.rd(regCTRLEXT)|1<<16)
	require.Zero(t, l.rd(regMMNGC)&1)
	l.resetPipeline()
	// set_fw_drv_ver: host interface disabled → fails fast (ignored).
	require.Zero(t, l.rd(regHICR)&1)
	require.Zero(t, l.rd(regMANC))

	// open: link checks (check_mac_link_generic, fc_autoneg_backplane).
	links := l.rd(regLINKS)
	require.NotZero(t, links&linksUp)
	require.Equal(t, uint32(0x30000000), links&0x30000000, "10 Gb/s")
	require.NotZero(t, links&linksKXANComp)
	_ = l.rd(regLINKS2) // AN_SUPPORTED clear: flow control not autonegotiated (fine)

	// ixgbe_init_fdir_signature_82599 → ixgbe_fdir_enable_82599.
	l.wr(regFDIRCTRL, 0x00120000)
	require.NotZero(t, l.rd(regFDIRCTRL)&fdirctrlInitDone, "no 'Flow Director poll time exceeded'")
}

// TestPacketBufferDefaults: RXPBSIZE(0)/TXPBSIZE(0) hold the whole packet
// buffers after power-on and after CTRL.RST (§8.2.3.8, §8.2.3.9).
func TestPacketBufferDefaults(t *testing.T) {
	r := newRig(t)
	for i := 0; i < 2; i++ {
		require.Equal(t, uint32(0x80000), r.rd(regRXPBSIZE))
		require.Equal(t, uint32(0xA0000), r.rd(regTXPBSIZE))
		require.Zero(t, r.rd(regRXPBSIZE+4))
		r.wr(regRXPBSIZE, 0x20000) // ixgbe_set_rxpba writes them
		r.wr(regCTRL, ctrlRst)
	}
}

// TestFlowDirectorCompletes: FDIRCTRL.INIT_DONE after any FDIRCTRL write
// (also the re-init write with INIT_DONE clear), FDIRCMD.CMD self-clears,
// including through the 64-bit FDIRHASH/FDIRCMD write
// ixgbe_fdir_add_signature_filter_82599 does (§8.2.3.21).
func TestFlowDirectorCompletes(t *testing.T) {
	r := newRig(t)
	r.wr(regFDIRCTRL, 0x00120002)
	require.Equal(t, uint32(0x00120002|fdirctrlInitDone), r.rd(regFDIRCTRL))
	r.wr(regFDIRCTRL, r.rd(regFDIRCTRL)&^fdirctrlInitDone)
	require.NotZero(t, r.rd(regFDIRCTRL)&fdirctrlInitDone)

	r.wr(regFDIRCMD, 0x00000100|1) // CLEARHT + ADD_FLOW
	require.Equal(t, uint32(0x100), r.rd(regFDIRCMD))

	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], 0x12345678)
	binary.LittleEndian.PutUint32(b[4:], 0x00008000|1)
	r.d.Write(regFDIRHASH, b[:])
	require.Equal(t, uint32(0x12345678), r.rd(regFDIRHASH))
	require.Zero(t, r.rd(regFDIRCMD)&fdircmdCmdMask)
}

// TestRxTargetTrimmedToMaxFrame: the zero-copy views add up to the
// largest frame the MAC accepts, never whole buffers beyond it (Linux
// build_skb buffers have skb_shared_info / the next buffer behind the
// maximum frame). An overlong completion is an oversize drop.
func TestRxTargetTrimmedToMaxFrame(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	bufs, ok := r.d.RxTarget(0)
	require.True(t, ok)
	require.Len(t, bufs, 1)
	require.Len(t, bufs[0], 1518, "1514 + VLAN tag")
	require.ErrorIs(t, r.d.RxComplete(0, 1519), ErrOversize)
	require.EqualValues(t, 1, r.d.Stats().RxOversize)

	// Jumbo: MAXFRS.MFS 9018 with HLREG0.JUMBOEN (ixgbe_set_rx_buffer_len).
	r.wr(regMAXFRS, 9018<<16)
	r.wr(regHLREG0, r.rd(regHLREG0)|hlreg0JumboEn)
	bufs, ok = r.d.RxTarget(0)
	require.True(t, ok)
	require.Len(t, bufs, 5)
	require.Equal(t, 9018, bufsLen(bufs))
	require.Len(t, bufs[4], 9018-4*2048)
	f := udp4Frame(testMAC, payloadBytes(9000-28))
	off := 0
	for _, b := range bufs {
		off += copy(b, f[off:])
	}
	require.Equal(t, len(f), off)
	require.NoError(t, r.d.RxComplete(0, len(f)))
	_, hi := r.rxDesc(0, 4)
	require.Equal(t, len(f)-4*2048, wbLen(hi))
	require.NotZero(t, wbStatus(hi)&rxdStatEOP)
}

// TestRxDisableWaitsForInflightReceive: §4.6.7.1, RXDCTL.ENABLE reads 1
// until the queue has stopped. A zero-copy receive between RxTarget and
// RxComplete/RxAbort keeps it set, so ixgbe_disable_rx_queue's poll does
// not let the driver free buffers still being written.
func TestRxDisableWaitsForInflightReceive(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	rxdctl := rxQueueBase(0) + qRXDCTL

	_, ok := r.d.RxTarget(0)
	require.True(t, ok)
	r.wr(rxdctl, r.rd(rxdctl)&^rxdctlEnable|rxdctlSWFlsh)
	require.NotZero(t, r.rd(rxdctl)&rxdctlEnable, "receive in flight")
	require.ErrorIs(t, r.d.RxComplete(0, 60), ErrStale)
	require.Zero(t, r.rd(rxdctl)&rxdctlEnable, "stopped once the receive ended")

	r.wr(rxdctl, rxdctlEnable)
	_, ok = r.d.RxTarget(0)
	require.True(t, ok)
	r.wr(rxdctl, 0)
	r.wr(regCTRL, ctrlRst) // even a reset does not end an in-flight write
	require.NotZero(t, r.rd(rxdctl)&rxdctlEnable)
	r.d.RxAbort(0)
	require.Zero(t, r.rd(rxdctl))
}

// TestRxStateAndNotify: RxState classifies the queue for the port reader,
// and Config.RxNotify fires on the writes that can change it.
func TestRxStateAndNotify(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var got []int
	r.d.cfg.RxNotify = func(q int) {
		mu.Lock()
		got = append(got, q)
		mu.Unlock()
	}
	take := func() []int {
		mu.Lock()
		defer mu.Unlock()
		g := got
		got = nil
		return g
	}
	require.Equal(t, RxDrop, r.d.RxState(0), "after power-on")
	require.Equal(t, RxDrop, r.d.RxState(-1))

	base := rxQueueBase(0)
	r.wr(base+qRDBAL, uint32(rxRingOf(0)))
	r.wr(base+qRDLEN, 8*16)
	r.wr(base+qSRRCTL, 2|descTypeAdvOneBuf<<srrctlDescTypeSh)
	r.wr(base+qRXDCTL, rxdctlEnable)
	r.wr(regRXCTRL, rxctrlRXEN)
	require.Equal(t, []int{0, 0, 0, 0, -1}, take())
	require.Equal(t, RxNoRoom, r.d.RxState(0), "RDT = RDH: no descriptors")

	for i := 0; i < 8; i++ {
		r.post(0, i)
	}
	r.wr(base+qRDT, 7)
	require.Equal(t, []int{0}, take())
	require.Equal(t, RxReady, r.d.RxState(0))

	r.wr(0x2100, 2|descTypeAdvHdrSplit<<srrctlDescTypeSh) // SRRCTL alias
	require.Equal(t, []int{0}, take())
	require.Equal(t, RxDrop, r.d.RxState(0), "header split goes through Receive")

	r.wr(regCTRL, ctrlRst)
	require.Equal(t, []int{-1}, take())
	require.Equal(t, RxDrop, r.d.RxState(0))
}

// TestTxSCTPChecksum: DCMD/POPTS.TXSM with TUCMD.L4T = SCTP fills the
// CRC-32C (ixgbe_tx_csum for CHECKSUM_PARTIAL SCTP, NETIF_F_SCTP_CRC).
func TestTxSCTPChecksum(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 8)
	sctp := make([]byte, 12+16)
	binary.BigEndian.PutUint16(sctp[0:], 5000)
	binary.BigEndian.PutUint16(sctp[2:], 6000)
	copy(sctp[12:], payloadBytes(16))
	f := append(append(ethHdr(peerMAC, testMAC, etherTypeIPv4), ip4Hdr(132, len(sctp))...), sctp...)
	copy(r.bytes(txBufs, len(f)), f)

	r.txCtx(0, 0, 14, 20, tucmdIPv4|tucmdL4TSCT, 0, 0)
	r.txData(0, 1, txBufs, len(f), txdCmdEOP|txdCmdRS, txdPoptsTXSM|uint32(len(f))<<14)
	r.wr(txQueueBase(0)+qRDT, 2)

	frames := r.wire.get()
	require.Len(t, frames, 1)
	out := frames[0]
	l4 := out[34:]
	want := binary.LittleEndian.Uint32(l4[8:])
	chk := append([]byte(nil), l4...)
	clear(chk[8:12])
	require.Equal(t, crc32.Checksum(chk, crc32.MakeTable(crc32.Castagnoli)), want)
	require.NotZero(t, want)
}
