package nictest_test

import (
	"testing"

	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/vmm/guestmem"
)

// A device author checks a model with one call in its package's tests.
// New builds a fresh model and the far end of its wire for every part of
// the contract; a model on a host interface can use PacketWire (inside a
// private network namespace), an in-process one a Wire of its own. This
// one is the small channel-wired model of this package's tests.
func ExampleRun() {
	_ = func(t *testing.T) { // func TestConformance(t *testing.T)
		nictest.Run(t, nictest.Harness{New: func(t *testing.T, mem *guestmem.Memory) nictest.Link {
			m := &wireModel{out: make(chan [2][]byte, 4096)}
			return nictest.Link{Model: m, Wire: chanWire{m}}
		}})
	}
}
