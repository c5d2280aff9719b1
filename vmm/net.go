package vmm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"github.com/govmm/govmm/devices/ixgbe-emu/pcidev"
	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/tap"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtionet"
	"github.com/govmm/govmm/vmm/pci/msix"
	"github.com/govmm/govmm/zerocopy"
)

// NetConfig is one --net interface.
type NetConfig struct {
	Tap       string           // host tap interface (created if missing)
	MAC       net.HardwareAddr // nil: a random locally administered address
	MTU       uint16           // 0: not offered to the guest
	Mergeable bool             // offer VIRTIO_NET_F_MRG_RXBUF
	Path      string           // "zerocopy" (the 82599 path, default) or "copy" (the tap model)
	PinLimit  uint64           // zero-copy: bytes of guest rx buffers registered with the NIC (0: default)
	// Model "ixgbe" puts the emulated Intel 82599 itself on the guest's
	// PCI bus (the guest's ixgbe driver drives it) instead of virtio-net.
	Model string
	// OnActivate is called when the guest driver brings the device up.
	OnActivate func(model string, features uint64)
}

// NetDevice is a guest NIC as the machine holds it.
type NetDevice struct {
	Config    NetConfig
	Dev       *virtionet.Net
	transport *pcitransport.Transport // virtio-net only
	ixgbe     *pcidev.Device          // model=ixgbe only
	model     nic.Model
	closeFn   func() error
	modelName string
}

// addNet builds the model, the virtio-net device and its PCI function.
func (m *Machine) addNet(c NetConfig) error {
	if c.MAC == nil {
		c.MAC = randomMAC()
	}
	if c.Model == "ixgbe" {
		return m.addIxgbe(c)
	}
	var model nic.Model
	var closer func() error
	switch c.Path {
	case "copy":
		t, err := tap.Open(c.Tap)
		if err != nil {
			return err
		}
		model, closer = t, t.Close
	case "", "zerocopy":
		port, err := zerocopy.OpenTap(c.Tap)
		if err != nil {
			return err
		}
		var mac [6]byte
		copy(mac[:], c.MAC)
		pin := zerocopy.PinLimit{}
		if c.PinLimit != 0 {
			pin = zerocopy.DefaultPinLimit(virtionet.QueueSize)
			pin.Bytes = c.PinLimit
		}
		zc, err := zerocopy.NewModel(zerocopy.Config{
			MAC: mac, Mem: m.Mem, Port: port, RxQueueSize: virtionet.QueueSize,
			Pin: pin, MTU: int(c.MTU), Log: m.log,
		})
		if err != nil {
			port.Close()
			return err
		}
		model = zc
		closer = func() error { zc.Close(); return port.Close() }
	default:
		return fmt.Errorf("--net path=%s: want zerocopy or copy", c.Path)
	}
	dev, err := virtionet.New(virtionet.Config{
		MAC: c.MAC, MTU: c.MTU, Mergeable: c.Mergeable, Model: model,
		Logger: m.log, OnActivate: c.OnActivate,
	})
	if err != nil {
		return err
	}
	tr, err := pcitransport.New(pcitransport.Config{
		Device:      dev,
		Mem:         m.Mem,
		AllocVector: func() (msix.Vector, error) { return m.IRQ.AllocMSI() },
		Doorbells:   pcitransport.KVMDoorbells{VM: m.vm},
		Logger:      m.log,
	})
	if err != nil {
		return err
	}
	if _, err := m.PCI.Add(tr); err != nil {
		return fmt.Errorf("net %s: %w", c.Tap, err)
	}
	m.nets = append(m.nets, &NetDevice{Config: c, Dev: dev, transport: tr, model: model, closeFn: closer, modelName: model.Name()})
	return nil
}

// addIxgbe puts an emulated 82599 on the guest PCI bus, bridged to the tap.
func (m *Machine) addIxgbe(c NetConfig) error {
	var mac [6]byte
	copy(mac[:], c.MAC)
	dev, err := pcidev.New(pcidev.Config{
		MAC: mac, Tap: c.Tap, Mem: m.Mem, Logger: m.log,
		AllocVector: func() (msix.Vector, error) {
			v, err := m.IRQ.AllocMSI()
			if err != nil {
				return nil, err // a plain nil, not a nil *MSIVector in an interface
			}
			return v, nil
		},
	})
	if err != nil {
		return err
	}
	if _, err := m.PCI.Add(dev); err != nil {
		dev.Close()
		return fmt.Errorf("net %s: %w", c.Tap, err)
	}
	m.nets = append(m.nets, &NetDevice{Config: c, ixgbe: dev, closeFn: dev.Close, modelName: "ixgbe"})
	return nil
}

// Nets returns the machine's NICs.
func (m *Machine) Nets() []*NetDevice { return m.nets }

func (m *Machine) closeNets() error {
	var errs []error
	for _, n := range m.nets {
		if n.transport != nil {
			errs = append(errs, n.transport.Close())
		}
		errs = append(errs, n.closeFn())
	}
	m.nets = nil
	return errors.Join(errs...)
}

// randomMAC returns a unicast, locally administered address in QEMU's
// 52:54:00 style prefix.
func randomMAC() net.HardwareAddr {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 0}
	_, _ = rand.Read(mac[3:])
	return mac
}
