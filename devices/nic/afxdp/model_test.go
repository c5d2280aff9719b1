package afxdp

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp/xsk"
	"github.com/govmm/govmm/devices/nic/gso"
	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/internal/testnet"
	"github.com/govmm/govmm/vmm/guestmem"
)

// vethPair creates v0 (the model's side) and v1 (the far end) in ns.
func vethPair(t *testing.T, ns *testnet.Netns, v0, v1 string) {
	t.Helper()
	var out []byte
	var err error
	ns.Do(func() {
		// No IPv6 on the pair: its neighbour discovery would take the
		// buffers the tests lend for their own frames.
		for _, k := range []string{"all", "default"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0)
		}
		for _, args := range [][]string{
			{"link", "add", v0, "type", "veth", "peer", "name", v1},
			{"link", "set", v0, "up"},
			{"link", "set", v1, "up"},
		} {
			if out, err = exec.Command("ip", args...).CombinedOutput(); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Skipf("veth pair: %v: %s", err, out)
	}
}

// newOnVeth opens the model on v0 with mem, in ns.
func newOnVeth(t *testing.T, ns *testnet.Netns, mem *guestmem.Memory, mode xsk.Mode) *Model {
	t.Helper()
	var m *Model
	var err error
	ns.Do(func() { m, err = New(Config{Ifname: "xv0", Mode: mode, Mem: mem}) })
	if err != nil {
		t.Skipf("AF_XDP unavailable here: %v", err)
	}
	return m
}

// TestConformance runs the model through the NIC-model kit on a veth pair
// in a private namespace: the kernel is the far end (a packet socket on
// the peer).
func TestConformance(t *testing.T) {
	ns := testnet.NewNetns(t)
	nictest.Run(t, nictest.Harness{Scratch: ScratchBytes, New: func(t *testing.T, mem *guestmem.Memory) nictest.Link {
		ns.Do(func() { _ = exec.Command("ip", "link", "del", "xv0").Run() })
		vethPair(t, ns, "xv0", "xv1")
		m := newOnVeth(t, ns, mem, xsk.ModeAuto)
		var wire *nictest.PacketWire
		var err error
		ns.Do(func() { wire, err = nictest.NewPacketWire("xv1") })
		require.NoError(t, err)
		return nictest.Link{Model: m, Wire: wire, Close: func() { wire.Close(); m.Close() }}
	}})
}

// sink records completions.
type sink struct {
	mu     sync.Mutex
	frames [][]nic.Used
	txDone []uint16
}

func (s *sink) RxFrames(b *nic.RxBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < b.Len(); i++ {
		s.frames = append(s.frames, append([]nic.Used(nil), b.Frame(i)...))
	}
}
func (s *sink) TxDone(ids []uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txDone = append(s.txDone, ids...)
}
func (s *sink) RxStarved() {}

func (s *sink) wait(t *testing.T, rx, tx int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.frames) >= rx && len(s.txDone) >= tx
	}, 5*time.Second, time.Millisecond, "rx %d tx %d", rx, tx)
}

