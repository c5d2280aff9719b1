package pcitransport

import (
	"encoding/binary"
	"fmt"
)

// Common configuration field offsets (struct virtio_pci_common_cfg,
// §4.1.4.3).
const (
	RegDeviceFeatureSelect = 0x00 // le32 RW
	RegDeviceFeature       = 0x04 // le32 RO
	RegDriverFeatureSelect = 0x08 // le32 RW
	RegDriverFeature       = 0x0C // le32 RW
	RegConfigMSIXVector    = 0x10 // le16 RW
	RegNumQueues           = 0x12 // le16 RO
	RegDeviceStatus        = 0x14 // u8 RW
	RegConfigGeneration    = 0x15 // u8 RO
	RegQueueSelect         = 0x16 // le16 RW
	RegQueueSize           = 0x18 // le16 RW
	RegQueueMSIXVector     = 0x1A // le16 RW
	RegQueueEnable         = 0x1C // le16 RW
	RegQueueNotifyOff      = 0x1E // le16 RO
	RegQueueDesc           = 0x20 // le64 RW
	RegQueueDriver         = 0x28 // le64 RW
	RegQueueDevice         = 0x30 // le64 RW
)

// fieldWidth returns the width of the common-config field at off, or 0.
func fieldWidth(off uint64) int {
	switch off {
	case RegDeviceFeatureSelect, RegDeviceFeature, RegDriverFeatureSelect, RegDriverFeature:
		return 4
	case RegConfigMSIXVector, RegNumQueues, RegQueueSelect, RegQueueSize, RegQueueMSIXVector, RegQueueEnable, RegQueueNotifyOff:
		return 2
	case RegDeviceStatus, RegConfigGeneration:
		return 1
	case RegQueueDesc, RegQueueDriver, RegQueueDevice:
		return 8
	}
	return 0
}

// decodeAccess maps an access to (field offset, half) following §4.1.3.1:
// each field is accessed with its own width, and 64-bit fields may also be
// accessed as two 32-bit halves (half = 0 low, 1 high, -1 whole field).
// Anything else is invalid.
func decodeAccess(off uint64, n int) (field uint64, half int, ok bool) {
	if w := fieldWidth(off); w != 0 && w == n {
		return off, -1, true
	}
	if n == 4 && off >= RegQueueDesc && off < CommonCfgLength && off%4 == 0 {
		return off &^ 7, int(off%8) / 4, true
	}
	return 0, 0, false
}

func putLE(data []byte, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	copy(data, b[:])
}

func getLE(data []byte) uint64 {
	var b [8]byte
	copy(b[:], data)
	return binary.LittleEndian.Uint64(b[:])
}

// readCommon serves a read of the common configuration.
func (t *Transport) readCommon(off uint64, data []byte) {
	field, half, ok := decodeAccess(off, len(data))
	if !ok {
		t.log.Debug("pcitransport: bad common config read", "offset", fmt.Sprintf("%#x", off), "len", len(data))
		return
	}
	t.mu.Lock()
	v := t.readField(field)
	t.mu.Unlock()
	if half > 0 {
		v >>= 32
	}
	putLE(data, v)
}

// readField returns the value of a common-config field. t.mu is held.
func (t *Transport) readField(field uint64) uint64 {
	s := &t.st
	switch field {
	case RegDeviceFeatureSelect:
		return uint64(s.deviceFeatSel)
	case RegDeviceFeature:
		return featureWord(t.offered, s.deviceFeatSel)
	case RegDriverFeatureSelect:
		return uint64(s.driverFeatSel)
	case RegDriverFeature:
		return featureWord(s.driverFeatures, s.driverFeatSel)
	case RegConfigMSIXVector:
		return uint64(t.configVector.Load())
	case RegNumQueues:
		return uint64(len(t.queues))
	case RegDeviceStatus:
		return uint64(t.statusByte())
	case RegConfigGeneration:
		return uint64(uint8(t.generation.Load()))
	case RegQueueSelect:
		return uint64(s.queueSel)
	}
	// Per-queue fields: an out-of-range queue_select reads as zero, and
	// queue_size 0 tells the driver the queue does not exist (§4.1.4.3).
	q := t.selected()
	if q == nil {
		return 0
	}
	switch field {
	case RegQueueSize:
		return uint64(q.q.Size())
	case RegQueueMSIXVector:
		return uint64(q.vector.Load())
	case RegQueueEnable:
		if q.q.Ready() {
			return 1
		}
	case RegQueueNotifyOff:
		return uint64(s.queueSel) // notify address = NotifyOffset + index*NotifyMultiplier
	case RegQueueDesc:
		return q.q.DescTable()
	case RegQueueDriver:
		return q.q.AvailRing()
	case RegQueueDevice:
		return q.q.UsedRing()
	}
	return 0
}

