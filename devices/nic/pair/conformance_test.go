package pair

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/nictest"
	"github.com/govmm/govmm/vmm/guestmem"
)

func TestConformance(t *testing.T) {
	nictest.Run(t, nictest.Harness{New: func(t *testing.T, _ *guestmem.Memory) nictest.Link {
		a, b := New()
		w := newPeerWire(b)
		return nictest.Link{Model: a, Wire: w, Close: func() { b.Stop() }}
	}})
}

// peerWire drives the far End of a pair as the kit's wire: a minimal
// driver with host buffers always lent.
type peerWire struct {
	end *End
	mu  sync.Mutex
	buf map[uint16][]byte
	rx  chan [2][]byte
}

const peerBuf = 2048

func newPeerWire(e *End) *peerWire {
	w := &peerWire{end: e, buf: map[uint16][]byte{}, rx: make(chan [2][]byte, 1024)}
	_ = e.Start(nic.Config{HdrLen: 12, Mergeable: true, GuestCsum: true, GuestTSO4: true, GuestTSO6: true, HostCsum: true, HostTSO4: true, HostTSO6: true}, w)
	var bufs []nic.Buf
	for id := range uint16(64) {
		b := make([]byte, peerBuf)
		w.buf[id] = b
		bufs = append(bufs, nic.Buf{ID: id, Segs: [][]byte{b}})
	}
	e.PostRx(bufs)
	return w
}

func (w *peerWire) RxFrames(b *nic.RxBatch) {
	for i := range b.Len() {
		var f []byte
		var again []nic.Buf
		w.mu.Lock()
		for _, u := range b.Frame(i) {
			f = append(f, w.buf[u.ID][:u.Written]...)
			again = append(again, nic.Buf{ID: u.ID, Segs: [][]byte{w.buf[u.ID]}})
		}
		w.mu.Unlock()
		select {
		case w.rx <- [2][]byte{f[:12], f[12:]}:
		default: // the kit is not reading: dropped, as on a wire
		}
		w.end.PostRx(again)
	}
}
func (w *peerWire) TxDone([]uint16) {}
func (w *peerWire) RxStarved()      {}

func (w *peerWire) Send(frame []byte) error {
	w.end.Transmit([]nic.Buf{{Segs: [][]byte{make([]byte, 12), frame}}})
	return nil
}

func (w *peerWire) Recv(timeout time.Duration) (hdr, frame []byte, err error) {
	select {
	case f := <-w.rx:
		return f[0], f[1], nil
	case <-time.After(timeout):
		return nil, nil, errors.New("no frame")
	}
}
