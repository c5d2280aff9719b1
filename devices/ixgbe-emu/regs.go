package ixgbeemu

// Register offsets and bit definitions. Names follow Linux
// drivers/net/ethernet/intel/ixgbe/ixgbe_type.h; section numbers refer to the
// Intel 82599 10 GbE Controller Datasheet (rev. 3.x), chapter 8 (register
// descriptions) unless stated otherwise.

// General control (§8.2.3.1).
const (
	regCTRL    = 0x00000
	regSTATUS  = 0x00008
	regCTRLEXT = 0x00018

	ctrlGIODis = 1 << 2  // CTRL.PCIe Master (GIO) Disable
	ctrlLnkRst = 1 << 3  // CTRL.LRST, self-clearing
	ctrlRst    = 1 << 26 // CTRL.RST, self-clearing
	statusLU   = 1 << 7  // STATUS.Linkup (informational on 82599)
	statusGIO  = 1 << 19 // STATUS.GIO Master Enable Status
)

// EEPROM / flash / semaphores (§8.2.3.2, §8.2.3.4).
const (
	regEEC  = 0x10010
	regEERD = 0x10014
	regEEWR = 0x10018
	regSWSM = 0x10140
	regFWSM = 0x10148
	regGSSR = 0x10160

	eecREQ       = 1 << 6
	eecGNT       = 1 << 7
	eecPRES      = 1 << 8
	eecARD       = 1 << 9
	eecSizeShift = 11 // EEC.EE_SIZE bits 14:11, words = 1 << (size + 6)
	eerdStart    = 1 << 0
	eerdDone     = 1 << 1
	swsmSMBI     = 1 << 0
	fwsmFWVal    = 1 << 15
)

// Interrupt registers (§8.2.3.5).
const (
	regEICR     = 0x00800
	regEICS     = 0x00808
	regEIAC     = 0x00810
	regEIMS     = 0x00880
	regEIMC     = 0x00888
	regEIAM     = 0x00890
	regGPIE     = 0x00898
	regIVARMisc = 0x00A00
	regEICSEx   = 0x00A90 // + 4n, n = 0..1
	regEIMSEx   = 0x00AA0
	regEIMCEx   = 0x00AB0
	regEIAMEx   = 0x00AD0

	gpieMSIXMode = 1 << 4
	gpieOCD      = 1 << 5
	gpieEIAME    = 1 << 30
	gpiePBA      = 1 << 31

	eicrRTxQ     = 0x0000FFFF
	eicrRxMiss   = 1 << 17
	eicrLSC      = 1 << 20
	eicrTCPTimer = 1 << 30
	eicrOther    = 1 << 31
	// eicrOthers are the non-queue causes the "other" MSI-X vector
	// (IVAR_MISC byte 1) signals in MSI-X mode (§7.3.4, Table 7-41).
	eicrOthers = 0xBFFF0000

	ivarValid = 0x80
	eitrMask  = 0x00000FF8 // EITR.ITR_INTERVAL bits 11:3, 2 us units (§8.2.3.5.12)
)

// EITR returns the offset of EITR(n) (§8.2.3.5.12).
func regEITR(n int) uint32 {
	if n <= 23 {
		return 0x00820 + uint32(n)*4
	}
	return 0x12300 + uint32(n-24)*4
}

func regIVAR(n int) uint32 { return 0x00900 + uint32(n)*4 }

// MAC / link (§8.2.3.22).
const (
	regHLREG0 = 0x04240
	regMSCA   = 0x0425C
	regMSRWD  = 0x04260
	regMAXFRS = 0x04268 // MHADD in ixgbe_type.h
	regAUTOC  = 0x042A0
	regLINKS  = 0x042A4
	regAUTOC2 = 0x042A8
	regANLP1  = 0x042B0

	hlreg0JumboEn  = 1 << 2
	hlreg0Lpbk     = 1 << 15 // HLREG0.LPBK: MAC loopback (§8.2.3.22.8)
	msCAMDICommand = 1 << 30
	autocANRestart = 1 << 12
	// AUTOC.LMS (bits 15:13) = 001: 10 Gb/s link, no auto-negotiation
	// (IXGBE_AUTOC_LMS_10G_LINK_NO_AN), which ixgbe_get_link_capabilities_82599
	// reports as 10GB_FULL without polling for AN completion.
	autocDefault  = 1 << 13
	linksKXANComp = 1 << 31
	linksUp       = 1 << 30
	links10G      = 3 << 28
	anlp1ANState  = 0x00040000 // non-zero AN state, ixgbe_reset_pipeline_82599 polls it
)

