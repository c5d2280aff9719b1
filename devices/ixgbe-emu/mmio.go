package ixgbeemu

import "encoding/binary"

// Register dispatch is table driven, in the spirit of QEMU's igb_core.c
// macreg_readops/macreg_writeops: slot[off/4] names a handler and an
// instance number; offsets without a handler are plain read/write storage
// (which makes every unmodelled register of §8 benign: it reads back what
// was written, 0 after reset).

type regOps struct {
	read  func(d *Device, n int) uint32
	write func(d *Device, n int, v uint32)
}

type regSlot struct {
	ops *regOps
	n   int
}

var (
	slotIndex []uint16  // BAR0Size/4 entries, 0 = plain register
	slots     []regSlot // slots[0] unused
)

func def(off uint32, n int, ops *regOps) {
	if slotIndex[off/4] != 0 {
		panic("ixgbeemu: register table conflict")
	}
	slots = append(slots, regSlot{ops: ops, n: n})
	slotIndex[off/4] = uint16(len(slots) - 1)
}

func init() {
	slotIndex = make([]uint16, BAR0Size/4)
	slots = []regSlot{{}}

	// General (§8.2.3.1).
	def(regCTRL, 0, &regOps{read: plainRead(regCTRL), write: (*Device).writeCTRL})
	def(regSTATUS, 0, &regOps{read: (*Device).readSTATUS, write: ignoreWrite})
	// EEPROM and semaphores (§8.2.3.2, §8.2.3.4).
	def(regEEC, 0, &regOps{read: (*Device).readEEC, write: plainWrite(regEEC)})
	def(regEERD, 0, &regOps{read: plainRead(regEERD), write: (*Device).writeEERD})
	def(regEEWR, 0, &regOps{read: plainRead(regEEWR), write: (*Device).writeEEWR})
	def(regSWSM, 0, &regOps{read: (*Device).readSWSM, write: func(d *Device, _ int, v uint32) { plainWrite(regSWSM)(d, 0, v&3) }})
	def(regFWSM, 0, &regOps{read: plainRead(regFWSM), write: ignoreWrite})
	// MAC/link (§8.2.3.22).
	def(regMSCA, 0, &regOps{read: plainRead(regMSCA), write: (*Device).writeMSCA})
	def(regMSRWD, 0, &regOps{read: func(d *Device, _ int) uint32 { return 0xFFFF0000 | plainRead(regMSRWD)(d, 0)&0xFFFF }, write: plainWrite(regMSRWD)})
	def(regAUTOC, 0, &regOps{read: plainRead(regAUTOC), write: func(d *Device, _ int, v uint32) { plainWrite(regAUTOC)(d, 0, v&^autocANRestart) }})
	def(regLINKS, 0, &regOps{read: (*Device).readLINKS, write: ignoreWrite})
	def(regANLP1, 0, &regOps{read: func(*Device, int) uint32 { return anlp1ANState }, write: ignoreWrite})
	// Receive status registers that must read "ready" (§8.2.3.8.8, §8.2.3.26).
	def(regRDRXCTL, 0, &regOps{read: func(d *Device, _ int) uint32 { return plainRead(regRDRXCTL)(d, 0) | rdrxctlDMAIDone }, write: plainWrite(regRDRXCTL)})
	// The security block is always ready, and IPsec offload reads as fused
	// off: the model does not implement it, and Linux
	// (ixgbe_init_ipsec_offload) then does not advertise ESP offload.
	secStat := &regOps{read: func(*Device, int) uint32 { return secStatRdy | secStatOffDis }, write: ignoreWrite}
	def(regSECRXSTAT, 0, secStat)
	def(regSECTXSTAT, 0, secStat)
	// Receive enable (§8.2.3.8.10): the port reader must learn about it.
	def(regRXCTRL, 0, &regOps{read: plainRead(regRXCTRL), write: func(d *Device, _ int, v uint32) {
		plainWrite(regRXCTRL)(d, 0, v)
		d.rxNotify(-1)
	}})
	// Flow Director (§7.1.2.7, §8.2.3.21): there is no filter table, but
	// table initialisation completes at once (FDIRCTRL.INIT_DONE, which
	// ixgbe_fdir_enable_82599 / ixgbe_reinit_fdir_tables_82599 poll) and
	// filter commands complete at once (FDIRCMD.CMD self-clears,
	// ixgbe_fdir_check_cmd_complete). All frames go to the queue the VMM
	// delivers to, as if no filter matched.
	def(regFDIRCTRL, 0, &regOps{read: plainRead(regFDIRCTRL), write: func(d *Device, _ int, v uint32) {
		plainWrite(regFDIRCTRL)(d, 0, v|fdirctrlInitDone)
	}})
	def(regFDIRCMD, 0, &regOps{read: plainRead(regFDIRCMD), write: func(d *Device, _ int, v uint32) {
		plainWrite(regFDIRCMD)(d, 0, v&^fdircmdCmdMask)
	}})

	// RAL/RAH (§8.2.3.7.9, §8.2.3.7.10): canonical at 0xA200+8n, alias
	// 0x5400+8n for n <= 15.
	ral := &regOps{read: func(d *Device, n int) uint32 { return plainRead(regRAL+uint32(n)*4)(d, 0) }, write: (*Device).writeRAR}
	for n := 0; n < 128; n++ {
		def(regRAL+uint32(n)*8, 2*n, ral)
		def(regRAL+uint32(n)*8+4, 2*n+1, ral)
		if n <= 15 {
			def(regRALLow+uint32(n)*8, 2*n, ral)
			def(regRALLow+uint32(n)*8+4, 2*n+1, ral)
		}
	}

	// Queues (§8.2.3.8, §8.2.3.9).
	rx := &regOps{read: (*Device).readRxQ, write: (*Device).writeRxQ}
	tx := &regOps{read: (*Device).readTxQ, write: (*Device).writeTxQ}
	srr := &regOps{read: func(d *Device, n int) uint32 { return d.readRxQ(n<<8 | qSRRCTL) }, write: func(d *Device, n int, v uint32) { d.writeRxQ(n<<8|qSRRCTL, v) }}
	for n := 0; n < MaxQueues; n++ {
		for _, r := range []int{qRDBAL, qRDBAH, qRDLEN, qRDH, qSRRCTL, qRDT, qRXDCTL} {
			def(rxQueueBase(n)+uint32(r), n<<8|r, rx)
		}
		if n < 16 {
			def(0x02100+uint32(n)*4, n, srr)
		}
		for _, r := range []int{qRDBAL, qRDBAH, qRDLEN, qRDH, qRDT, qRXDCTL, qTDWBAL, qTDWBAH} {
			def(txQueueBase(n)+uint32(r), n<<8|r, tx)
		}
	}

	// Interrupts (§8.2.3.5).
	def(regEICR, 0, &regOps{read: (*Device).readEICR, write: (*Device).writeEICR})
	def(regEICS, 0, &regOps{read: (*Device).readEICS, write: (*Device).writeEICS})
	def(regEIMS, 0, &regOps{read: (*Device).readEIMS, write: (*Device).writeEIMS})
	def(regEIMC, 0, &regOps{read: (*Device).readEIMS, write: (*Device).writeEIMC})
	def(regEIAC, 0, &regOps{read: (*Device).readEIAC, write: (*Device).writeEIAC})
	def(regEIAM, 0, &regOps{read: (*Device).readEIAM, write: (*Device).writeEIAM})
	def(regGPIE, 0, &regOps{read: (*Device).readGPIE, write: (*Device).writeGPIE})
	def(regIVARMisc, 0, &regOps{read: (*Device).readIVARMisc, write: (*Device).writeIVARMisc})
	for i := 0; i < 2; i++ {
		def(regEICSEx+uint32(i)*4, i, &regOps{read: (*Device).readEIMSEx0, write: (*Device).writeEICSEx})
		def(regEIMSEx+uint32(i)*4, i, &regOps{read: (*Device).readEIMSEx, write: (*Device).writeEIMSEx})
		def(regEIMCEx+uint32(i)*4, i, &regOps{read: (*Device).readEIMSEx, write: (*Device).writeEIMCEx})
		def(regEIAMEx+uint32(i)*4, i, &regOps{read: (*Device).readEIAMEx, write: (*Device).writeEIAMEx})
	}
	eitr := &regOps{read: (*Device).readEITR, write: (*Device).writeEITR}
	ivar := &regOps{read: (*Device).readIVAR, write: (*Device).writeIVAR}
	for n := 0; n < MSIXVectors; n++ {
		def(regEITR(n), n, eitr)
		def(regIVAR(n), n, ivar)
	}

	defineStats()
}

