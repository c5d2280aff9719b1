package ixgbeemu

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// msixSetup programs MSI-X mode like ixgbe_configure_msix + ixgbe_setup_gpie
// for 82599: GPIE MSIX_MODE|PBA|OCD|EIAME, EIAM_EX all ones, EIAC = queue
// bits, IVAR rx/tx of queue q → vector q.
func (r *rig) msixSetup(queues int) {
	r.wr(regGPIE, gpieMSIXMode|gpiePBA|gpieOCD|gpieEIAME)
	r.wr(regEIAMEx, 0xFFFFFFFF)
	r.wr(regEIAMEx+4, 0xFFFFFFFF)
	for q := 0; q < queues; q++ {
		sh := 16 * uint(q&1)
		v := r.rd(regIVAR(q / 2))
		v |= (uint32(ivarValid|q) | uint32(ivarValid|q)<<8) << sh
		r.wr(regIVAR(q/2), v)
	}
	r.wr(regIVARMisc, (ivarValid|uint32(queues))<<8)
	r.wr(regEIAC, eicrRTxQ|eicrTCPTimer)
	r.wr(regEIMS, eicrLSC|eicrOther)
	r.wr(regEIMSEx, 0xFFFFFFFF)
	r.wr(regEIMSEx+4, 0xFFFFFFFF)
}

// §7.3.4, §8.2.3.5.16: IVAR routes rx/tx causes of each queue to their
// vector; EIAC auto-clears and GPIE.EIAME+EIAM auto-masks on firing; a
// masked vector keeps its cause pending until EIMS re-enables it.
func TestMSIXRoutingAutoClearAutoMask(t *testing.T) {
	r := newRig(t)
	r.msixSetup(4)
	r.setupRx(3, 8, 2, descTypeAdvOneBuf)
	r.setupRx(2, 8, 2, descTypeAdvOneBuf)
	f := udp4Frame(testMAC, payloadBytes(30))
	require.NoError(t, r.d.Receive(3, f))
	require.Equal(t, []int{3}, r.irq.fired())
	require.Zero(t, r.rd(regEICS)&(1<<3), "auto-cleared (EIAC)")
	require.Zero(t, r.rd(regEIMS)&(1<<3), "auto-masked (EIAM)")

	require.NoError(t, r.d.Receive(3, f)) // masked: pending only
	require.Equal(t, []int{3}, r.irq.fired())
	require.NotZero(t, r.rd(regEICS)&(1<<3))
	require.NoError(t, r.d.Receive(2, f))
	require.Equal(t, []int{3, 2}, r.irq.fired())

	r.wr(regEIMSEx, 1<<3) // ixgbe_irq_enable_queues
	require.Equal(t, []int{3, 2, 3}, r.irq.fired())

	// tx completion of queue 1 → vector 1 (IVAR(0) byte 3)
	r.setupTx(1, 8)
	r.txData(1, 0, txBufs, 60, txdCmdEOP|txdCmdRS, 0)
	r.wr(txQueueBase(1)+qRDT, 1)
	require.Equal(t, []int{3, 2, 3, 1}, r.irq.fired())

	// EICS_EX software trigger of vector 40 (always auto-cleared)
	r.wr(regEICSEx+4, 1<<8)
	require.Equal(t, 40, r.irq.fired()[4])
	require.Zero(t, r.rd(regEICSEx+4))

	// EIMC masks; no IVAR valid bit → no interrupt
	r.wr(regEIMCEx, 0xFFFFFFFF)
	r.wr(regEIMCEx+4, 0xFFFFFFFF)
	require.Zero(t, r.rd(regEIMSEx))
	r.wr(regIVAR(1), 0)
	require.NoError(t, r.d.Receive(2, f))
	r.wr(regEIMSEx, 0xFFFFFFFF)
	require.Len(t, r.irq.fired(), 5)

	// EICR read in MSI-X mode with OCD clears queue bits but not LSC.
	r.wr(regEIMC, eicrLSC)
	r.d.SetLink(false)
	r.wr(regEICS, 1<<0)
	v := r.rd(regEICR)
	require.NotZero(t, v&eicrLSC)
	require.NotZero(t, r.rd(regEICS)&eicrLSC, "OCD keeps other causes")
}

