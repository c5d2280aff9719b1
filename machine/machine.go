// Package machine assembles a guest: the platform (package vmm) plus the
// devices this guest gets. It is the layer above the device models and
// below the CLI. The platform takes devices through vmm.Device without
// importing any model; this package decides which model backs each --net,
// builds it, and hands it to the platform to attach, as Firecracker's
// builder and rust-vmm's device manager do over their platform crates.
package machine

import (
	"crypto/rand"
	"fmt"
	"github.com/govmm/govmm/devices/nic/afxdp"
	"net"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic/tap"
	"github.com/govmm/govmm/vmm"
)

// Config is a whole guest: the platform's configuration and its NICs.
// Config.Devices (of the embedded vmm.Config) may hold further devices;
// the NICs are attached after them.
type Config struct {
	vmm.Config
	Nets []NetConfig
}

// Machine is a created guest ready to Run: the platform VM (Run, Stop,
// Close, ConsoleInput are its) and the NICs attached to it.
type Machine struct {
	*vmm.VM
	cfg  Config
	nets []*NIC
}

// New builds the guest's NICs and creates the VM with them attached.
// Nothing runs until Run; Close releases the VM and every NIC.
func New(cfg Config) (*Machine, error) {
	// The MACs are fixed here, so a reboot (RebootConfig) keeps them.
	cfg.Nets = append([]NetConfig(nil), cfg.Nets...)
	for i := range cfg.Nets {
		if cfg.Nets[i].MAC == nil {
			cfg.Nets[i].MAC = randomMAC()
		}
	}
	m := &Machine{cfg: cfg}
	vcfg := cfg.Config
	vcfg.Devices = append([]vmm.Device(nil), cfg.Devices...)
	for _, nc := range cfg.Nets {
		n := &NIC{Config: nc}
		if nc.XDP != "" {
			// Each AF_XDP NIC's bounce chunks, in the scratch after RAM.
			n.scratchOff = vcfg.ScratchBytes
			vcfg.ScratchBytes += afxdp.ScratchBytes
		}
		m.nets = append(m.nets, n)
		vcfg.Devices = append(vcfg.Devices, n)
	}
	vm, err := vmm.New(vcfg) // on failure it has closed what it attached
	if err != nil {
		return nil, err
	}
	m.VM = vm
	// The images live in guest RAM now (see vmm.New).
	m.cfg.Kernel, m.cfg.Initrd = nil, nil
	return m, nil
}

// Nets returns the machine's NICs, in --net order.
func (m *Machine) Nets() []*NIC { return m.nets }

// Stats returns every NIC's counters, named net0, net1, … in --net order.
func (m *Machine) Stats() []NetStats {
	out := make([]NetStats, 0, len(m.nets))
	for i, n := range m.nets {
		out = append(out, n.Stats(fmt.Sprintf("net%d", i)))
	}
	return out
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
		if n.keepTapForReboot() {
			cfg.Nets[i].OwnsTap = true
		}
		if x, ok := n.model.(*afxdp.Model); ok {
			cfg.Nets[i].XDPIfindex = x.Ifindex()
		}
	}
	return cfg
}

// DebugState describes every NIC for a state dump (govmm's SIGUSR1).
func (m *Machine) DebugState() string {
	var b strings.Builder
	for i, n := range m.nets {
		fmt.Fprintf(&b, "net%d (tap %s, %s):\n", i, n.Config.Tap, n.modelName)
		for _, l := range strings.Split(strings.TrimRight(n.DebugState(), "\n"), "\n") {
			fmt.Fprintf(&b, "  %s\n", l)
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

// randomMAC returns a unicast, locally administered address in QEMU's
// 52:54:00 style prefix.
func randomMAC() net.HardwareAddr {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 0}
	_, _ = rand.Read(mac[3:])
	return mac
}