// testFrame is a broadcast IPv4/UDP-looking frame of n bytes with a
// recognisable payload.
func testFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5}) // local experimental ethertype
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// TestReceiveInPlace: a frame from the wire lands in the guest buffer
// itself, right after the virtio_net_hdr, and the guest memory in front of
// the buffer (the UMEM headroom the kernel leaves) is not written. A
// buffer the kernel cannot take (two segments) gets the frame through the
// copy lane, counted.
func TestReceiveInPlace(t *testing.T) {
	ns := testnet.NewNetns(t)
	vethPair(t, ns, "xv0", "xv1")
	mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: 0, Size: 1 << 20}}, ScratchBytes)
	require.NoError(t, err)
	defer mem.Close()
	ram := mem.Regions()[0].Host
	for i := range ram {
		ram[i] = 0xA5
	}
	m := newOnVeth(t, ns, mem, xsk.ModeCopy)
	defer m.Close()
	s := &sink{}
	require.NoError(t, m.Start(nic.Config{HdrLen: 12, Mergeable: true}, s))
	// Buffer 1: one 1536-byte segment at an odd place (Linux's mergeable
	// buffer). Buffer 2: two 768-byte segments far apart.
	const gpa1 = 0x10000 + 100
	b1 := nic.Buf{ID: 1, Segs: [][]byte{ram[gpa1 : gpa1+1536]}, GPAs: []uint64{gpa1}}
	b2 := nic.Buf{ID: 2, Segs: [][]byte{ram[0x40000 : 0x40000+768], ram[0x50000 : 0x50000+768]}, GPAs: []uint64{0x40000, 0x50000}}
	require.Equal(t, 2, m.PostRx([]nic.Buf{b1, b2}))

	var pw *nictest.PacketWire
	ns.Do(func() { pw, err = nictest.NewPacketWire("xv1") })
	require.NoError(t, err)
	defer pw.Close()
	f1, f2 := testFrame(1200, 1), testFrame(1000, 2)
	require.NoError(t, pw.Send(f1))
	s.wait(t, 1, 0)
	require.NoError(t, pw.Send(f2))
	s.wait(t, 2, 0)

	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, []nic.Used{{ID: 1, Written: 12 + 1200}}, s.frames[0])
	assert.Equal(t, make([]byte, 12), ram[gpa1:gpa1+12], "the header is written")
	assert.Equal(t, f1, ram[gpa1+12:gpa1+12+1200], "the frame landed in place")
	// (Counted, not compared: a failure must not print a megabyte.)
	assert.Equal(t, gpa1, bytes.Count(ram[:gpa1], []byte{0xA5}), "no byte in front of the buffer was written")
	assert.Equal(t, 1536-12-1200, bytes.Count(ram[gpa1+12+1200:gpa1+1536], []byte{0xA5}), "nor after the frame")
	require.Equal(t, []nic.Used{{ID: 2, Written: 12 + 1000}}, s.frames[1])
	got := append(append([]byte(nil), ram[0x40000+12:0x40000+768]...), ram[0x50000:0x50000+1000-756]...)
	assert.Equal(t, f2, got, "the copy lane scatters the frame over the segments")
	assert.Equal(t, uint64(1), m.Stats.RxZeroCopyFrames.Load())
	assert.Equal(t, uint64(1), m.Stats.RxCopiedFrames.Load())
	assert.Equal(t, map[string]uint64{"segmented": 1}, m.FallbackReasons())
	assert.Empty(t, m.Stop(), "both buffers came back with frames")
}

// TestTransmitInPlace: a frame after its header in one segment leaves from
// guest memory as is; one spread over segments is gathered first; both
// arrive whole and complete.
func TestTransmitInPlace(t *testing.T) {
	ns := testnet.NewNetns(t)
	vethPair(t, ns, "xv0", "xv1")
	mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: 0, Size: 1 << 20}}, ScratchBytes)
	require.NoError(t, err)
	defer mem.Close()
	ram := mem.Regions()[0].Host
	m := newOnVeth(t, ns, mem, xsk.ModeCopy)
	defer m.Close()
	s := &sink{}
	require.NoError(t, m.Start(nic.Config{HdrLen: 12, Mergeable: true}, s))
	var pw *nictest.PacketWire
	ns.Do(func() { pw, err = nictest.NewPacketWire("xv1") })
	require.NoError(t, err)
	defer pw.Close()

	f1, f2 := testFrame(900, 3), testFrame(1400, 4)
	const a = 0x20000 + 7
	copy(ram[a+12:], f1)
	clear(ram[a : a+12])
	copy(ram[0x30000:], make([]byte, 12))
	copy(ram[0x30000+12:], f2[:100])
	copy(ram[0x38000:], f2[100:])
	m.Transmit([]nic.Buf{
		{ID: 7, Segs: [][]byte{ram[a : a+12+900]}, GPAs: []uint64{a}},
		{ID: 8, Segs: [][]byte{ram[0x30000 : 0x30000+112], ram[0x38000 : 0x38000+1300]}, GPAs: []uint64{0x30000, 0x38000}},
	})
	for _, want := range [][]byte{f1, f2} {
		var got []byte
		for {
			_, fr, err := pw.Recv(5 * time.Second)
			require.NoError(t, err)
			if binary.BigEndian.Uint16(fr[12:]) == 0x88b5 {
				got = fr
				break
			}
		}
		assert.Equal(t, want, got)
	}
	s.wait(t, 0, 2)
	assert.ElementsMatch(t, []uint16{7, 8}, s.txDone)
	assert.Equal(t, uint64(1), m.Stats.TxZeroCopyFrames.Load())
	assert.Equal(t, uint64(1), m.Stats.TxCopiedFrames.Load())
}

