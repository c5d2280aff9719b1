package vmm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"

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
	// Moderation: virtio-net transmit polling and receive interrupt
	// coalescing (virtionet.DefaultModeration unless set by the CLI).
	Moderation virtionet.Moderation
	// Model "ixgbe" puts the emulated Intel 82599 itself on the guest's
	// PCI bus (the guest's ixgbe driver drives it) instead of virtio-net.
	Model string
	// OnActivate is called when the guest driver brings the device up.
	OnActivate func(model string, features uint64)
	// OwnsTap: govmm created this tap for an earlier boot of the guest
	// (see RebootConfig); it is removed when this machine closes.
	OwnsTap bool
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
	tap       tapHolder // the backend's tap
	ownsTap   bool      // govmm created the tap: it goes when the machine does
}

// tapHolder is a backend attached to a host tap: its descriptor (-1 for
// none) and whether opening it created the interface (tap.OpenFD).
type tapHolder interface {
	TapFD() int
	Created() bool
}

// addNet builds the model, the virtio-net device and its PCI function.
func (m *Machine) addNet(c NetConfig) error {
	var err error
	if c.Model == "ixgbe" {
		err = m.addIxgbe(c)
	} else {
		err = m.addVirtioNet(c)
	}
	if err != nil {
		return err
	}
	n := m.nets[len(m.nets)-1]
	n.ownsTap = n.tap.Created() || c.OwnsTap
	if c.OwnsTap {
		// Persistent only for the reboot: from now on it goes with govmm.
		if fd := n.tap.TapFD(); fd >= 0 {
			if err := tap.SetPersist(fd, false); err != nil {
				m.log.Warn("tap kept for the reboot stays after govmm exits", "tap", c.Tap, "err", err)
			}
		}
	}
	return nil
}

// addVirtioNet builds the backend model, the virtio-net device and its PCI
// function.
func (m *Machine) addVirtioNet(c NetConfig) error {
	var model nic.Model
	var closer func() error
	var holder tapHolder
	switch c.Path {
	case "copy":
		t, err := tap.Open(c.Tap)
		if err != nil {
			return err
		}
		model, closer, holder = t, t.Close, t
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
		model, holder = zc, port
		closer = func() error { zc.Close(); return port.Close() }
	default:
		return fmt.Errorf("--net path=%s: want zerocopy or copy", c.Path)
	}
	dev, err := virtionet.New(virtionet.Config{
		MAC: c.MAC, MTU: c.MTU, Mergeable: c.Mergeable, Model: model,
		Moderation: c.Moderation, WorkerThread: m.cfg.Placement.DeviceThread(),
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
	m.nets = append(m.nets, &NetDevice{Config: c, Dev: dev, transport: tr, model: model, closeFn: closer, modelName: model.Name(), tap: holder})
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
	m.nets = append(m.nets, &NetDevice{Config: c, ixgbe: dev, closeFn: dev.Close, modelName: "ixgbe", tap: dev})
	return nil
}

// RebootConfig returns the configuration for the next boot of this guest
// after it reset, and makes the taps govmm created outlive this machine's
// Close (TUNSETPERSIST) so the next machine attaches to them with their
// host-side addresses and routes intact; that machine removes them again
// when it closes. Call it before Close. The machine keeps no images:
// the caller sets Kernel and Initrd again.
func (m *Machine) RebootConfig() Config {
	cfg := m.cfg
	cfg.Nets = append([]NetConfig(nil), cfg.Nets...)
	for i, n := range m.nets {
		if !n.ownsTap {
			continue
		}
		fd := n.tap.TapFD()
		if fd < 0 {
			continue
		}
		if err := tap.SetPersist(fd, true); err != nil {
			m.log.Warn("tap is re-created for the reboot, without its host configuration", "tap", n.Config.Tap, "err", err)
			continue
		}
		cfg.Nets[i].OwnsTap = true
	}
	return cfg
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

// DebugState describes every NIC for a state dump (govmm's SIGUSR1).
func (m *Machine) DebugState() string {
	var b strings.Builder
	for i, n := range m.nets {
		fmt.Fprintf(&b, "net%d (tap %s, %s):\n", i, n.Config.Tap, n.modelName)
		switch {
		case n.Dev != nil:
			for _, l := range strings.Split(n.Dev.DebugState(), "\n") {
				fmt.Fprintf(&b, "  %s\n", l)
			}
		default:
			b.WriteString("  guest-visible device: its state is in the guest (ethtool -S)\n")
		}
	}
	return b.String()
}

// ReleaseTaps removes the taps RebootConfig kept in cfg, for a reboot
// whose new machine could not be built.
func ReleaseTaps(cfg Config) {
	for _, n := range cfg.Nets {
		if !n.OwnsTap {
			continue
		}
		fd, _, err := tap.OpenFD(n.Tap, true)
		if err != nil {
			continue
		}
		_ = tap.SetPersist(fd, false)
		_ = unix.Close(fd)
	}
}
