package machine

import (
	"errors"
	"fmt"
	"github.com/govmm/govmm/devices/nic/afxdp"
	"log/slog"
	"net"

	"github.com/govmm/govmm/devices/ixgbe-emu/pcidev"
	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/tap"
	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtionet"
	"github.com/govmm/govmm/vmm"
	"github.com/govmm/govmm/zerocopy"
)

// NetConfig is one --net interface.
type NetConfig struct {
	Tap        string           // host tap interface (created if missing)
	MAC        net.HardwareAddr // nil: a random locally administered address
	MTU        uint16           // 0: not offered to the guest
	Mergeable  bool             // offer VIRTIO_NET_F_MRG_RXBUF
	NoOffloads bool             // offer no checksum or segmentation offload (virtio-net)
	Path       string           // "zerocopy" (the 82599 path, default) or "copy" (the tap model)
	// Queues is the virtio-net queue pairs (0 or 1: one). With more, the
	// tap is multi-queue and each pair has its own zero-copy model: its
	// own 82599 rings, pin account and tap queue.
	Queues   int
	PinLimit uint64 // zero-copy: bytes of guest rx buffers registered with the NIC (0: default)
	// Moderation: virtio-net transmit polling and receive interrupt
	// coalescing (virtionet.DefaultModeration unless set by the CLI).
	Moderation virtionet.Moderation
	// Model "ixgbe" puts the emulated Intel 82599 itself on the guest's
	// PCI bus (the guest's ixgbe driver drives it) instead of virtio-net.
	Model string
	// OnActivate is called when the guest driver brings the device up.
	OnActivate func(model string, features uint64)
	// RxLimit and TxLimit rate-limit the guest's receive and transmit
	// (virtio-net only; nil: unlimited). Their state outlives a reboot.
	RxLimit, TxLimit *ratelimit.Limiter
	// OwnsTap: govmm created this tap for an earlier boot of the guest
	// (see RebootConfig); it is removed when this machine closes.
	OwnsTap bool
	// XDP, instead of Tap, names a host interface whose receive queue
	// XDPQueue is served by an AF_XDP socket with guest RAM as its UMEM
	// (devices/nic/afxdp); XDPMode is auto, zerocopy or copy.
	XDP      string
	XDPQueue int
	XDPMode  string
	// XDPIfindex is XDP's index once known (RebootConfig): a reboot's
	// machine is built under the seccomp filter, without netlink.
	XDPIfindex int
}

// NIC is one guest network interface: a vmm.Device the platform attaches.
// Which NIC model backs it, and what the guest sees, follow its Config:
// virtio-net over the zero-copy 82599 path or the tap model, or the
// guest-visible 82599.
type NIC struct {
	Config    NetConfig
	log       *slog.Logger
	dev       *virtionet.Net          // virtio-net only
	transport *pcitransport.Transport // virtio-net only
	ixgbe     *pcidev.Device          // model=ixgbe only
	model     nic.Model               // virtio-net's backend (the first pair's)
	models    []nic.Model             // every pair's, model first
	closers   []func() error          // in acquisition order; run last first
	modelName string
	tap       tapHolder // the backend's tap
	ownsTap   bool      // govmm created the tap: it goes when the machine does
	// scratchOff is where this NIC's AF_XDP bounce chunks start in guest
	// memory's scratch (machine.New lays them out).
	scratchOff uint64
}

// tapHolder is a backend attached to a host tap: its descriptor (-1 for
// none) and whether opening it created the interface (tap.OpenFD).
type tapHolder interface {
	TapFD() int
	Created() bool
}

var _ vmm.Device = (*NIC)(nil)

// Attach builds the NIC's model and device and puts its PCI function on
// the platform's bridge.
func (n *NIC) Attach(p *vmm.Platform) error {
	n.log = p.Log
	c := n.Config
	var err error
	if c.Model == "ixgbe" {
		err = n.attachIxgbe(p)
	} else {
		err = n.attachVirtioNet(p)
	}
	if err != nil {
		if c.XDP != "" {
			return fmt.Errorf("net xdp=%s: %w", c.XDP, err)
		}
		return fmt.Errorf("net %s: %w", c.Tap, err)
	}
	if n.tap == nil {
		return nil // AF_XDP: no tap
	}
	n.ownsTap = n.tap.Created() || c.OwnsTap
	if c.OwnsTap {
		// Persistent only for the reboot: from now on it goes with govmm.
		if fd := n.tap.TapFD(); fd >= 0 {
			if err := tap.SetPersist(fd, false); err != nil {
				n.log.Warn("tap kept for the reboot stays after govmm exits", "tap", c.Tap, "err", err)
			}
		}
	}
	return nil
}

