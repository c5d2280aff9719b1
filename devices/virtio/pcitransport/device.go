// The device model side: the Device interface and what it gets on DRIVER_OK.

package pcitransport

import (
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Interrupt raises a queue or configuration-change interrupt. Trigger is
// safe from any goroutine and never blocks on the transport lock.
type Interrupt interface {
	Trigger() error
}

// Device is a virtio device model driven by the transport.
//
// The transport calls these methods from vCPU threads with its lock held
// (see the package comment); ReadConfig and WriteConfig are called without
// it, concurrently with device goroutines.
type Device interface {
	// Type is the virtio device ID (§5: 1 = network, 2 = block, ...).
	Type() uint16
	// Features returns the offered feature bits. VIRTIO_F_VERSION_1 is
	// mandatory for a modern device.
	Features() uint64
	// QueueMaxSizes returns each queue's maximum size (powers of two).
	QueueMaxSizes() []uint16
	// ReadConfig and WriteConfig access the device-specific configuration
	// (§4.1.4.6) at offset; data may have any length and offset any value
	// below DeviceCfgLength: out-of-range bytes read as zero.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver set DRIVER_OK (§3.1.1).
	// It is called at most once between resets. An error marks the
	// device DEVICE_NEEDS_RESET.
	Activate(a Activation) error
	// Reset stops the device (§2.1 status 0 written, or Close). It must
	// not return before every goroutine using the activated queues has
	// stopped; the transport then resets the queues. It may be called
	// without a preceding Activate.
	Reset()
}

// ClassProvider may be implemented by a Device to choose its PCI class
// code (base<<16 | sub<<8 | prog-if). Without it the class is derived
// from the device type (network 0x020000, block 0x018000, console
// 0x078000, anything else 0xFF0000).
type ClassProvider interface {
	PCIClass() uint32
}

// Activation is what a device gets on DRIVER_OK.
type Activation struct {
	// Features is the negotiated feature set (the driver's acceptance).
	Features uint64
	// Mem is guest memory.
	Mem *guestmem.Memory
	// Queues holds the queues the driver enabled, in index order. Queues
	// left disabled are absent (§4.1.4.3.2 lets a driver skip queues).
	Queues []ActiveQueue
	// ConfigInterrupt raises the configuration-change interrupt; devices
	// normally use Transport.ConfigChanged instead, which also bumps
	// config_generation.
	ConfigInterrupt Interrupt
	// NeedsReset marks the device DEVICE_NEEDS_RESET and raises the
	// configuration-change interrupt (§2.1.2), for an error the device
	// cannot recover from without the driver resetting it: a queue the
	// driver broke (queue.ErrQueueBroken). Safe from any goroutine; nil
	// in tests that do not need it.
	NeedsReset func()
}

// ActiveQueue is one enabled queue handed to the device.
type ActiveQueue struct {
	Index int
	// Queue is programmed, validated and ready; SetEventIdx and
	// SetIndirect have been applied from the negotiated features. The
	// device owns it until Reset returns.
	Queue *queue.Queue
	// Interrupt raises the queue's interrupt (its MSI-X vector, nothing
	// for VIRTIO_MSI_NO_VECTOR, or INTx with MSI-X disabled).
	Interrupt Interrupt
	// Doorbell is a non-blocking eventfd signalled on each driver
	// notification for this queue. The transport owns it: read it to
	// consume notifications, do not close it (dup it for os.NewFile).
	Doorbell int
}
