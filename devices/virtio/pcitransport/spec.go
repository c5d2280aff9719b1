// Values fixed by the virtio spec: PCI identity, status, feature and ISR bits.

package pcitransport

// PCI identity of a modern virtio function (§4.1.2).
const (
	VendorID     = 0x1AF4
	DeviceIDBase = 0x1040 // + virtio device type (§5)
	Revision     = 1      // non-transitional devices have revision >= 1
	// MaxDeviceType is the largest device type that fits the modern
	// device ID range 0x1040-0x107F.
	MaxDeviceType = 0x3F
)

// Device status bits (§2.1).
const (
	StatusAcknowledge = 0x01
	StatusDriver      = 0x02
	StatusDriverOK    = 0x04
	StatusFeaturesOK  = 0x08
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// Reserved feature bits (§6) the transport cares about.
const (
	FeatureIndirectDesc     = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx         = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked       = 1 << 34 // VIRTIO_F_RING_PACKED
	FeatureSRIOV            = 1 << 37 // VIRTIO_F_SR_IOV
	FeatureNotificationData = 1 << 38 // VIRTIO_F_NOTIFICATION_DATA
	FeatureNotifConfigData  = 1 << 39 // VIRTIO_F_NOTIF_CONFIG_DATA
	FeatureRingReset        = 1 << 40 // VIRTIO_F_RING_RESET

	// unsupportedFeatures need transport or queue support this package
	// does not have; they are never offered.
	unsupportedFeatures = FeatureRingPacked | FeatureSRIOV | FeatureNotificationData | FeatureNotifConfigData | FeatureRingReset
)

// ISR status bits (§4.1.4.5).
const (
	ISRQueue  = 0x1
	ISRConfig = 0x2
)

// NoVector is VIRTIO_MSI_NO_VECTOR (§4.1.5.1.2).
const NoVector = 0xFFFF