// attachVirtioNet builds the backend model, the virtio-net device and its
// PCI function.
func (n *NIC) attachVirtioNet(p *vmm.Platform) error {
	c := n.Config
	if c.Queues > 1 && (c.XDP != "" || c.Path == "copy") {
		return fmt.Errorf("queues=%d: more than one queue pair needs the zero-copy path (path=zerocopy on a tap)", c.Queues)
	}
	if c.Queues > virtionet.MaxPairs {
		return fmt.Errorf("queues=%d: at most %d", c.Queues, virtionet.MaxPairs)
	}
	switch {
	case c.XDP != "":
		mode, err := afxdp.ParseMode(c.XDPMode)
		if err != nil {
			return err
		}
		x, err := afxdp.New(afxdp.Config{Ifname: c.XDP, Ifindex: c.XDPIfindex, Queue: c.XDPQueue, Mode: mode, Mem: p.Mem,
			ScratchOff: n.scratchOff, MTU: int(c.MTU), Log: p.Log})
		if err != nil {
			return err
		}
		n.closers = append(n.closers, x.Close)
		n.model = x
	case c.Path == "copy":
		t, err := tap.Open(c.Tap)
		if err != nil {
			return err
		}
		n.closers = append(n.closers, t.Close)
		n.model, n.tap = t, t
	case c.Path == "" || c.Path == "zerocopy":
		ports, err := zerocopy.OpenTapQueues(c.Tap, max(c.Queues, 1))
		if err != nil {
			return err
		}
		for _, port := range ports {
			n.closers = append(n.closers, port.Close)
		}
		n.tap = ports[0]
		var mac [6]byte
		copy(mac[:], c.MAC)
		pin := zerocopy.PinLimit{}
		if c.PinLimit != 0 {
			pin = zerocopy.DefaultPinLimit(virtionet.QueueSize)
			pin.Bytes = c.PinLimit
		}
		for _, port := range ports {
			zc, err := zerocopy.NewModel(zerocopy.Config{
				MAC: mac, Mem: p.Mem, Port: port, RxQueueSize: virtionet.QueueSize,
				Pin: pin, MTU: int(c.MTU), Log: p.Log,
			})
			if err != nil {
				return err
			}
			n.closers = append(n.closers, func() error { zc.Close(); return nil })
			n.models = append(n.models, zc)
		}
		n.model = n.models[0]
	default:
		return fmt.Errorf("path=%s: want zerocopy or copy", c.Path)
	}
	if n.models == nil {
		n.models = []nic.Model{n.model}
	}
	n.modelName = n.model.Name()
	dev, err := virtionet.New(virtionet.Config{
		MAC: c.MAC, MTU: c.MTU, Mergeable: c.Mergeable, NoOffloads: c.NoOffloads, Models: n.models,
		Moderation: c.Moderation, WorkerThread: p.DeviceThread,
		RxLimit: c.RxLimit, TxLimit: c.TxLimit,
		Logger: p.Log, OnActivate: c.OnActivate,
	})
	if err != nil {
		return err
	}
	n.dev = dev
	// Doorbells are KVM ioeventfds; without a VM (tests) every
	// notification goes through the MMIO handler instead.
	var doorbells pcitransport.DoorbellRegistrar
	if p.VM != nil {
		doorbells = pcitransport.KVMDoorbells{VM: p.VM}
	}
	tr, err := pcitransport.New(pcitransport.Config{
		Device:      dev,
		Mem:         p.Mem,
		AllocVector: p.AllocMSI,
		Doorbells:   doorbells,
		Logger:      p.Log,
	})
	if err != nil {
		return err
	}
	// The transport stops the device's workers before the model goes.
	n.closers = append(n.closers, tr.Close)
	n.transport = tr
	_, err = p.PCI.Add(tr)
	return err
}

// attachIxgbe puts an emulated 82599 on the guest PCI bus, bridged to the
// tap.
func (n *NIC) attachIxgbe(p *vmm.Platform) error {
	if n.Config.Queues > 1 {
		return fmt.Errorf("queues=%d: the guest-visible 82599 takes its queues from --cpus", n.Config.Queues)
	}
	var mac [6]byte
	copy(mac[:], n.Config.MAC)
	dev, err := pcidev.New(pcidev.Config{
		MAC: mac, Tap: n.Config.Tap, Mem: p.Mem, Logger: p.Log,
		AllocVector: p.AllocMSI, CoalesceMMIO: p.CoalesceMMIO,
	})
	if err != nil {
		return err
	}
	n.closers = append(n.closers, dev.Close)
	n.ixgbe, n.tap, n.modelName = dev, dev, "ixgbe"
	_, err = p.PCI.Add(dev)
	return err
}

// Close stops the NIC and releases what Attach acquired (also after a
// partial Attach): the transport and its workers first, then the model,
// then the tap.
func (n *NIC) Close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}

// keepTapForReboot makes a tap govmm created persist past Close, for the
// next boot of the guest; it reports whether it did.
func (n *NIC) keepTapForReboot() bool {
	if !n.ownsTap || n.tap == nil {
		return false
	}
	fd := n.tap.TapFD()
	if fd < 0 {
		return false
	}
	if err := tap.SetPersist(fd, true); err != nil {
		n.log.Warn("tap is re-created for the reboot, without its host configuration", "tap", n.Config.Tap, "err", err)
		return false
	}
	return true
}

// DebugState describes the NIC's queues and model for a state dump.
func (n *NIC) DebugState() string {
	if n.dev == nil {
		return "guest-visible device: its state is in the guest (ethtool -S)"
	}
	return n.dev.DebugState()
}