func defineStats() {
	cr := func(off uint32, get func(c *counters) *counter) {
		def(off, 0, &regOps{read: func(d *Device, _ int) uint32 { return uint32(get(&d.cnt).readClear()) }, write: ignoreWrite})
	}
	pair := func(lo uint32, get func(c *counters) *counter) {
		def(lo, 0, &regOps{read: func(d *Device, _ int) uint32 { return get(&d.cnt).readLow() }, write: ignoreWrite})
		def(lo+4, 0, &regOps{read: func(d *Device, _ int) uint32 { return get(&d.cnt).readHigh() }, write: ignoreWrite})
	}
	cr(regGPRC, func(c *counters) *counter { return &c.gprc })
	cr(regBPRC, func(c *counters) *counter { return &c.bprc })
	cr(regMPRC, func(c *counters) *counter { return &c.mprc })
	cr(regGPTC, func(c *counters) *counter { return &c.gptc })
	cr(regBPTC, func(c *counters) *counter { return &c.bptc })
	cr(regMPTC, func(c *counters) *counter { return &c.mptc })
	cr(regTPR, func(c *counters) *counter { return &c.tpr })
	cr(regTPT, func(c *counters) *counter { return &c.tpt })
	cr(regROC, func(c *counters) *counter { return &c.roc })
	cr(regRUC, func(c *counters) *counter { return &c.ruc })
	cr(regRXNFGPC, func(c *counters) *counter { return &c.rxnfgpc })
	cr(regRXDGPC, func(c *counters) *counter { return &c.rxdgpc })
	pair(regGORCL, func(c *counters) *counter { return &c.gorc })
	pair(regGOTCL, func(c *counters) *counter { return &c.gotc })
	pair(regTORL, func(c *counters) *counter { return &c.tor })
	for i := 0; i < 8; i++ {
		i := i
		cr(regMPC+uint32(i)*4, func(c *counters) *counter { return &c.mpc[i] })
	}
	for i := 0; i < 6; i++ {
		i := i
		cr(regPRC64+uint32(i)*4, func(c *counters) *counter { return &c.prc[i] })
		cr(regPTC64+uint32(i)*4, func(c *counters) *counter { return &c.ptc[i] })
	}
	for i := 0; i < numStatRegs; i++ {
		i := i
		cr(regQPRC+uint32(i)*0x40, func(c *counters) *counter { return &c.qprc[i] })
		cr(regQPRDC+uint32(i)*0x40, func(c *counters) *counter { return &c.qprdc[i] })
		// QBRC_L/H and QBTC_L/H: 36-bit byte counters, low/high pair.
		def(regQBRCL+uint32(i)*0x40, 0, &regOps{read: func(d *Device, _ int) uint32 { return d.cnt.qbrc[i].readLow() }, write: ignoreWrite})
		def(regQBRCH+uint32(i)*0x40, 0, &regOps{read: func(d *Device, _ int) uint32 { return d.cnt.qbrc[i].readHigh() }, write: ignoreWrite})
		cr(regQPTC+uint32(i)*4, func(c *counters) *counter { return &c.qptc[i] })
		pair(regQBTCL+uint32(i)*8, func(c *counters) *counter { return &c.qbtc[i] })
	}
	for _, off := range zeroStatRegs {
		off := off
		cr(off, func(c *counters) *counter { return c.zero[off] })
	}
	for i := uint32(0); i < 8; i++ {
		for _, b := range []uint32{0x03F00, 0x04140, 0x03F20, 0x04160, regRNBC} {
			off := b + 4*i
			cr(off, func(c *counters) *counter { return c.zero[off] })
		}
	}
}

