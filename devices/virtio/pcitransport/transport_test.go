package pcitransport

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

const linuxFeatures = FeatureVersion1 | FeatureEventIdx | featMAC

func TestIdentityAndCapabilities(t *testing.T) {
	e := newEnv(t, newFakeDev())
	assert.EqualValues(t, VendorID, e.cfgRead(pci.RegVendorID, 2))
	assert.EqualValues(t, 0x1041, e.cfgRead(pci.RegDeviceID, 2))
	assert.EqualValues(t, 1, e.cfgRead(pci.RegRevision, 1))
	assert.EqualValues(t, 0x020000, e.cfgRead(pci.RegRevision, 4)>>8)
	assert.EqualValues(t, VendorID, e.cfgRead(pci.RegSubsystemVendorID, 2))
	assert.GreaterOrEqual(t, e.cfgRead(pci.RegSubsystemID, 2), uint32(0x40))
	assert.EqualValues(t, 0b100, e.cfgRead(pci.RegBAR0, 4)&0xF, "64-bit, non-prefetchable memory BAR")

	for _, typ := range []byte{CapCommonCfg, CapNotifyCfg, CapISRCfg, CapDeviceCfg} {
		require.Contains(t, e.caps, typ)
	}
	assert.EqualValues(t, NotifyMultiplier, e.caps[CapNotifyCfg].mult)
	assert.EqualValues(t, 3*NotifyMultiplier, e.caps[CapNotifyCfg].length)
	assert.GreaterOrEqual(t, e.caps[CapCommonCfg].length, uint32(0x38))
	require.NotZero(t, e.msix)
	assert.EqualValues(t, 3, e.cfgRead(e.msix+2, 2)&msix.CtlTableSizeMask, "4 vectors: 3 queues + config")

	// All structures fit the BAR and the MSI-X table and PBA sit on
	// their own pages.
	size := e.tr.barSize
	for typ, c := range e.caps {
		assert.LessOrEqual(t, uint64(c.offset)+uint64(c.length), size, "cfg_type %d", typ)
	}
	table, pba := e.cfgRead(e.msix+4, 4)&^7, e.cfgRead(e.msix+8, 4)&^7
	assert.Zero(t, table%pageSize)
	assert.Zero(t, pba%pageSize)
	assert.Greater(t, table, uint32(NotifyOffset))
	assert.Less(t, uint64(pba), size)

	// The device config window shows the device's bytes.
	assert.EqualValues(t, 0x5452, e.rd(e.addr(CapDeviceCfg, 0), 2))
	assert.EqualValues(t, 0x56, e.rd(e.addr(CapDeviceCfg, 5), 1))
}