func featureWord(f uint64, sel uint32) uint64 {
	switch sel {
	case 0:
		return f & 0xFFFF_FFFF
	case 1:
		return f >> 32
	}
	return 0
}

// statusByte returns device_status as the driver sees it. t.mu is held.
func (t *Transport) statusByte() uint8 {
	s := t.st.status
	if t.needsReset.Load() {
		s |= StatusNeedsReset
	}
	return s
}

// selected returns the queue selected by queue_select, or nil. t.mu is
// held.
func (t *Transport) selected() *vq {
	if int(t.st.queueSel) >= len(t.queues) {
		return nil
	}
	return &t.queues[t.st.queueSel]
}

// writeCommon serves a write to the common configuration.
func (t *Transport) writeCommon(off uint64, data []byte) {
	field, half, ok := decodeAccess(off, len(data))
	if !ok {
		t.log.Debug("pcitransport: bad common config write", "offset", fmt.Sprintf("%#x", off), "len", len(data))
		return
	}
	v := getLE(data)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.st
	switch field {
	case RegDeviceFeatureSelect:
		s.deviceFeatSel = uint32(v)
	case RegDriverFeatureSelect:
		s.driverFeatSel = uint32(v)
	case RegDriverFeature:
		t.writeDriverFeatures(uint32(v))
	case RegConfigMSIXVector:
		t.configVector.Store(t.checkVector(uint16(v)))
	case RegDeviceStatus:
		t.writeStatus(uint8(v))
	case RegQueueSelect:
		s.queueSel = uint16(v)
	case RegQueueSize, RegQueueMSIXVector, RegQueueEnable, RegQueueDesc, RegQueueDriver, RegQueueDevice:
		t.writeQueueField(field, half, v)
	default:
		t.log.Debug("pcitransport: write to read-only common config field", "offset", fmt.Sprintf("%#x", field))
	}
}

// checkVector maps an MSI-X vector number the driver wrote to what the
// device stores: vectors outside the table become NoVector, which the
// driver reads back to learn the mapping failed (§4.1.5.1.2.1).
func (t *Transport) checkVector(v uint16) uint32 {
	if int(v) >= t.msix.Vectors() {
		return NoVector
	}
	return uint32(v)
}

// writeDriverFeatures handles driver_feature (§2.2, §3.1.1 step 5). It is
// writable only until FEATURES_OK. t.mu is held.
func (t *Transport) writeDriverFeatures(v uint32) {
	s := &t.st
	if s.status&StatusFeaturesOK != 0 {
		t.log.Debug("pcitransport: driver_feature written after FEATURES_OK, ignored")
		return
	}
	switch s.driverFeatSel {
	case 0:
		s.driverFeatures = s.driverFeatures&^0xFFFF_FFFF | uint64(v)
	case 1:
		s.driverFeatures = s.driverFeatures&0xFFFF_FFFF | uint64(v)<<32
	default:
		// No features are offered above bit 63: accepting any is an
		// error FEATURES_OK will report.
		if v != 0 {
			s.driverFeatsHigh = true
		}
	}
}

// writeQueueField handles the per-queue registers of the selected queue.
// They may only change while the queue is disabled and the device is not
// live (§4.1.4.3.2: the driver configures a queue before enabling it and
// must not write queue_enable = 0 without VIRTIO_F_RING_RESET). Writes
// outside those windows, or with an out-of-range queue_select, are
// ignored. t.mu is held.
func (t *Transport) writeQueueField(field uint64, half int, v uint64) {
	q := t.selected()
	if q == nil {
		t.log.Debug("pcitransport: queue register write with queue_select out of range", "queue_select", t.st.queueSel)
		return
	}
	if q.q.Ready() || t.st.status&StatusDriverOK != 0 {
		t.log.Debug("pcitransport: queue register write to an enabled queue or live device, ignored", "queue", t.st.queueSel, "offset", fmt.Sprintf("%#x", field))
		return
	}
	merge := func(cur uint64) uint64 {
		switch half {
		case 0:
			return cur&^0xFFFF_FFFF | v&0xFFFF_FFFF
		case 1:
			return cur&0xFFFF_FFFF | v<<32
		}
		return v
	}
	switch field {
	case RegQueueSize:
		// Range and power-of-two checks happen on queue_enable.
		q.q.SetSize(uint16(v))
	case RegQueueMSIXVector:
		q.vector.Store(t.checkVector(uint16(v)))
	case RegQueueDesc:
		q.q.SetDescTable(merge(q.q.DescTable()))
	case RegQueueDriver:
		q.q.SetAvailRing(merge(q.q.AvailRing()))
	case RegQueueDevice:
		q.q.SetUsedRing(merge(q.q.UsedRing()))
	case RegQueueEnable:
		if v != 1 {
			return
		}
		if err := q.q.Validate(t.mem); err != nil {
			t.log.Warn("pcitransport: driver enabled a misconfigured queue, device needs reset", "queue", t.st.queueSel, "err", err)
			t.failDevice()
			return
		}
		q.q.SetReady(true)
	}
}

