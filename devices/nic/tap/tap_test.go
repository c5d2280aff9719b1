package tap

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/internal/testnet"
)

type sink struct {
	mu     sync.Mutex
	frames [][]nic.Used
	txDone []uint16
}

func (s *sink) RxFrames(b *nic.RxBatch) {
	s.mu.Lock()
	for i := range b.Len() {
		s.frames = append(s.frames, append([]nic.Used(nil), b.Frame(i)...))
	}
	s.mu.Unlock()
}
func (s *sink) TxDone(ids []uint16) { s.mu.Lock(); s.txDone = append(s.txDone, ids...); s.mu.Unlock() }
func (s *sink) RxStarved()          {}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// The host side sends a frame into the tap; it must land, after the vnet
// header, in the posted guest buffers spread over several mergeable
// buffers in one read. A transmitted frame must come out on the interface.
func TestTapRoundTrip(t *testing.T) {
	testnet.InNewNetns(t, func() {
		tp, err := Open("gvt0")
		require.NoError(t, err)
		defer tp.Close()
		require.True(t, tp.Created())
		idx := testnet.LinkUp(t, "gvt0", nil).Index

		s := &sink{}
		require.NoError(t, tp.Start(nic.Config{HdrLen: 12, Mergeable: true}, s))
		// 1536 bytes of header+frame room are needed without GSO, so a
		// read spans three of these 600-byte buffers. The kernel may send
		// its own frames (IPv6 router solicitations) first: post plenty.
		bufs := make([][]byte, 30)
		var posts []nic.Buf
		for i := range bufs {
			bufs[i] = make([]byte, 600)
			posts = append(posts, nic.Buf{ID: uint16(i), Segs: [][]byte{bufs[i]}})
		}
		require.Equal(t, len(posts), tp.PostRx(posts))

		ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		require.NoError(t, err)
		defer unix.Close(ps)
		require.NoError(t, unix.Bind(ps, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}))

		frame := make([]byte, 900)
		copy(frame, []byte{0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x88, 0xB5}) // local experimental ethertype
		for i := 14; i < len(frame); i++ {
			frame[i] = byte(i)
		}
		require.NoError(t, unix.Sendto(ps, frame, 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}))

		// Find our frame among whatever arrived: its ethertype at offset
		// 12 of the frame, i.e. 24 of the first buffer.
		var u []nic.Used
		deadline := time.Now().Add(5 * time.Second)
		for u == nil && time.Now().Before(deadline) {
			s.mu.Lock()
			for _, f := range s.frames {
				if b := bufs[f[0].ID]; b[24] == 0x88 && b[25] == 0xB5 {
					u = f
				}
			}
			s.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
		require.NotNil(t, u, "frame never arrived")
		require.Len(t, u, 2, "12-byte header + 900-byte frame over two buffers")
		require.Equal(t, uint32(600), u[0].Written)
		require.Equal(t, uint32(312), u[1].Written)
		require.Equal(t, u[0].ID+1, u[1].ID, "buffers are used in posting order")
		got := append(bufs[u[0].ID][12:], bufs[u[1].ID][:312]...)
		require.Equal(t, frame, got)

		// Transmit: header (no offload) + frame, in two segments.
		out := append([]byte(nil), frame...)
		out[20] = 0x99
		tp.Transmit([]nic.Buf{{ID: 3, Segs: [][]byte{make([]byte, 12), out[:100], out[100:]}}})
		s.mu.Lock()
		require.Equal(t, []uint16{3}, s.txDone)
		s.mu.Unlock()
		rb := make([]byte, 2048)
		require.NoError(t, unix.SetsockoptTimeval(ps, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
		for {
			n, from, err := unix.Recvfrom(ps, rb, 0)
			require.NoError(t, err)
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue // our own injected frame
			}
			if bytes.Equal(rb[:n], out) {
				break
			}
		}
		left := tp.Stop()
		require.NotEmpty(t, left, "unused buffers come back")
		require.Equal(t, uint16(len(bufs)-1), left[len(left)-1].ID)
	})
}

func TestOpenRejectsBadNames(t *testing.T) {
	_, err := Open("")
	require.Error(t, err)
	_, err = Open("a-name-that-is-far-too-long")
	require.Error(t, err)
}

// An interface deleted while govmm holds it (ip link del) makes poll report
// POLLERR forever: the reader must stop, once, instead of spinning, and
// transmits must still complete (dropped).
func TestTapDeletedUnderUs(t *testing.T) {
	testnet.InNewNetns(t, func() {
		tp, err := Open("gvt1")
		require.NoError(t, err)
		defer tp.Close()
		testnet.LinkUp(t, "gvt1", nil)
		s := &sink{}
		require.NoError(t, tp.Start(nic.Config{HdrLen: 12, Mergeable: true}, s))
		var posts []nic.Buf
		for i := range 4 {
			posts = append(posts, nic.Buf{ID: uint16(i), Segs: [][]byte{make([]byte, 2048)}})
		}
		tp.PostRx(posts)
		testnet.DeleteLink(t, "gvt1")
		select {
		case <-tp.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the reader did not stop after the tap was deleted")
		}
		tp.Transmit([]nic.Buf{{ID: 7, Segs: [][]byte{make([]byte, 12), make([]byte, 60)}}})
		s.mu.Lock()
		require.Equal(t, []uint16{7}, s.txDone)
		s.mu.Unlock()
		// Every posted buffer comes back: in a frame the kernel sent before
		// the deletion (IPv6 router solicitations), or from Stop.
		s.mu.Lock()
		used := 0
		for _, f := range s.frames {
			used += len(f)
		}
		s.mu.Unlock()
		require.Equal(t, 4, used+len(tp.Stop()), "the posted buffers come back")
	})
}

// A device reset stops the model and the driver starts it again: the new
// reader must receive (a Stop that left its wake-up pending made the next
// reader exit at once, and receive died after a driver reload).
func TestTapRestartReceives(t *testing.T) {
	testnet.InNewNetns(t, func() {
		tp, err := Open("gvt2")
		require.NoError(t, err)
		defer tp.Close()
		idx := testnet.LinkUp(t, "gvt2", nil).Index
		ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		require.NoError(t, err)
		defer unix.Close(ps)
		frame := make([]byte, 100)
		copy(frame, []byte{0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x88, 0xB5})
		for round := range 3 {
			s := &sink{}
			require.NoError(t, tp.Start(nic.Config{HdrLen: 12, Mergeable: true}, s))
			var posts []nic.Buf
			for i := range 30 {
				posts = append(posts, nic.Buf{ID: uint16(i), Segs: [][]byte{make([]byte, 2048)}})
			}
			tp.PostRx(posts)
			require.NoError(t, unix.Sendto(ps, frame, 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}))
			waitRx := time.Now().Add(5 * time.Second)
			for {
				s.mu.Lock()
				n := len(s.frames)
				s.mu.Unlock()
				if n > 0 {
					break
				}
				require.True(t, time.Now().Before(waitRx), "round %d: nothing received after Start", round)
				time.Sleep(5 * time.Millisecond)
			}
			tp.Stop()
		}
	})
}