// TestLinuxInitSequence follows drivers/virtio/virtio_pci_modern.c and
// virtio.c: reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK
// read-back, MSI-X setup, per-queue setup, DRIVER_OK.
func TestLinuxInitSequence(t *testing.T) {
	d := newFakeDev()
	e := newEnv(t, d)

	// Doorbells were registered when the bridge mapped the BAR.
	bells := e.bells.snapshot()
	require.Len(t, bells, 3)

	e.setCommon(RegDeviceStatus, 1, 0)
	assert.Zero(t, e.status())
	e.addStatus(StatusAcknowledge)
	e.addStatus(StatusDriver)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver, e.status())

	offered := e.deviceFeatures()
	assert.Equal(t, d.features&^FeatureRingPacked, offered, "packed rings are stripped")
	e.setCommon(RegDeviceFeatureSelect, 4, 7)
	assert.Zero(t, e.common(RegDeviceFeature, 4), "feature words past 1 are zero")

	e.setDriverFeatures(linuxFeatures)
	e.addStatus(StatusFeaturesOK)
	require.EqualValues(t, StatusAcknowledge|StatusDriver|StatusFeaturesOK, e.status(), "FEATURES_OK accepted")
	e.setCommon(RegDriverFeatureSelect, 4, 0)
	assert.EqualValues(t, linuxFeatures&0xFFFF_FFFF, e.common(RegDriverFeature, 4))

	e.enableMSIX(4)
	e.setCommon(RegConfigMSIXVector, 2, 0)
	require.Zero(t, e.common(RegConfigMSIXVector, 2))

	assert.EqualValues(t, 3, e.common(RegNumQueues, 2))
	require.EqualValues(t, 1, e.setupQueue(0, 128, 1))
	require.EqualValues(t, 2, e.setupQueue(1, 256, 2))
	// Queue 2 (control queue) is left disabled.
	for i := range 2 {
		e.setCommon(RegQueueSelect, 2, uint64(i))
		assert.Equal(t, descAddr(i), e.common(RegQueueDesc, 8), "64-bit read of a split-written address")
		assert.Equal(t, driverAddr(i)>>32, e.common(RegQueueDriver+4, 4))
		assert.EqualValues(t, i, e.common(RegQueueNotifyOff, 2))
		assert.Equal(t, e.bells.snapshot()[e.notifyAddr(i)], bells[e.notifyAddr(i)])
	}
	e.enableQueue(0)
	e.enableQueue(1)
	e.setCommon(RegQueueSelect, 2, 0)
	assert.EqualValues(t, 1, e.common(RegQueueEnable, 2))
	assert.EqualValues(t, 128, e.common(RegQueueSize, 2))

	// A notification that reaches the MMIO handler (no ioeventfd)
	// signals the same eventfd KVM would.
	for i := range 3 {
		fd := bells[e.notifyAddr(i)]
		e.wr(e.notifyAddr(i), 2, uint64(i))
		assert.EqualValues(t, 1, drain(t, fd), "queue %d", i)
	}

	_, n := d.lastActivation()
	require.Zero(t, n, "nothing activated before DRIVER_OK")
	e.addStatus(StatusDriverOK)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK, e.status())

	a, n := d.lastActivation()
	require.Equal(t, 1, n)
	assert.Equal(t, uint64(linuxFeatures), a.Features)
	assert.Same(t, e.mem, a.Mem)
	require.Len(t, a.Queues, 2)
	for i, q := range a.Queues {
		assert.Equal(t, i, q.Index)
		assert.True(t, q.Queue.Ready())
		assert.Equal(t, descAddr(i), q.Queue.DescTable())
		assert.Equal(t, deviceAddr(i), q.Queue.UsedRing())
		assert.Equal(t, bells[e.notifyAddr(i)], q.Doorbell)
	}
	assert.EqualValues(t, 128, a.Queues[0].Queue.Size())
	assert.EqualValues(t, 256, a.Queues[1].Queue.Size())

	// Kick queue 1: the worker sees the doorbell and raises vector 2.
	e.wr(e.notifyAddr(1), 2, 1)
	require.Eventually(t, func() bool { return e.vecs.fired(0x42) == 1 }, 5*time.Second, time.Millisecond)
	assert.Zero(t, e.vecs.fired(0x41))

	// Configuration change: generation bumps, config vector fires.
	gen := e.common(RegConfigGeneration, 1)
	require.NoError(t, e.tr.ConfigChanged())
	assert.Equal(t, gen+1, e.common(RegConfigGeneration, 1))
	assert.EqualValues(t, 1, e.vecs.fired(0x40))
	assert.EqualValues(t, ISRConfig|ISRQueue, e.rd(e.addr(CapISRCfg, 0), 1), "ISR bits are set for completeness")
	assert.Zero(t, e.rd(e.addr(CapISRCfg, 0), 1), "ISR is read-to-clear")

	// Queue registers are frozen while live.
	e.setCommon(RegQueueSelect, 2, 0)
	e.setCommon(RegQueueSize, 2, 32)
	e.setCommon(RegQueueDesc, 8, 0x9000)
	assert.EqualValues(t, 128, e.common(RegQueueSize, 2))
	assert.Equal(t, descAddr(0), e.common(RegQueueDesc, 8))
	e.setCommon(RegQueueSelect, 2, 2)
	e.setCommon(RegQueueEnable, 2, 1)
	assert.Zero(t, e.common(RegQueueEnable, 2), "no enabling queues after DRIVER_OK")
	e.addStatus(StatusDriverOK)
	_, n = d.lastActivation()
	assert.Equal(t, 1, n, "Activate is called once")
}