// TestTransmitOffloads: a TCP GSO frame leaves as MTU-sized segments and
// completes once, after its last segment; an offload the guest did not
// negotiate is refused (the frame dropped and completed), and the model
// goes on sending.
func TestTransmitOffloads(t *testing.T) {
	ns := testnet.NewNetns(t)
	vethPair(t, ns, "xv0", "xv1")
	mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: 0, Size: 1 << 20}}, ScratchBytes)
	require.NoError(t, err)
	defer mem.Close()
	ram := mem.Regions()[0].Host
	m := newOnVeth(t, ns, mem, xsk.ModeCopy)
	defer m.Close()
	s := &sink{}
	require.NoError(t, m.Start(nic.Config{HdrLen: 12, Mergeable: true, HostCsum: true, HostTSO4: true}, s))
	var pw *nictest.PacketWire
	ns.Do(func() { pw, err = nictest.NewPacketWire("xv1") })
	require.NoError(t, err)
	defer pw.Close()

	// A TCP/IPv4 frame with 10,000 payload bytes, MSS 1448: 7 segments.
	f := make([]byte, 14+20+20+10000)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1})
	f[14+20+12], f[14+20+13] = 5<<4, 0x18
	for i := 54; i < len(f); i++ {
		f[i] = byte(i * 7)
	}
	hdr := func(typ uint8) []byte {
		h := make([]byte, 12)
		h[0], h[1] = gso.FlagNeedsCsum, typ
		binary.LittleEndian.PutUint16(h[4:], 1448)
		binary.LittleEndian.PutUint16(h[6:], 34)
		binary.LittleEndian.PutUint16(h[8:], 16)
		return h
	}
	copy(ram[0x10000:], hdr(gso.GSOTCPv4))
	copy(ram[0x10000+12:], f)
	copy(ram[0x30000:], hdr(gso.GSOTCPv6)) // not negotiated
	copy(ram[0x30000+12:], f)
	m.Transmit([]nic.Buf{
		{ID: 3, Segs: [][]byte{ram[0x10000 : 0x10000+12+4000], ram[0x10000+12+4000 : 0x10000+12+len(f)]}},
		{ID: 4, Segs: [][]byte{ram[0x30000 : 0x30000+12+len(f)]}},
	})
	var payload []byte
	for len(payload) < 10000 {
		_, fr, err := pw.Recv(5 * time.Second)
		require.NoError(t, err)
		if len(fr) < 54 || fr[23] != 6 {
			continue
		}
		assert.LessOrEqual(t, len(fr), 1514)
		payload = append(payload, fr[54:]...)
	}
	assert.Equal(t, f[54:], payload, "the segments carry the payload")
	s.wait(t, 0, 2)
	assert.ElementsMatch(t, []uint16{3, 4}, s.txDone, "each frame completes once")
	assert.Equal(t, uint64(1), m.Stats.TxOffloaded.Load())
	assert.Equal(t, uint64(7), m.Stats.TxSegments.Load())
	assert.Equal(t, uint64(1), m.Stats.TxDropped.Load(), "the TCPv6 request was not negotiated")
	m.txMu.Lock()
	assert.Empty(t, m.txParts, "no segment left in flight")
	assert.Len(t, m.txFree, txBounceChunks, "every bounce chunk is back")
	m.txMu.Unlock()
}

// TestNewErrors: a missing interface and an MTU no chunk holds fail with
// one clear error.
func TestNewErrors(t *testing.T) {
	mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: 0, Size: 1 << 20}}, ScratchBytes)
	require.NoError(t, err)
	defer mem.Close()
	_, err = New(Config{Ifname: "no-such-if0", Mem: mem})
	assert.ErrorContains(t, err, "no-such-if0")
	_, err = New(Config{Ifname: "lo", Mem: mem, MTU: 9000})
	assert.ErrorContains(t, err, "MTU 9000")
	small, err := guestmem.New([]guestmem.Layout{{GPA: 0, Size: 1 << 20}})
	require.NoError(t, err)
	defer small.Close()
	_, err = New(Config{Ifname: "lo", Mem: small})
	assert.ErrorContains(t, err, "scratch")
	_, err = ParseMode("fast")
	assert.Error(t, err)
}

// TestMemlockLimit: without CAP_IPC_LOCK, a RLIMIT_MEMLOCK under the UMEM
// is one clear line, before anything is attached.
func TestMemlockLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a child without CAP_IPC_LOCK")
	}
	// capsh is not everywhere; setpriv (util-linux) drops the capability.
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	if os.Getenv("AFXDP_MEMLOCK_CHILD") == "1" {
		mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: 0, Size: 64 << 20}}, ScratchBytes)
		require.NoError(t, err)
		_, err = New(Config{Ifname: "lo", Mem: mem})
		require.Error(t, err)
		require.Contains(t, err.Error(), "RLIMIT_MEMLOCK is 64 KiB")
		return
	}
	cmd := exec.Command(setpriv, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--",
		"prlimit", "--memlock=65536", "--", os.Args[0], "-test.run=^TestMemlockLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "AFXDP_MEMLOCK_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("setpriv:")) {
		t.Skipf("setpriv cannot drop the capability here: %s", out)
	}
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestMemlockLimit")
}