func plainRead(off uint32) func(*Device, int) uint32 {
	return func(d *Device, _ int) uint32 {
		d.mu.RLock()
		defer d.mu.RUnlock()
		return d.store[off/4]
	}
}

func plainWrite(off uint32) func(*Device, int, uint32) {
	return func(d *Device, _ int, v uint32) {
		d.mu.Lock()
		d.store[off/4] = v
		d.mu.Unlock()
	}
}

func ignoreWrite(*Device, int, uint32) {}

// ReadReg reads the 32-bit register at off (BAR0 offset; low 2 bits ignored).
// Offsets outside BAR0 read 0.
func (d *Device) ReadReg(off uint32) uint32 {
	off &^= 3
	if off >= BAR0Size {
		return 0
	}
	if s := slotIndex[off/4]; s != 0 {
		sl := &slots[s]
		return sl.ops.read(d, sl.n)
	}
	return plainRead(off)(d, 0)
}

// WriteReg writes the 32-bit register at off. Offsets outside BAR0 are
// ignored.
func (d *Device) WriteReg(off uint32, v uint32) {
	off &^= 3
	if off >= BAR0Size {
		return
	}
	if s := slotIndex[off/4]; s != 0 {
		sl := &slots[s]
		sl.ops.write(d, sl.n, v)
		return
	}
	d.mu.Lock()
	d.store[off/4] = v
	d.mu.Unlock()
}

