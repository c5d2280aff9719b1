package ixgbeemu

import "time"

// Interrupt block (datasheet §7.3 "Interrupts", registers §8.2.3.5).
//
// MSI-X mode (GPIE.MSIX_MODE=1): each queue cause is routed by IVAR(n)
// (§8.2.3.5.16: IVAR(n) serves queues 2n and 2n+1, byte 0 = rx 2n,
// byte 1 = tx 2n, byte 2 = rx 2n+1, byte 3 = tx 2n+1; bit 7 = valid) to an
// MSI-X vector; the vector's cause bit is pending in vcause (EICR[15:0]
// mirrors vectors 0..15, EICS_EX/EIMS_EX/EIMC_EX/EIAM_EX cover 0..63). The
// non-queue causes (EICR[31:16]) are routed by IVAR_MISC byte 1 ("other")
// and byte 0 (TCP timer). A vector fires when it has an unmasked pending
// cause and its EITR interval has elapsed since it last fired (§7.3.2.1
// "Interrupt throttling"). On firing: EIAC auto-clear of the cause (vectors
// 16..63 have no EICR bit and are always auto-cleared), then EIAM auto-mask
// if GPIE.EIAME (§7.3.4.2, §7.3.4.3).
//
// Legacy INTx / MSI mode (GPIE.MSIX_MODE=0): IVAR entries select an EICR bit
// 0..15; the line is asserted while EICR & EIMS != 0 (moderated by EITR(0))
// and a read of EICR clears all causes (§7.3.4.1).
//
// EICR read in MSI-X mode clears the queue bits; with GPIE.OCD ("other clear
// disable") the non-queue bits survive the read and must be cleared by
// writing 1s to EICR, which is what Linux does (it reads causes through
// EICS, which returns EICR without clearing — the 82598 errata #26
// workaround kept for 82599).
//
// All methods run with d.imu held.

type vecState struct {
	timer *time.Timer
	busy  bool // inside the moderation interval after firing
}

type intrState struct {
	d        *Device
	gpie     uint32
	eicr     uint32 // MSI-X: bits 31:16 only; legacy: all 32 bits
	vcause   uint64 // MSI-X vector causes
	eims     uint32 // bits 31:16
	vmask    uint64 // EIMS[15:0] / EIMS_EX: per vector (legacy: EICR bits 15:0)
	eiac     uint32
	eiam     uint64 // EIAM[15:0] aliases bits 15:0, EIAM_EX all 64
	eiamHi   uint32 // EIAM[31:16]
	eitr     [MSIXVectors]uint32
	ivar     [MSIXVectors]uint32
	ivarMisc uint32
	vec      [MSIXVectors]vecState
	intx     bool
	gen      uint64 // bumped on reset; stale timer callbacks compare it
}

func (ic *intrState) init(d *Device) { ic.d = d }

func (ic *intrState) reset() {
	ic.stopTimers()
	if ic.intx && ic.d.irq != nil {
		ic.d.irq.SetINTx(false)
	}
	d, gen, vec := ic.d, ic.gen+1, ic.vec
	*ic = intrState{d: d, gen: gen, vec: vec}
	for i := range ic.vec {
		ic.vec[i].busy = false
	}
}

func (ic *intrState) stopTimers() {
	ic.gen++
	for i := range ic.vec {
		if t := ic.vec[i].timer; t != nil {
			t.Stop()
		}
		ic.vec[i].busy = false
	}
}

func (ic *intrState) msix() bool { return ic.gpie&gpieMSIXMode != 0 }

// interval returns the EITR(v) moderation interval (§8.2.3.5.12:
// ITR_INTERVAL bits 11:3 in 2 µs units).
func (ic *intrState) interval(v int) time.Duration {
	return time.Duration((ic.eitr[v]&eitrMask)>>3) * 2 * time.Microsecond
}

func miscVec(b uint32) int {
	if b&ivarValid == 0 {
		return -1
	}
	return int(b & 0x3F)
}

func (ic *intrState) otherVec() int { return miscVec(ic.ivarMisc >> 8 & 0xFF) }
func (ic *intrState) tcpVec() int   { return miscVec(ic.ivarMisc & 0xFF) }