func TestFeatureNegotiationRejected(t *testing.T) {
	for name, tc := range map[string]struct {
		features uint64
		prep     func(e *env)
	}{
		"not offered":        {features: linuxFeatures | featCtrl},
		"packed not offered": {features: linuxFeatures | FeatureRingPacked},
		"legacy driver":      {features: featMAC},
		"bits above 63": {features: linuxFeatures, prep: func(e *env) {
			e.setCommon(RegDriverFeatureSelect, 4, 2)
			e.setCommon(RegDriverFeature, 4, 1)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, newFakeDev())
			e.setCommon(RegDeviceStatus, 1, 0)
			e.addStatus(StatusAcknowledge)
			e.addStatus(StatusDriver)
			e.setDriverFeatures(tc.features)
			if tc.prep != nil {
				tc.prep(e)
			}
			e.addStatus(StatusFeaturesOK)
			assert.Zero(t, e.status()&StatusFeaturesOK, "FEATURES_OK must read back clear")
			e.addStatus(StatusDriverOK)
			assert.Zero(t, e.status()&StatusDriverOK)
			_, n := e.dev.lastActivation()
			assert.Zero(t, n)

			// The driver may retry after a reset.
			assert.EqualValues(t, StatusAcknowledge|StatusDriver|StatusFeaturesOK, e.negotiate(linuxFeatures))
		})
	}

	t.Run("frozen after FEATURES_OK", func(t *testing.T) {
		e := newEnv(t, newFakeDev())
		require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
		e.setDriverFeatures(linuxFeatures | featMRG)
		e.setCommon(RegDriverFeatureSelect, 4, 0)
		assert.EqualValues(t, linuxFeatures&0xFFFF_FFFF, e.common(RegDriverFeature, 4))
	})
}

func TestNewRejectsBadDevices(t *testing.T) {
	mem, err := guestmem.FromRegions(guestmem.Region{GPA: 0, Host: make([]byte, 4096)})
	require.NoError(t, err)
	vs := &vectors{}
	for name, mut := range map[string]func(d *fakeDev){
		"no VERSION_1":   func(d *fakeDev) { d.features = featMAC },
		"no queues":      func(d *fakeDev) { d.sizes = nil },
		"bad queue size": func(d *fakeDev) { d.sizes = []uint16{100} },
		"zero size":      func(d *fakeDev) { d.sizes = []uint16{0} },
	} {
		d := newFakeDev()
		mut(d)
		_, err := New(Config{Device: d, Mem: mem, AllocVector: vs.alloc})
		assert.ErrorIs(t, err, ErrInvalidDevice, name)
	}
	_, err = New(Config{Device: newFakeDev(), AllocVector: vs.alloc})
	assert.ErrorIs(t, err, ErrInvalidDevice)
	_, err = New(Config{Device: newFakeDev(), Mem: mem, AllocVector: vs.alloc, MSIXVectors: msix.MaxVectors + 1})
	assert.ErrorIs(t, err, ErrInvalidDevice)
}

// activeEnv brings a device to DRIVER_OK with queues 0 and 1.
func activeEnv(t *testing.T) *env {
	e := newEnv(t, newFakeDev())
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
	e.enableMSIX(4)
	e.setCommon(RegConfigMSIXVector, 2, 0)
	e.setupQueue(0, 128, 1)
	e.setupQueue(1, 128, 2)
	e.enableQueue(0)
	e.enableQueue(1)
	e.addStatus(StatusDriverOK)
	require.True(t, e.dev.running.Load())
	return e
}