// failDevice sets DEVICE_NEEDS_RESET and tells the driver (§2.1.2).
func (t *Transport) failDevice() {
	if err := t.SetNeedsReset(); err != nil {
		t.log.Error("pcitransport: raising configuration interrupt", "err", err)
	}
}

// writeStatus implements the device status state machine (§2.1, §3.1.1).
// 0 resets the device. Otherwise the driver may only add bits, in the
// initialisation order ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK; bits
// set out of order are dropped (the driver sees them clear on read-back),
// as is a write that would clear a bit. FAILED may be set at any time;
// DEVICE_NEEDS_RESET is device-owned. t.mu is held.
func (t *Transport) writeStatus(v uint8) {
	if v == 0 {
		t.reset()
		return
	}
	s := &t.st
	old := s.status
	v &^= StatusNeedsReset
	if v&old != old {
		t.log.Debug("pcitransport: driver tried to clear device status bits, ignored", "old", old, "new", v)
		return
	}
	add := v &^ old
	const known = StatusAcknowledge | StatusDriver | StatusFeaturesOK | StatusDriverOK | StatusFailed
	if add&^known != 0 {
		t.log.Debug("pcitransport: unknown device status bits dropped", "bits", add&^known)
		add &= known
	}
	next := old | add&(StatusAcknowledge|StatusFailed)
	if add&StatusDriver != 0 {
		if next&StatusAcknowledge != 0 {
			next |= StatusDriver
		} else {
			t.log.Debug("pcitransport: DRIVER set before ACKNOWLEDGE, dropped")
		}
	}
	if add&StatusFeaturesOK != 0 {
		if err := t.checkFeatures(next); err != nil {
			t.log.Warn("pcitransport: FEATURES_OK refused", "err", err)
		} else {
			next |= StatusFeaturesOK
		}
	}
	if add&StatusDriverOK != 0 {
		switch {
		case next&StatusFeaturesOK == 0:
			t.log.Debug("pcitransport: DRIVER_OK set before FEATURES_OK, dropped")
		case t.needsReset.Load():
			t.log.Debug("pcitransport: DRIVER_OK while the device needs reset, dropped")
		default:
			next |= StatusDriverOK
		}
	}
	s.status = next
	if next&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		t.activate()
	}
}

// checkFeatures validates the driver's feature acceptance when it sets
// FEATURES_OK (§2.2.1, §3.1.1 step 6, §6.1): DRIVER must be set, only
// offered bits may be accepted, and a modern device requires
// VIRTIO_F_VERSION_1. t.mu is held.
func (t *Transport) checkFeatures(status uint8) error {
	s := &t.st
	switch {
	case status&StatusDriver == 0:
		return fmt.Errorf("FEATURES_OK before DRIVER")
	case s.driverFeatsHigh:
		return fmt.Errorf("driver accepted feature bits above 63, none offered")
	case s.driverFeatures&^t.offered != 0:
		return fmt.Errorf("driver accepted features %#x not offered (offered %#x)", s.driverFeatures&^t.offered, t.offered)
	case s.driverFeatures&FeatureVersion1 == 0:
		return fmt.Errorf("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)")
	}
	return nil
}

// activate hands the enabled queues to the device (DRIVER_OK). t.mu is
// held.
func (t *Transport) activate() {
	s := &t.st
	a := Activation{Features: s.driverFeatures, Mem: t.mem, ConfigInterrupt: t.cfgIRQ,
		NeedsReset: func() { _ = t.SetNeedsReset() }}
	for i := range t.queues {
		q := &t.queues[i]
		if !q.q.Ready() {
			continue
		}
		q.q.SetEventIdx(s.driverFeatures&FeatureEventIdx != 0)
		q.q.SetIndirect(s.driverFeatures&FeatureIndirectDesc != 0)
		a.Queues = append(a.Queues, ActiveQueue{Index: i, Queue: q.q, Interrupt: &q.irq, Doorbell: q.doorbell})
	}
	if err := t.dev.Activate(a); err != nil {
		t.log.Error("pcitransport: device activation failed, device needs reset", "err", err)
		t.failDevice()
	}
}

// reset performs a device reset (§2.1, §4.1.4.3.1: the device is reset
// when 0 is written to device_status, and the driver reads 0 back once
// it completed). The device is stopped synchronously, so a read of
// device_status after the write returns 0: no goroutine is still using
// the queues. MSI-X table state belongs to PCI, not virtio, and is kept.
// t.mu is held.
func (t *Transport) reset() {
	t.dev.Reset()
	for i := range t.queues {
		t.queues[i].q.Reset()
		t.queues[i].vector.Store(NoVector)
	}
	t.st = regState{}
	t.needsReset.Store(false)
	t.configVector.Store(NoVector)
	t.readISR() // clears ISR and lowers INTx
}