// raiseQueue signals an rx (tx=false) or tx completion of queue q.
func (ic *intrState) raiseQueue(q int, tx bool) {
	if q >= 2*MSIXVectors {
		return
	}
	sh := 16*uint(q&1) + 8*b2u(tx)
	e := ic.ivar[q/2] >> sh & 0xFF
	if e&ivarValid == 0 {
		return
	}
	if ic.msix() {
		v := int(e & 0x3F)
		ic.vcause |= 1 << v
		ic.check(v)
		return
	}
	ic.eicr |= 1 << (e & 0xF)
	ic.checkLegacy()
}

func b2u(b bool) uint {
	if b {
		return 1
	}
	return 0
}

// raiseOther sets non-queue cause bits (LSC, RX_MISS, …).
func (ic *intrState) raiseOther(bits uint32) {
	ic.eicr |= bits
	if ic.msix() {
		if v := ic.otherVec(); v >= 0 {
			ic.check(v)
		}
		if v := ic.tcpVec(); v >= 0 {
			ic.check(v)
		}
		return
	}
	ic.checkLegacy()
}

func (ic *intrState) active(v int) bool {
	if (ic.vcause&ic.vmask)>>v&1 != 0 {
		return true
	}
	if v == ic.otherVec() && ic.eicr&ic.eims&eicrOthers != 0 {
		return true
	}
	return v == ic.tcpVec() && ic.eicr&ic.eims&eicrTCPTimer != 0
}

func (ic *intrState) check(v int) {
	if ic.d.closed.Load() || !ic.active(v) || ic.vec[v].busy {
		return // when busy, the moderation timer re-checks on expiry
	}
	ic.fire(v)
}

func (ic *intrState) checkAll() {
	if !ic.msix() {
		ic.checkLegacy()
		return
	}
	for v := 0; v < MSIXVectors; v++ {
		ic.check(v)
	}
}

func (ic *intrState) fire(v int) {
	if ic.d.irq != nil {
		_ = ic.d.irq.Trigger(v)
	}
	bit := uint64(1) << v
	// Auto-clear (§7.3.4.2): EIAC bit for vectors 0..15; 16..63 always.
	if v >= 16 || ic.eiac&uint32(bit) != 0 {
		ic.vcause &^= bit
	}
	var others uint32
	if v == ic.otherVec() {
		others |= ic.eicr & ic.eims & eicrOthers
	}
	if v == ic.tcpVec() {
		others |= ic.eicr & ic.eims & eicrTCPTimer
	}
	ic.eicr &^= others & ic.eiac
	// Auto-mask (§7.3.4.3): only with GPIE.EIAME.
	if ic.gpie&gpieEIAME != 0 {
		ic.vmask &^= ic.eiam & bit
		ic.eims &^= ic.eiamHi & others
	}
	ic.arm(v)
}

func (ic *intrState) arm(v int) {
	iv := ic.interval(v)
	if iv == 0 {
		return
	}
	ic.vec[v].busy = true
	gen := ic.gen
	if ic.vec[v].timer == nil {
		d := ic.d
		ic.vec[v].timer = time.AfterFunc(iv, func() { d.eitrExpired(v, gen) })
		return
	}
	// Reset of an AfterFunc timer keeps the original closure; gen is
	// re-read from the state on expiry instead.
	ic.vec[v].timer.Reset(iv)
}

func (d *Device) eitrExpired(v int, _ uint64) {
	d.imu.Lock()
	defer d.imu.Unlock()
	ic := &d.ic
	if !ic.vec[v].busy {
		return // reset or stopped meanwhile
	}
	ic.vec[v].busy = false
	if ic.msix() {
		ic.check(v)
	} else if v == 0 {
		ic.checkLegacy()
	}
}

func (ic *intrState) legacyPending() bool {
	return ic.eicr&(uint32(ic.vmask&0xFFFF)|ic.eims) != 0
}

func (ic *intrState) checkLegacy() {
	if ic.msix() {
		return
	}
	level := ic.legacyPending()
	switch {
	case level && !ic.intx:
		if ic.vec[0].busy || ic.d.closed.Load() {
			return
		}
		ic.intx = true
		if ic.d.irq != nil {
			ic.d.irq.SetINTx(true)
		}
		ic.arm(0)
	case !level && ic.intx:
		ic.intx = false
		if ic.d.irq != nil {
			ic.d.irq.SetINTx(false)
		}
	}
}

// --- register handlers ---

func (d *Device) lockIC() *intrState { d.imu.Lock(); return &d.ic }

func (ic *intrState) eicrValue() uint32 {
	if ic.msix() {
		return ic.eicr&0xFFFF0000 | uint32(ic.vcause&0xFFFF)
	}
	return ic.eicr
}

