package nic_test

import (
	"fmt"
	"sync"

	"github.com/govmm/govmm/devices/nic"
)

// loopback is a complete NIC model in forty lines: every frame the guest
// transmits comes back to it as a received frame. It shows the whole
// contract: buffers are lent with PostRx, written in place, and completed
// through the Sink; transmit frames are views the model must be done with
// before TxDone.
type loopback struct {
	mu   sync.Mutex
	cfg  nic.Config
	sink nic.Sink
	bufs []nic.Buf
	rx   nic.RxBatch
}

func (l *loopback) Name() string                   { return "loopback" }
func (l *loopback) Capabilities() nic.Capabilities { return nic.Capabilities{Csum: true, TSO: true} }
func (l *loopback) Start(cfg nic.Config, s nic.Sink) error {
	l.cfg, l.sink = cfg, s
	return nil
}
func (l *loopback) PostRx(b []nic.Buf) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bufs = append(l.bufs, b...)
	return len(b)
}
func (l *loopback) Transmit(frames []nic.Buf) {
	var done []uint16
	l.rx.Reset()
	for _, f := range frames {
		l.mu.Lock()
		if len(l.bufs) > 0 {
			rx := l.bufs[0]
			l.bufs = l.bufs[1:]
			n := 0
			for _, src := range f.Segs { // one copy: guest tx buffer → guest rx buffer
				for len(src) > 0 && n < rx.Len() {
					k := copy(rx.Segs[0][n:], src)
					src, n = src[k:], n+k
				}
			}
			l.mu.Unlock()
			l.rx.Add(nic.Used{ID: rx.ID, Written: uint32(n)})
		} else {
			l.mu.Unlock() // no receive buffer: dropped, as on a wire
		}
		done = append(done, f.ID)
	}
	if l.rx.Len() > 0 {
		l.sink.RxFrames(&l.rx) // the whole burst at once: one interrupt decision
	}
	l.sink.TxDone(done)
}
func (l *loopback) Stop() []nic.Buf {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bufs
	l.bufs = nil
	return b
}

type printSink struct{ rx []byte }

func (p *printSink) RxFrames(b *nic.RxBatch) {
	for i := range b.Len() {
		u := b.Frame(i)
		fmt.Printf("rx buffer %d: %q\n", u[0].ID, p.rx[12:u[0].Written])
	}
}
func (p *printSink) TxDone(ids []uint16) { fmt.Println("tx done:", ids) }
func (p *printSink) RxStarved()          {}

func Example() {
	var m nic.Model = &loopback{}
	rxMem := make([]byte, 64) // stands in for a guest receive buffer
	s := &printSink{rx: rxMem}
	_ = m.Start(nic.Config{HdrLen: 12, Mergeable: true}, s)
	m.PostRx([]nic.Buf{{ID: 5, Segs: [][]byte{rxMem}}})
	hdr := make([]byte, 12)
	m.Transmit([]nic.Buf{{ID: 9, Segs: [][]byte{hdr, []byte("hello, wire")}}})
	// Output:
	// rx buffer 5: "hello, wire"
	// tx done: [9]
}
