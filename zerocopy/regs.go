package zerocopy

// 82599 registers and descriptor fields the VMM programs (Intel 82599 10 GbE
// Controller Datasheet 331520, chapter 8; names from Linux ixgbe_type.h).
// Queue 0 is the only queue used.
const (
	regCTRL     = 0x00000
	regFCTRL    = 0x05080
	regRXCTRL   = 0x03000
	regDMATXCTL = 0x04A80
	regHLREG0   = 0x04240
	regMAXFRS   = 0x04268
	regRDBAL    = 0x01000
	regRDBAH    = 0x01004
	regRDLEN    = 0x01008
	regRDH      = 0x01010
	regSRRCTL   = 0x01014
	regRDT      = 0x01018
	regRXDCTL   = 0x01028
	regTDBAL    = 0x06000
	regTDBAH    = 0x06004
	regTDLEN    = 0x06008
	regTDH      = 0x06010
	regTDT      = 0x06018
	regTXDCTL   = 0x06028

	ctrlRst       = 1 << 26
	hlreg0JumboEn = 1 << 2
	fctrlMPE      = 1 << 8
	fctrlUPE      = 1 << 9
	fctrlBAM      = 1 << 10
	rxctrlRXEN    = 1 << 0
	dmatxctlTE    = 1 << 0
	xdctlEnable   = 1 << 25
	srrctlOneBuf  = 1 << 25 // DESCTYPE 001: advanced, one buffer

	rxdStatDD  = 1 << 0
	rxdStatEOP = 1 << 1

	txdDTypData  = 3 << 20
	txdDTypCtxt  = 2 << 20
	txdCmdTSE    = 1 << 31
	txdPoptsIXSM = 1 << 8 // in olinfo_status (dword 3)
	txdPoptsTXSM = 1 << 9
	tucmdIPv4    = 1 << 10 // context descriptor TUCMD (dword 2)
	tucmdL4TTCP  = 1 << 11
	txdCmdEOP    = 1 << 24
	txdCmdIFCS   = 1 << 25
	txdCmdRS     = 1 << 27
	txdCmdDEXT   = 1 << 29
	txdPaylenSh  = 14 // in olinfo_status (dword 3)
)