// readEICR: §8.2.3.5.1, clear-on-read.
func (d *Device) readEICR(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	v := ic.eicrValue()
	if ic.msix() {
		ic.vcause &^= 0xFFFF
		if ic.gpie&gpieOCD == 0 {
			ic.eicr = 0
		}
		return v
	}
	ic.eicr = 0
	if ic.gpie&gpieEIAME != 0 {
		ic.vmask &^= ic.eiam & uint64(v&0xFFFF)
		ic.eims &^= ic.eiamHi & v
	}
	ic.checkLegacy()
	return v
}

// writeEICR: write 1s to clear.
func (d *Device) writeEICR(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	if ic.msix() {
		ic.vcause &^= uint64(v & 0xFFFF)
		ic.eicr &^= v & 0xFFFF0000
		return
	}
	ic.eicr &^= v
	ic.checkLegacy()
}

// readEICS returns EICR without side effects (see the package comment).
func (d *Device) readEICS(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.eicrValue()
}

// writeEICS: §8.2.3.5.3, software-set causes.
func (d *Device) writeEICS(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	if ic.msix() {
		ic.vcause |= uint64(v & 0xFFFF)
		ic.eicr |= v & 0xFFFF0000
	} else {
		ic.eicr |= v
	}
	ic.checkAll()
}

func (d *Device) readEIMSEx0(n int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return uint32(ic.vcause >> (32 * n))
}

// writeEICSEx: §8.2.3.5.4, EICS_EX(0..1) set vector causes 0..63.
func (d *Device) writeEICSEx(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	if ic.msix() {
		ic.vcause |= uint64(v) << (32 * n)
	} else if n == 0 {
		ic.eicr |= v & 0xFFFF
	}
	ic.checkAll()
}

func (d *Device) readEIMS(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return uint32(ic.vmask&0xFFFF) | ic.eims
}

// writeEIMS / writeEIMC: §8.2.3.5.5/6, set / clear mask bits.
func (d *Device) writeEIMS(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.vmask |= uint64(v & 0xFFFF)
	ic.eims |= v & 0xFFFF0000
	ic.checkAll()
}

func (d *Device) writeEIMC(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.vmask &^= uint64(v & 0xFFFF)
	ic.eims &^= v & 0xFFFF0000
	ic.checkLegacy()
}

func (d *Device) readEIMSEx(n int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return uint32(ic.vmask >> (32 * n))
}

func (d *Device) writeEIMSEx(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.vmask |= uint64(v) << (32 * n)
	ic.checkAll()
}

func (d *Device) writeEIMCEx(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.vmask &^= uint64(v) << (32 * n)
	ic.checkLegacy()
}

func (d *Device) readEIAC(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.eiac
}

func (d *Device) writeEIAC(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.eiac = v
}

func (d *Device) readEIAM(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return uint32(ic.eiam&0xFFFF) | ic.eiamHi
}

func (d *Device) writeEIAM(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.eiam = ic.eiam&^0xFFFF | uint64(v&0xFFFF)
	ic.eiamHi = v & 0xFFFF0000
}

func (d *Device) readEIAMEx(n int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return uint32(ic.eiam >> (32 * n))
}

func (d *Device) writeEIAMEx(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	sh := 32 * n
	ic.eiam = ic.eiam&^(0xFFFFFFFF<<sh) | uint64(v)<<sh
}

func (d *Device) readGPIE(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.gpie
}

// writeGPIE: §8.2.3.5.18. Switching to MSI-X mode drops the INTx line.
func (d *Device) writeGPIE(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.gpie = v
	if ic.msix() && ic.intx {
		ic.intx = false
		if d.irq != nil {
			d.irq.SetINTx(false)
		}
	}
	ic.checkAll()
}

func (d *Device) readIVAR(n int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.ivar[n]
}

func (d *Device) writeIVAR(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.ivar[n] = v & 0xBFBFBFBF
}

func (d *Device) readIVARMisc(int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.ivarMisc
}

func (d *Device) writeIVARMisc(_ int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.ivarMisc = v & 0xBFBF
}

func (d *Device) readEITR(n int) uint32 {
	ic := d.lockIC()
	defer d.imu.Unlock()
	return ic.eitr[n]
}

func (d *Device) writeEITR(n int, v uint32) {
	ic := d.lockIC()
	defer d.imu.Unlock()
	ic.eitr[n] = v
}
