package nictest_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/vmm/guestmem"
)

// wireModel is a small, correct NIC model whose wire is a pair of Go
// channels; its flaws switch on one contract breach each, to show that
// the kit catches it.
type wireModel struct {
	flaw string

	mu      sync.Mutex
	cfg     nic.Config
	sink    nic.Sink
	running bool
	bufs    []nic.Buf
	// delivering: frames taken from bufs, not yet reported; Stop waits.
	delivering sync.WaitGroup
	out        chan [2][]byte
}

func (m *wireModel) Name() string                   { return "wire-model" }
func (m *wireModel) Capabilities() nic.Capabilities { return nic.Capabilities{Csum: true, TSO: true} }

func (m *wireModel) Start(cfg nic.Config, s nic.Sink) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg, m.sink, m.running = cfg, s, true
	return nil
}

func (m *wireModel) PostRx(b []nic.Buf) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running && m.flaw != "post-after-stop" {
		return 0
	}
	for _, x := range b { // the Segs slices are the model's to keep, not the array
		m.bufs = append(m.bufs, nic.Buf{ID: x.ID, Segs: slices.Clone(x.Segs)})
	}
	return len(b)
}

func (m *wireModel) Transmit(frames []nic.Buf) {
	ids := make([]uint16, 0, 2*len(frames))
	for _, f := range frames {
		var b []byte
		for _, s := range f.Segs {
			b = append(b, s...)
		}
		ids = append(ids, f.ID)
		if m.flaw == "twice-txdone" {
			ids = append(ids, f.ID)
		}
		if len(b) < m.cfg.HdrLen+14 {
			if m.flaw == "no-txdone-malformed" {
				ids = ids[:len(ids)-1]
			}
			continue
		}
		hdr := b[:m.cfg.HdrLen]
		if m.flaw == "strip-offload" {
			hdr = nil // the far end never learns the checksum is partial
		}
		select {
		case m.out <- [2][]byte{hdr, b[m.cfg.HdrLen:]}:
		default:
		}
	}
	m.sink.TxDone(ids)
}

// deliver is a frame arriving from the wire.
func (m *wireModel) deliver(frame []byte) {
	m.mu.Lock()
	if !m.running && m.flaw != "after-stop" {
		m.mu.Unlock()
		return
	}
	data := append(make([]byte, m.cfg.HdrLen), frame...)
	var used []nic.Used
	n := 0
	for n < len(m.bufs) && len(data) > 0 && (m.cfg.Mergeable || n == 0) {
		w := 0
		for _, s := range m.bufs[n].Segs {
			w += copy(s, data[w:])
		}
		w = min(w, len(data))
		data = data[w:]
		if m.flaw == "truncate" && len(data) == 0 {
			w--
		}
		used = append(used, nic.Used{ID: m.bufs[n].ID, Written: uint32(w)})
		n++
	}
	if len(data) > 0 || m.sink == nil {
		m.mu.Unlock()
		return // no room: dropped
	}
	m.bufs = m.bufs[n:]
	if m.flaw == "reorder" && len(used) > 1 {
		slices.Reverse(used)
	}
	var b nic.RxBatch
	b.Add(used...)
	sink := m.sink
	m.delivering.Add(1)
	m.mu.Unlock()
	sink.RxFrames(&b)
	m.delivering.Done()
}

func (m *wireModel) Stop() []nic.Buf {
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
	if m.flaw != "after-stop" {
		m.delivering.Wait() // a delivery in flight reports before Stop takes the rest
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bufs
	m.bufs = nil
	switch {
	case m.flaw == "after-stop":
		m.bufs = slices.Clone(b) // returned, and still written into
	case m.flaw == "lose-on-stop" && len(b) > 0:
		b = b[1:]
	case m.flaw == "stop-unordered":
		slices.Reverse(b)
	}
	return b
}

type chanWire struct{ m *wireModel }

func (w chanWire) Send(f []byte) error { w.m.deliver(f); return nil }
func (w chanWire) Recv(timeout time.Duration) (hdr, frame []byte, err error) {
	select {
	case f := <-w.m.out:
		return f[0], f[1], nil
	case <-time.After(timeout):
		return nil, nil, errors.New("no frame")
	}
}

func harness(flaw string) nictest.Harness {
	return nictest.Harness{New: func(t *testing.T, _ *guestmem.Memory) nictest.Link {
		m := &wireModel{flaw: flaw, out: make(chan [2][]byte, 4096)}
		return nictest.Link{Model: m, Wire: chanWire{m}}
	}}
}

func TestCorrectModelPasses(t *testing.T) {
	nictest.Run(t, harness(""))
}

// TestBrokenModel is run by TestKitCatchesBrokenModels in a child process,
// where it must fail.
func TestBrokenModel(t *testing.T) {
	flaw := os.Getenv("NICTEST_FLAW")
	if flaw == "" {
		t.Skip("run by TestKitCatchesBrokenModels")
	}
	nictest.Timeout = time.Second
	nictest.Run(t, harness(flaw))
}

// TestKitCatchesBrokenModels shows that each contract point can fail: a
// model with one flaw fails the kit with the matching complaint.
func TestKitCatchesBrokenModels(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary once per flaw")
	}
	for flaw, want := range map[string]string{
		"truncate":            "truncated or padded",
		"reorder":             "not in posting order",
		"lose-on-stop":        "neither reported nor returned by Stop (lost)",
		"stop-unordered":      "Stop returns buffers out of posting order",
		"after-stop":          "RxFrames after Stop returned",
		"no-txdone-malformed": "never reported done",
		"twice-txdone":        "not in flight (never sent, or reported twice)",
		"strip-offload":       "bad UDP checksum",
		"post-after-stop":     "PostRx after Stop took",
	} {
		t.Run(flaw, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenModel$", "-test.count=1")
			cmd.Env = append(os.Environ(), "NICTEST_FLAW="+flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a model with flaw %q:\n%s", flaw, out)
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("flaw %q: the kit failed without saying %q:\n%s", flaw, want, out)
			}
		})
	}
}