func TestResetWhileActive(t *testing.T) {
	e := activeEnv(t)
	resets := e.dev.resetCount()
	e.wr(e.notifyAddr(0), 2, 0)

	e.setCommon(RegDeviceStatus, 1, 0)
	assert.False(t, e.dev.running.Load(), "device stopped before the reset write returns")
	assert.Equal(t, resets+1, e.dev.resetCount())
	assert.Zero(t, e.status())

	// Every register is back to its reset value.
	assert.EqualValues(t, NoVector, e.common(RegConfigMSIXVector, 2))
	e.setCommon(RegDriverFeatureSelect, 4, 0)
	assert.Zero(t, e.common(RegDriverFeature, 4))
	for i := range 3 {
		e.setCommon(RegQueueSelect, 2, uint64(i))
		assert.Zero(t, e.common(RegQueueEnable, 2))
		assert.EqualValues(t, e.dev.sizes[i], e.common(RegQueueSize, 2))
		assert.EqualValues(t, NoVector, e.common(RegQueueMSIXVector, 2))
		assert.Zero(t, e.common(RegQueueDesc, 8))
		assert.Zero(t, e.common(RegQueueDriver, 8))
		assert.Zero(t, e.common(RegQueueDevice, 8))
	}
	// MSI-X is PCI state and survives a virtio reset.
	assert.True(t, e.tr.MSIX().Enabled())

	// The device comes back up with a fresh activation.
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
	e.setupQueue(0, 64, 1)
	e.enableQueue(0)
	e.addStatus(StatusDriverOK)
	a, n := e.dev.lastActivation()
	require.Equal(t, 2, n)
	require.Len(t, a.Queues, 1)
	assert.EqualValues(t, 64, a.Queues[0].Queue.Size())
	assert.Zero(t, a.Queues[0].Queue.NextAvail())
}

func TestBadQueueConfigNeedsReset(t *testing.T) {
	for name, prog := range map[string]func(e *env){
		"size not a power of two": func(e *env) { e.setupQueue(0, 100, 1) },
		"size above max":          func(e *env) { e.setupQueue(0, 512, 1) },
		"size zero":               func(e *env) { e.setupQueue(0, 0, 1) },
		"ring outside RAM": func(e *env) {
			e.setupQueue(0, 128, 1)
			e.setCommon(RegQueueDesc+4, 4, 0x10)
		},
		"misaligned used ring": func(e *env) {
			e.setupQueue(0, 128, 1)
			e.setCommon(RegQueueDevice, 4, deviceAddr(0)+2)
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, newFakeDev())
			require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
			e.enableMSIX(4)
			e.setCommon(RegConfigMSIXVector, 2, 0)
			prog(e)
			e.enableQueue(0)
			assert.Zero(t, e.common(RegQueueEnable, 2), "queue stays disabled")
			assert.NotZero(t, e.status()&StatusNeedsReset)
			assert.EqualValues(t, 1, e.vecs.fired(0x40), "config interrupt raised")

			// NEEDS_RESET is device-owned; DRIVER_OK is refused.
			e.setCommon(RegDeviceStatus, 1, uint64(e.status()&^StatusNeedsReset|StatusDriverOK))
			assert.Zero(t, e.status()&StatusDriverOK)
			_, n := e.dev.lastActivation()
			assert.Zero(t, n)

			// Reset clears it.
			e.setCommon(RegDeviceStatus, 1, 0)
			assert.Zero(t, e.status())
		})
	}
}

func TestActivateFailureNeedsReset(t *testing.T) {
	d := newFakeDev()
	d.activateErr = errors.New("tap device gone")
	e := newEnv(t, d)
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
	e.setupQueue(0, 128, NoVector)
	e.enableQueue(0)
	e.addStatus(StatusDriverOK)
	assert.NotZero(t, e.status()&StatusNeedsReset)
}

func TestStatusOrdering(t *testing.T) {
	e := newEnv(t, newFakeDev())
	e.setCommon(RegDeviceStatus, 1, 0)

	e.setCommon(RegDeviceStatus, 1, StatusDriverOK)
	assert.Zero(t, e.status(), "DRIVER_OK first is dropped")
	e.setCommon(RegDeviceStatus, 1, StatusDriver)
	assert.Zero(t, e.status(), "DRIVER before ACKNOWLEDGE is dropped")
	e.setCommon(RegDeviceStatus, 1, StatusAcknowledge|StatusFeaturesOK)
	assert.EqualValues(t, StatusAcknowledge, e.status(), "FEATURES_OK before DRIVER is dropped")
	e.setCommon(RegDeviceStatus, 1, StatusAcknowledge|StatusDriver|0x30)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver, e.status(), "reserved bits are dropped")
	e.setCommon(RegDeviceStatus, 1, StatusDriver)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver, e.status(), "bits cannot be cleared but by reset")
	e.setCommon(RegDeviceStatus, 1, StatusAcknowledge|StatusDriver|StatusNeedsReset)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver, e.status(), "NEEDS_RESET is device-owned")
	e.setCommon(RegDeviceStatus, 1, StatusAcknowledge|StatusDriver|StatusFailed)
	assert.EqualValues(t, StatusAcknowledge|StatusDriver|StatusFailed, e.status())
	_, n := e.dev.lastActivation()
	assert.Zero(t, n)
}