// §7.3.2.1 interrupt throttling: after a vector fires, further causes wait
// for the EITR interval ((EITR & 0xFF8) >> 3) × 2 µs.
func TestEITRModeration(t *testing.T) {
	r := newRig(t)
	r.msixSetup(1)
	r.wr(regEIAMEx, 0) // no auto-mask: moderation alone limits the rate
	r.setupRx(0, 64, 2, descTypeAdvOneBuf)
	const ivUnits = 500 // × 2 µs = 1 ms (field max 511)
	r.wr(regEITR(0), ivUnits<<3)
	require.Equal(t, time.Millisecond, r.d.ic.intervalLocked(&r.d.imu, 0))
	f := udp4Frame(testMAC, payloadBytes(30))
	start := time.Now()
	for i := 0; i < 20; i++ {
		require.NoError(t, r.d.Receive(0, f))
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)     // on a loaded CI machine far more than 2 ms
	time.Sleep(3 * time.Millisecond) // let the last deferred cause out
	r.irq.mu.Lock()
	times := append([]time.Time(nil), r.irq.times...)
	r.irq.mu.Unlock()
	require.GreaterOrEqual(t, len(times), 2, "deferred causes fire when the interval ends")
	// At most one interrupt per interval while frames arrive, plus the
	// deferred one after the last frame.
	require.LessOrEqual(t, len(times), int(elapsed/time.Millisecond)+2, "moderated")
	for i := 1; i < len(times); i++ {
		require.GreaterOrEqual(t, times[i].Sub(times[i-1]), 950*time.Microsecond, "gap %d", i)
	}
	n := len(times)
	time.Sleep(3 * time.Millisecond)
	require.Len(t, r.irq.fired(), n, "no cause pending → no more interrupts")
	// EITR 0: no moderation
	r.wr(regEITR(0), 0)
	time.Sleep(2 * time.Millisecond)
	for i := 0; i < 3; i++ {
		require.NoError(t, r.d.Receive(0, f))
	}
	require.Len(t, r.irq.fired(), n+3)
	// EITR(24+) lives at 0x12300
	r.wr(0x12300, 8)
	require.Equal(t, uint32(8), r.rd(regEITR(24)))
}

func (ic *intrState) intervalLocked(mu *sync.Mutex, v int) time.Duration {
	mu.Lock()
	defer mu.Unlock()
	return ic.interval(v)
}

// §7.3.4.1 legacy INTx (GPIE.MSIX_MODE=0): IVAR selects the EICR bit, the
// line follows EICR & EIMS, reading EICR clears all causes and drops it.
func TestLegacyINTx(t *testing.T) {
	r := newRig(t)
	// ixgbe_configure_msi_and_legacy: rx and tx of queue 0 → EICR bit 0
	r.wr(regIVAR(0), ivarValid|ivarValid<<8)
	r.wr(regEIMS, eicrRTxQ|eicrLSC|eicrOther)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	require.NoError(t, r.d.Receive(0, udp4Frame(testMAC, payloadBytes(30))))
	lvl, edges := r.irq.intx()
	require.True(t, lvl)
	require.Equal(t, 1, edges)
	require.Empty(t, r.irq.fired(), "no MSI-X messages in legacy mode")
	require.Equal(t, uint32(1), r.rd(regEICR))
	lvl, _ = r.irq.intx()
	require.False(t, lvl, "EICR read clears and deasserts")
	require.Zero(t, r.rd(regEICR))

	// masked cause: no assertion until EIMS
	r.wr(regEIMC, 0xFFFFFFFF)
	r.d.SetLink(false)
	lvl, _ = r.irq.intx()
	require.False(t, lvl)
	r.wr(regEIMS, eicrLSC)
	lvl, edges = r.irq.intx()
	require.True(t, lvl)
	require.Equal(t, 2, edges)
	require.Equal(t, uint32(eicrLSC), r.rd(regEICR))
	// switching to MSI-X mode drops INTx
	r.wr(regEICS, eicrLSC)
	r.wr(regGPIE, gpieMSIXMode)
	lvl, _ = r.irq.intx()
	require.False(t, lvl)
}

// Concurrency (package doc lock order): vCPU register traffic, a wire
// goroutine receiving, a tx kicker and EITR timers, under -race.
func TestConcurrentAccess(t *testing.T) {
	r := newRig(t)
	r.msixSetup(4)
	r.wr(regEITR(0), 10<<3)
	r.setupRx(0, 128, 2, descTypeAdvOneBuf)
	r.setupTx(1, 64)
	f := udp4Frame(testMAC, payloadBytes(100))
	copy(r.bytes(txBufs, len(f)), f)
	for i := 0; i < 64; i++ {
		r.txData(1, i, txBufs, len(f), txdCmdEOP, 0)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(3)
	go func() { // wire
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			_ = r.d.Receive(0, f)
			if i%100 == 0 {
				_, _ = r.d.RxTarget(0)
				_ = r.d.RxComplete(0, len(f))
			}
		}
	}()
	go func() { // vCPU 0: rx ring recycling and stats
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h := r.d.ReadReg(rxQueueBase(0) + qRDH)
			r.d.WriteReg(rxQueueBase(0)+qRDT, (h+127)%128)
			r.d.ReadReg(regGPRC)
			r.d.WriteReg(regEIMSEx, 1)
			r.d.ReadReg(regEICS)
			r.d.WriteReg(regFCTRL, fctrlBAM|fctrlUPE)
		}
	}()
	go func() { // vCPU 1: tx
		defer wg.Done()
		for i := 0; i < 500; i++ {
			r.d.WriteReg(txQueueBase(1)+qRDT, uint32(i%64))
			_ = r.d.ProcessTx(1)
			if i == 250 {
				r.d.SetLink(false)
				r.d.SetLink(true)
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	r.d.WriteReg(regCTRL, ctrlRst)
	require.NotZero(t, r.d.Stats().RxFrames)
}
