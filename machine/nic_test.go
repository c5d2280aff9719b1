package machine

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/internal/testnet"
	"github.com/govmm/govmm/vmm"
	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
	"github.com/govmm/govmm/vmm/pci/pcitest"
	"github.com/govmm/govmm/zerocopy"
)

type nopVector struct{}

func (nopVector) Update(uint64, uint32, bool) error { return nil }
func (nopVector) Trigger() error                    { return nil }

// platform is what vmm.New hands a device, without KVM: guest RAM, the
// buses and a PCI bridge.
func platform(t *testing.T) (*vmm.Platform, *bus.Bus) {
	mem, err := guestmem.New([]guestmem.Layout{{GPA: 0, Size: 64 << 20}})
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	pio, mmio := bus.New("pio"), bus.New("mmio")
	br, err := pci.NewBridge(pci.Config{PIO: pio, MMIO: mmio, RAMEnd: mem.End()})
	require.NoError(t, err)
	return &vmm.Platform{
		Mem: mem, PCI: br,
		AllocMSI: func() (msix.Vector, error) { return nopVector{}, nil },
	}, pio
}

func linkExists(ns *testnet.Netns, name string) bool {
	var err error
	ns.Do(func() { _, err = net.InterfaceByName(name) })
	return err == nil
}

// TestNICAttachesEachModel attaches every kind of --net to a platform and
// checks the guest-visible function, the tap, the statistics and that
// Close removes the tap govmm created.
func TestNICAttachesEachModel(t *testing.T) {
	ns := testnet.NewNetns(t)
	for _, tc := range []struct {
		cfg            NetConfig
		vendor, device uint16
		model          string
	}{
		{NetConfig{Tap: "mt0", Path: "zerocopy"}, 0x1AF4, 0x1041, "ixgbe-zerocopy"},
		{NetConfig{Tap: "mt3", Path: "zerocopy", Queues: 3}, 0x1AF4, 0x1041, "ixgbe-zerocopy"},
		{NetConfig{Tap: "mt1", Path: "copy"}, 0x1AF4, 0x1041, "tap"},
		{NetConfig{Tap: "mt2", Model: "ixgbe"}, 0x8086, 0x10F7, "ixgbe"},
	} {
		t.Run(tc.cfg.Tap+"-"+tc.model, func(t *testing.T) {
			p, pio := platform(t)
			tc.cfg.MAC = randomMAC()
			n := &NIC{Config: tc.cfg}
			var err error
			ns.Do(func() { err = n.Attach(p) })
			require.NoError(t, err)
			id, ok := pcitest.ConfigIO{PIO: pio, Slot: 1}.Read(0, 4)
			require.True(t, ok)
			require.Equal(t, uint32(tc.device)<<16|uint32(tc.vendor), id, "vendor/device in slot 1")
			require.True(t, linkExists(ns, tc.cfg.Tap))
			st := n.Stats("net0")
			require.Equal(t, tc.model, st.Model)
			require.Equal(t, tc.cfg.Tap, st.Tap)
			require.NotEmpty(t, n.DebugState())
			if tc.cfg.Queues > 1 {
				require.Equal(t, tc.cfg.Queues, n.dev.Pairs())
				require.Len(t, n.models, tc.cfg.Queues)
				require.Equal(t, uint64(tc.cfg.Queues)*n.models[0].(*zerocopy.Model).Stats().PinLimitBytes, st.PinLimitBytes, "a pin limit per pair")
			}
			require.NoError(t, n.Close())
			require.False(t, linkExists(ns, tc.cfg.Tap), "the tap govmm created goes with the NIC")
			require.NoError(t, n.Close(), "Close twice is harmless")
		})
	}
}

type filler struct{ cs *pci.ConfigSpace }

func (f filler) Config() *pci.ConfigSpace { return f.cs }

// TestNICFailedAttachReleasesAll: a failure after the tap and the model
// exist (here a PCI bus with no free slot) leaves nothing behind once the
// platform closes the device, as vmm.New does.
func TestNICFailedAttachReleasesAll(t *testing.T) {
	ns := testnet.NewNetns(t)
	for _, cfg := range []NetConfig{
		{Tap: "mf0", Path: "zerocopy"},
		{Tap: "mf1", Path: "copy"},
		{Tap: "mf2", Model: "ixgbe"},
	} {
		p, _ := platform(t)
		for {
			if _, err := p.PCI.Add(filler{pci.NewConfigSpace(pci.Header{VendorID: 0x1234, DeviceID: 1})}); err != nil {
				require.ErrorIs(t, err, pci.ErrNoSlot)
				break
			}
		}
		cfg.MAC = randomMAC()
		n := &NIC{Config: cfg}
		var err error
		ns.Do(func() { err = n.Attach(p) })
		require.ErrorIs(t, err, pci.ErrNoSlot)
		require.ErrorContains(t, err, "net "+cfg.Tap+": ")
		require.NoError(t, n.Close())
		require.False(t, linkExists(ns, cfg.Tap), "%s left behind", cfg.Tap)
	}
	p, _ := platform(t)
	n := &NIC{Config: NetConfig{Tap: "mf3", Path: "bogus"}}
	require.ErrorContains(t, n.Attach(p), "path=bogus: want zerocopy or copy")
	require.NoError(t, n.Close())
	n = &NIC{Config: NetConfig{Tap: "mf4", Path: "copy", Queues: 2}}
	require.ErrorContains(t, n.Attach(p), "needs the zero-copy path")
	require.NoError(t, n.Close())
}

// TestTapOutlivesReboot: a tap govmm created is kept for the next boot
// (keepTapForReboot), that boot's NIC owns it and removes it on Close, and
// ReleaseTaps removes one kept for a boot that never came.
func TestTapOutlivesReboot(t *testing.T) {
	ns := testnet.NewNetns(t)
	p, _ := platform(t)
	cfg := NetConfig{Tap: "mr0", Path: "copy", MAC: randomMAC()}
	first := &NIC{Config: cfg}
	var err error
	ns.Do(func() { err = first.Attach(p) })
	require.NoError(t, err)
	require.True(t, first.keepTapForReboot())
	require.NoError(t, first.Close())
	require.True(t, linkExists(ns, "mr0"), "kept for the reboot")

	cfg.OwnsTap = true
	p2, _ := platform(t)
	second := &NIC{Config: cfg}
	ns.Do(func() { err = second.Attach(p2) })
	require.NoError(t, err)
	require.NoError(t, second.Close())
	require.False(t, linkExists(ns, "mr0"), "the rebooted guest's NIC removes it")

	// Kept, then the next machine could not be built.
	third := &NIC{Config: NetConfig{Tap: "mr1", Path: "copy", MAC: randomMAC()}}
	ns.Do(func() { err = third.Attach(p2) })
	require.NoError(t, err)
	require.True(t, third.keepTapForReboot())
	require.NoError(t, third.Close())
	require.True(t, linkExists(ns, "mr1"))
	ns.Do(func() { ReleaseTaps(Config{Nets: []NetConfig{{Tap: "mr1", OwnsTap: true}}}) })
	require.False(t, linkExists(ns, "mr1"))
}