// Read implements bus.Device for BAR0. 4- and 8-byte accesses are register
// accesses (8 bytes = two consecutive registers); narrower reads return the
// bytes of the enclosing register (the 82599 only supports DWORD CSR
// accesses, §3.1.3.3).
func (d *Device) Read(offset uint64, data []byte) {
	clear(data)
	if offset >= BAR0Size || uint64(len(data)) > BAR0Size-offset {
		return
	}
	switch len(data) {
	case 4:
		binary.LittleEndian.PutUint32(data, d.ReadReg(uint32(offset)))
	case 8:
		binary.LittleEndian.PutUint32(data, d.ReadReg(uint32(offset)))
		binary.LittleEndian.PutUint32(data[4:], d.ReadReg(uint32(offset)+4))
	case 1, 2:
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], d.ReadReg(uint32(offset)))
		sh := int(offset & 3)
		if sh+len(data) <= 4 {
			copy(data, b[sh:])
		}
	}
}

// Write implements bus.Device for BAR0. Sub-DWORD writes are ignored.
func (d *Device) Write(offset uint64, data []byte) {
	if offset >= BAR0Size || uint64(len(data)) > BAR0Size-offset {
		return
	}
	switch len(data) {
	case 4:
		d.WriteReg(uint32(offset), binary.LittleEndian.Uint32(data))
	case 8:
		d.WriteReg(uint32(offset), binary.LittleEndian.Uint32(data))
		d.WriteReg(uint32(offset)+4, binary.LittleEndian.Uint32(data[4:]))
	}
}

// --- general registers ---

func (d *Device) writeCTRL(_ int, v uint32) {
	if v&ctrlRst != 0 {
		// §4.2.1.6.1: software reset; CTRL.RST self-clears when done.
		d.reset()
		v &^= ctrlGIODis
		defer d.rxNotify(-1)
	}
	// LNK_RST (§4.2.1.6.2) restarts link: the link comes straight back up,
	// so nothing to do but self-clear.
	d.mu.Lock()
	d.store[regCTRL/4] = v &^ (ctrlRst | ctrlLnkRst)
	d.gioDis = v&ctrlGIODis != 0
	d.mu.Unlock()
}

func (d *Device) readSTATUS(int) uint32 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var v uint32
	if !d.gioDis {
		v |= statusGIO
	}
	if d.linkUp {
		v |= statusLU
	}
	return v
}

func (d *Device) readEEC(int) uint32 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	v := d.store[regEEC/4]&^(0xF<<eecSizeShift|eecGNT) | eecPRES | eecARD | eepromSizeField<<eecSizeShift
	if v&eecREQ != 0 {
		v |= eecGNT
	}
	return v
}

// writeEERD: §8.2.3.2.2, a write with START reads word ADDR (bits 15:2) and
// completes immediately: DONE set, data in bits 31:16.
func (d *Device) writeEERD(_ int, v uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v&eerdStart == 0 {
		d.store[regEERD/4] = v
		return
	}
	addr := (v >> 2) & 0x3FFF
	var w uint16 = 0xFFFF
	if int(addr) < len(d.eeprom) {
		w = d.eeprom[addr]
	}
	d.store[regEERD/4] = uint32(w)<<16 | addr<<2 | eerdDone
}

// writeEEWR: §8.2.3.2.3, EEPROM write through EEWR (used by ethtool -E).
func (d *Device) writeEEWR(_ int, v uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	addr := (v >> 2) & 0x3FFF
	if v&eerdStart != 0 && int(addr) < len(d.eeprom) {
		d.eeprom[addr] = uint16(v >> 16)
	}
	d.store[regEEWR/4] = v&^eerdStart | eerdDone
}

// readSWSM: §8.2.3.4.11, reading SWSM returns the semaphore and sets SMBI.
func (d *Device) readSWSM(int) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.store[regSWSM/4]
	d.store[regSWSM/4] = v | swsmSMBI
	return v
}

// writeMSCA: §8.2.3.22.11, an MDIO command completes at once (MDI_COMMAND
// self-clears); there is no PHY, so reads return 0xFFFF in MSRWD.
func (d *Device) writeMSCA(_ int, v uint32) {
	d.mu.Lock()
	d.store[regMSCA/4] = v &^ msCAMDICommand
	d.mu.Unlock()
}

// readLINKS: §8.2.3.22.20. Always 10 Gb/s when up.
func (d *Device) readLINKS(int) uint32 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.linkUp {
		return 0
	}
	return linksKXANComp | linksUp | links10G
}

// writeRAR keeps the RAH.AV cache the receive filter uses.
func (d *Device) writeRAR(n int, v uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n&1 == 1 {
		v &= rahMask
	}
	d.store[regRAL/4+uint32(n)] = v
	if n&1 == 1 {
		e := n / 2
		if v&rahAV != 0 {
			d.rarValid[e/64] |= 1 << (e % 64)
		} else {
			d.rarValid[e/64] &^= 1 << (e % 64)
		}
	}
}
