package zerocopy

import (
	"errors"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/internal/testnet"
	"github.com/govmm/govmm/vmm/guestmem"
)

// TestConformance runs the zero-copy model over an in-memory port through
// the NIC-model conformance kit.
func TestConformance(t *testing.T) {
	nictest.Run(t, nictest.Harness{New: func(t *testing.T, mem *guestmem.Memory) nictest.Link {
		port := NewMemPort(12)
		m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return nictest.Link{Model: m, Wire: &memWire{port: port}, MAC: guestMAC, Close: func() { m.Close(); port.Close() }}
	}})
}

// TestConformanceTap runs it over a real tap in a private namespace: the
// host kernel is the far end.
func TestConformanceTap(t *testing.T) {
	ns := testnet.NewNetns(t)
	nictest.Run(t, nictest.Harness{New: func(t *testing.T, mem *guestmem.Memory) nictest.Link {
		var port *TapPort
		var wire *nictest.PacketWire
		var err error
		ns.Do(func() {
			if port, err = OpenTap("zctest0"); err != nil {
				return
			}
			wire, err = nictest.NewPacketWire("zctest0")
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return nictest.Link{Model: m, Wire: wire, MAC: guestMAC, Close: func() { m.Close(); wire.Close(); port.Close() }}
	}})
}

// memWire is the far end of a MemPort.
type memWire struct {
	port *MemPort
	next int
}

func (w *memWire) Send(frame []byte) error { w.port.Inject(nil, frame); return nil }

func (w *memWire) Recv(timeout time.Duration) (hdr, frame []byte, err error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if hdr, f, ok := w.port.SentFrame(w.next); ok {
			w.next++
			return hdr, f, nil
		}
		time.Sleep(time.Millisecond)
	}
	return nil, nil, errors.New("no frame")
}