func TestHostileRegisterAccesses(t *testing.T) {
	e := newEnv(t, newFakeDev())
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)

	// Out-of-range queue_select: everything reads 0, writes are dropped.
	e.setCommon(RegQueueSelect, 2, 3)
	for _, f := range []struct {
		off uint64
		n   int
	}{{RegQueueSize, 2}, {RegQueueMSIXVector, 2}, {RegQueueEnable, 2}, {RegQueueNotifyOff, 2}, {RegQueueDesc, 8}, {RegQueueDriver, 8}, {RegQueueDevice, 8}} {
		e.setCommon(f.off, f.n, 0x1000)
		assert.Zero(t, e.common(f.off, f.n), "offset %#x", f.off)
	}
	e.setCommon(RegQueueEnable, 2, 1)
	assert.NotZero(t, e.common(RegQueueSelect, 2))
	assert.Zero(t, e.status()&StatusNeedsReset)

	// Read-only fields.
	e.setCommon(RegNumQueues, 2, 99)
	assert.EqualValues(t, 3, e.common(RegNumQueues, 2))
	e.setCommon(RegDeviceFeatureSelect, 4, 0)
	e.setCommon(RegDeviceFeature, 4, 0)
	assert.NotZero(t, e.common(RegDeviceFeature, 4))
	e.setCommon(RegConfigGeneration, 1, 7)
	assert.Zero(t, e.common(RegConfigGeneration, 1))
	e.setCommon(RegQueueSelect, 2, 1)
	e.setCommon(RegQueueNotifyOff, 2, 9)
	assert.EqualValues(t, 1, e.common(RegQueueNotifyOff, 2))

	// MSI-X vectors beyond the table read back as NO_VECTOR.
	e.setCommon(RegQueueMSIXVector, 2, 4)
	assert.EqualValues(t, NoVector, e.common(RegQueueMSIXVector, 2))
	e.setCommon(RegConfigMSIXVector, 2, 0x7FF)
	assert.EqualValues(t, NoVector, e.common(RegConfigMSIXVector, 2))

	// Wrong widths are ignored rather than half-applied.
	e.setCommon(RegQueueSize, 1, 16)
	e.setCommon(RegQueueSize, 4, 16)
	assert.EqualValues(t, 256, e.common(RegQueueSize, 2))
	assert.Zero(t, e.common(RegQueueSize, 4))
	assert.Zero(t, e.common(RegQueueDesc+2, 4), "unaligned half")

	// Every offset and size on the BAR: no panic, and the register
	// state machine stays consistent. Writes use random data but skip
	// device_status so the walk is not just a stream of resets.
	base := e.barBase()
	rng := rand.New(rand.NewPCG(1, 2))
	for off := uint64(0); off < e.tr.barSize; off++ {
		for _, n := range []int{1, 2, 3, 4, 8} {
			b := make([]byte, n)
			e.mmio.Read(base+off, b)
			if off <= RegDeviceStatus && off+uint64(n) > RegDeviceStatus {
				continue
			}
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			e.mmio.Write(base+off, b)
		}
	}
	// Direct handler calls with sizes the bus would never produce.
	h := barHandler{e.tr}
	for _, off := range []uint64{0, RegQueueDesc, ISROffset, DeviceCfgOffset, NotifyOffset, ^uint64(0), ^uint64(0) - 3} {
		h.Read(off, nil)
		h.Write(off, nil)
		h.Read(off, make([]byte, 64))
		h.Write(off, make([]byte, 64))
	}
}

