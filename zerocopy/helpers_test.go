package zerocopy

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/vmm/guestmem"
)

var guestMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// sink records completions like virtio-net would.
type sink struct {
	mu      sync.Mutex
	frames  [][]nic.Used
	batches int // RxFrames calls
	txIDs   []uint16
	rxCh    chan struct{}
	// starved counts RxStarved calls.
	starved atomic.Int32
}

func newSink() *sink { return &sink{rxCh: make(chan struct{}, 4096)} }

func (s *sink) RxFrames(b *nic.RxBatch) {
	s.mu.Lock()
	s.batches++
	for i := range b.Len() {
		s.frames = append(s.frames, append([]nic.Used(nil), b.Frame(i)...))
	}
	s.mu.Unlock()
	for range b.Len() {
		s.rxCh <- struct{}{}
	}
}

func (s *sink) RxStarved() { s.starved.Add(1) }

func (s *sink) TxDone(ids []uint16) {
	s.mu.Lock()
	s.txIDs = append(s.txIDs, ids...)
	s.mu.Unlock()
}

func (s *sink) rx() [][]nic.Used {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]nic.Used(nil), s.frames...)
}

func (s *sink) waitRx(t testing.TB) {
	select {
	case <-s.rxCh:
	case <-time.After(5 * time.Second):
		t.Fatal("no RxFrame")
	}
}

type rig struct {
	t    testing.TB
	mem  *guestmem.Memory
	port *MemPort
	m    *Model
	sink *sink
}

var (
	mrgCfg   = nic.Config{HdrLen: 12, Mergeable: true}
	noMrgCfg = nic.Config{HdrLen: 12}
)

// newRig builds a model over testRAM and a MemPort. manual rigs have no
// reader goroutine: step() moves one frame.
func newRig(t testing.TB, ncfg nic.Config, manual bool, tweak func(*Config)) *rig {
	r := &rig{t: t, mem: testRAM(t), port: NewMemPort(ncfg.HdrLen), sink: newSink()}
	cfg := Config{MAC: guestMAC, Mem: r.mem, Port: r.port}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := NewModel(cfg)
	require.NoError(t, err)
	m.manual = manual
	require.NoError(t, m.Start(ncfg, r.sink))
	t.Cleanup(func() { m.Stop(); m.Close() })
	r.m = m
	return r
}

// step runs the receive path once without blocking.
func (r *rig) step() { r.m.rxBatch(r.m.stop, false, 1) }

// buf lends the contiguous segments of lens bytes starting at gpa.
func (r *rig) buf(id uint16, gpa uint64, lens ...int) nic.Buf {
	b := nic.Buf{ID: id}
	for _, l := range lens {
		s, err := r.mem.Slice(gpa, uint64(l))
		require.NoError(r.t, err)
		b.Segs = append(b.Segs, s)
		b.GPAs = append(b.GPAs, gpa)
		gpa += uint64(l)
	}
	return b
}

func (r *rig) at(gpa uint64, n int) []byte {
	s, err := r.mem.Slice(gpa, uint64(n))
	require.NoError(r.t, err)
	return s
}

// frame returns an n-byte Ethernet frame to the guest with a pattern payload.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, guestMAC[:])
	copy(f[6:], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], 0x88B5) // local experimental EtherType: not parsed
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i*7)
	}
	return f
}

func numBuffers(hdr []byte) uint16 { return binary.LittleEndian.Uint16(hdr[hdrNumBufs:]) }