// Receive (§8.2.3.7, §8.2.3.8).
const (
	regRDRXCTL   = 0x02F00
	regRXCTRL    = 0x03000
	regRQSMR     = 0x02300 // + 4n, n = 0..31
	regRXCSUM    = 0x05000
	regFCTRL     = 0x05080
	regVLNCTRL   = 0x05088
	regMCSTCTRL  = 0x05090
	regMTA       = 0x05200 // + 4n, n = 0..127
	regRALLow    = 0x05400 // RAL/RAH(n), n <= 15 alias
	regRAL       = 0x0A200 // + 8n, n = 0..127
	regPSRTYPE   = 0x0EA00 // + 4n, n = 0..63
	regSECRXCTRL = 0x08D00
	regSECRXSTAT = 0x08D04
	regSECTXSTAT = 0x08804
	regRXPBSIZE  = 0x03C00 // + 4n, n = 0..7
	regTXPBSIZE  = 0x0CC00 // + 4n, n = 0..7
	regFDIRCTRL  = 0x0EE00
	regFDIRCMD   = 0x0EE2C

	rdrxctlDMAIDone = 1 << 3
	// SECRXSTAT/SECTXSTAT (security registers, §8.2.3.26): bit 0 SECRX_RDY /
	// SECTX_RDY (security block idle), bit 1 SECRX_OFF_DIS / SECTX_OFF_DIS
	// (security offload fused off).
	secStatRdy    = 1 << 0
	secStatOffDis = 1 << 1
	// FDIRCTRL.INIT_DONE and FDIRCMD.CMD (bits 1:0, self-clearing when the
	// command completes) (flow director registers, §8.2.3.21).
	fdirctrlInitDone = 1 << 3
	fdircmdCmdMask   = 0x3
	rxctrlRXEN       = 1 << 0
	fctrlMPE         = 1 << 8
	fctrlUPE         = 1 << 9
	fctrlBAM         = 1 << 10
	mcstctrlMFE      = 1 << 2
	rahAV            = 1 << 31
	rahMask          = 0x8000FFFF // RAH: RAH 15:0 and AV; bits 30:16 reserved, read 0

	rxdctlEnable = 1 << 25
	rxdctlSWFlsh = 1 << 26

	srrctlBSizePktMask = 0x1F      // 1 KB units
	srrctlBSizeHdrMask = 0x3F << 8 // 64 B units
	srrctlDescTypeSh   = 25
	srrctlDropEn       = 1 << 28

	descTypeLegacy      = 0
	descTypeAdvOneBuf   = 1
	descTypeAdvHdrSplit = 2
	descTypeAdvHSAlways = 5

	psrtypeTCPHdr  = 1 << 4
	psrtypeUDPHdr  = 1 << 5
	psrtypeIPv4Hdr = 1 << 8
	psrtypeIPv6Hdr = 1 << 9
	psrtypeL2Hdr   = 1 << 12
)

// Per-queue register windows (§8.2.3.8, §8.2.3.9).
const (
	qRDBAL  = 0x00
	qRDBAH  = 0x04
	qRDLEN  = 0x08
	qDCA    = 0x0C
	qRDH    = 0x10
	qSRRCTL = 0x14
	qRDT    = 0x18
	qRXDCTL = 0x28
	// tx window uses the same layout plus head write-back.
	qTDWBAL = 0x38
	qTDWBAH = 0x3C
)

// RxQueueBase returns the register window of rx queue n (§8.2.3.8.1).
func rxQueueBase(n int) uint32 {
	if n < 64 {
		return 0x01000 + uint32(n)*0x40
	}
	return 0x0D000 + uint32(n-64)*0x40
}

func txQueueBase(n int) uint32 { return 0x06000 + uint32(n)*0x40 }

// RxTailOffset is where rx queue n's tail register (RDT) lies in BAR0.
// The driver writes it after each refill, and nothing but the next frame
// depends on it: the write can wait for the next exit (coalesced MMIO).
func RxTailOffset(n int) uint64 { return uint64(rxQueueBase(n) + qRDT) }

// Transmit (§8.2.3.9).
const (
	regDMATXCTL   = 0x04A80
	regDTXTCPFLGL = 0x04A88
	regDTXTCPFLGH = 0x04A8C
	regTQSM       = 0x08600 // + 4n, n = 0..31

	dmatxctlTE   = 1 << 0
	txdctlEnable = 1 << 25
	txdctlSWFlsh = 1 << 26
)

// Statistics (§8.2.3.23). All are clear-on-read.
const (
	regCRCERRS  = 0x04000
	regMPC      = 0x03FA0 // + 4n, n = 0..7
	regRNBC     = 0x03FC0 // + 4n
	regPRC64    = 0x0405C // PRC64..PRC1522 at +4
	regGPRC     = 0x04074
	regBPRC     = 0x04078
	regMPRC     = 0x0407C
	regGPTC     = 0x04080
	regGORCL    = 0x04088
	regGORCH    = 0x0408C
	regGOTCL    = 0x04090
	regGOTCH    = 0x04094
	regRUC      = 0x040A4
	regROC      = 0x040AC
	regTORL     = 0x040C0
	regTORH     = 0x040C4
	regTPR      = 0x040D0
	regTPT      = 0x040D4
	regPTC64    = 0x040D8 // PTC64..PTC1522 at +4
	regMPTC     = 0x040F0
	regBPTC     = 0x040F4
	regRXNFGPC  = 0x041B0
	regRXDGPC   = 0x02F50
	regQPRC     = 0x01030 // + 0x40n, n = 0..15
	regQPRDC    = 0x01430 // + 0x40n
	regQBRCL    = 0x01034 // + 0x40n
	regQBRCH    = 0x01038 // + 0x40n
	regQPTC     = 0x08680 // + 4n
	regQBTCL    = 0x08700 // + 8n
	regQBTCH    = 0x08704 // + 8n
	numStatRegs = 16
)

// BAR0Size is the size of the memory BAR holding the register file.
const BAR0Size = 512 << 10