func TestNotifyAndInterruptsWithoutMSIX(t *testing.T) {
	e := newEnv(t, newFakeDev())
	var l line
	e.tr.SetLegacyIRQ(&l)
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
	e.setupQueue(0, 128, NoVector)
	e.enableQueue(0)
	e.addStatus(StatusDriverOK)

	e.wr(e.notifyAddr(0), 2, 0)
	require.Eventually(t, l.high.Load, 5*time.Second, time.Millisecond, "INTx raised for the queue")
	assert.EqualValues(t, ISRQueue, e.rd(e.addr(CapISRCfg, 0), 1))
	assert.False(t, l.high.Load(), "ISR read lowers INTx")

	require.NoError(t, e.tr.ConfigChanged())
	assert.True(t, l.high.Load())
	assert.EqualValues(t, ISRConfig, e.rd(e.addr(CapISRCfg, 0), 4))
	assert.False(t, l.high.Load())
}

// TestBARMoveReregistersDoorbells moves BAR0 through config space as a
// guest reassigning resources does.
func TestBARMoveReregistersDoorbells(t *testing.T) {
	e := newEnv(t, newFakeDev())
	old := e.barBase()
	before := e.bells.snapshot()
	for i := range 3 {
		require.Contains(t, before, old+NotifyOffset+uint64(i)*NotifyMultiplier)
	}

	// Decode off: all doorbells go away.
	cmd := e.cfgRead(pci.RegCommand, 2)
	e.cfgWrite(pci.RegCommand, 2, cmd&^pci.CommandMemory)
	assert.Empty(t, e.bells.snapshot())

	// Move the BAR (64-bit: low then high dword) and turn decode on.
	newBase := old + 0x4000_0000
	e.cfgWrite(pci.RegBAR0, 4, uint32(newBase))
	e.cfgWrite(pci.RegBAR0+4, 4, uint32(newBase>>32))
	e.cfgWrite(pci.RegCommand, 2, cmd)
	require.Equal(t, newBase, e.barBase())
	after := e.bells.snapshot()
	require.Len(t, after, 3)
	for i := range 3 {
		assert.Equal(t, before[old+notifyAddr(i)], after[newBase+notifyAddr(i)], "queue %d keeps its eventfd", i)
	}

	// A live move (decode stays on) also follows.
	newer := newBase + 0x10_0000
	e.cfgWrite(pci.RegBAR0, 4, uint32(newer))
	after = e.bells.snapshot()
	require.Len(t, after, 3)
	assert.Contains(t, after, newer+NotifyOffset)

	// The moved BAR still works end to end.
	e.wr(e.notifyAddr(2), 2, 2)
	assert.EqualValues(t, 1, drain(t, after[newer+notifyAddr(2)]))
	assert.EqualValues(t, 3, e.common(RegNumQueues, 2))
}

func TestConcurrentInterruptsAndRegisterTraffic(t *testing.T) {
	e := activeEnv(t)
	a, _ := e.dev.lastActivation()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			_ = a.Queues[0].Interrupt.Trigger()
			_ = e.tr.ConfigChanged()
		}
	}()
	for range 200 {
		e.common(RegDeviceStatus, 1)
		e.common(RegConfigGeneration, 1)
		e.rd(e.addr(CapISRCfg, 0), 1)
		e.setCommon(RegQueueSelect, 2, 1)
		e.common(RegQueueMSIXVector, 2)
	}
	<-done
	assert.EqualValues(t, 2000, e.vecs.fired(0x41))
}

func TestInterruptFastPathDoesNotAllocate(t *testing.T) {
	e := activeEnv(t)
	a, _ := e.dev.lastActivation()
	irq := a.Queues[0].Interrupt
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = irq.Trigger() }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = e.tr.ConfigChanged() }))
}

// The device's NeedsReset (a queue the driver broke) sets the status bit
// the driver reads.
func TestActivationNeedsReset(t *testing.T) {
	d := newFakeDev()
	e := newEnv(t, d)
	require.NotZero(t, e.negotiate(linuxFeatures)&StatusFeaturesOK)
	e.setupQueue(0, 128, NoVector)
	e.enableQueue(0)
	e.addStatus(StatusDriverOK)
	a, n := d.lastActivation()
	require.Equal(t, 1, n)
	require.Zero(t, e.status()&StatusNeedsReset)
	require.NotNil(t, a.NeedsReset)
	a.NeedsReset()
	assert.NotZero(t, e.status()&StatusNeedsReset)
	e.setCommon(RegDeviceStatus, 1, 0)
	assert.Zero(t, e.status(), "a reset clears it")
}
