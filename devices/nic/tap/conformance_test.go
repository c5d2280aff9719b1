package tap

import (
	"testing"

	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/internal/testnet"
	"github.com/govmm/govmm/vmm/guestmem"
)

// TestConformance runs the tap model through the NIC-model conformance kit,
// with the host kernel (a packet socket on the tap) as the far end, in a
// private network namespace.
func TestConformance(t *testing.T) {
	ns := testnet.NewNetns(t)
	nictest.Run(t, nictest.Harness{New: func(t *testing.T, _ *guestmem.Memory) nictest.Link {
		var tp *Tap
		var wire *nictest.PacketWire
		var err error
		ns.Do(func() {
			if tp, err = Open("taptest0"); err != nil {
				return
			}
			wire, err = nictest.NewPacketWire("taptest0")
		})
		if err != nil {
			t.Fatal(err)
		}
		return nictest.Link{Model: tp, Wire: wire, Close: func() { wire.Close(); tp.Close() }}
	}})
}
