package zerocopy

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

// Device-level benchmarks of the zero-copy model: wire to used ring
// (receive) and avail chain to wire (transmit), without KVM. The port is
// in-process and copies each received frame into the buffers it is given,
// as the kernel's readv does, so "copied-B/frame" counts only the VMM's
// own copies.

// benchSink re-posts completed buffers, like a guest refilling its ring.
type benchSink struct{ ids []uint16 }

func (s *benchSink) RxFrames(b *nic.RxBatch) {
	for i := range b.Len() {
		for _, x := range b.Frame(i) {
			s.ids = append(s.ids, x.ID)
		}
	}
}
func (s *benchSink) TxDone([]uint16) {}
func (s *benchSink) RxStarved()      {}

// loopPort hands out the same frame forever and discards what is sent,
// without allocating.
type loopPort struct{ frame []byte }

func (p *loopPort) ReadFrame(hdr []byte, bufs [][]byte, _ bool) (int, error) {
	clear(hdr)
	n := 0
	for _, b := range bufs {
		if n == len(p.frame) {
			break
		}
		n += copy(b, p.frame[n:])
	}
	return len(p.frame), nil
}
func (p *loopPort) Writev([][]byte) error { return nil }
func (p *loopPort) Interrupt()            {}

var benchSizes = []int{64, 1514, 9014}

// BenchmarkRx receives frames into mergeable 4 KiB buffers (Linux's size
// under load) and re-posts the completed ones every batch frames (or
// sooner, when the ring would run dry).
// copy: no guest addresses, so every buffer takes the bounce-and-copy lane.
func BenchmarkRx(b *testing.B) {
	for _, lane := range []string{"zerocopy", "copy"} {
		for _, size := range benchSizes {
			for _, batch := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/%dB/batch=%d", lane, size, batch), func(b *testing.B) {
					benchRx(b, lane == "zerocopy", size, batch)
				})
			}
		}
	}
}

func benchRx(b *testing.B, gpas bool, size, batch int) {
	mem := testRAM(b)
	port := &loopPort{frame: frame(size, 1)}
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: port, MTU: max(1500, size-14)})
	require.NoError(b, err)
	m.manual = true
	s := &benchSink{}
	require.NoError(b, m.Start(mrgCfg, s))
	defer m.Close()
	r := &rig{t: b, mem: mem}
	bufs := make([]nic.Buf, 128)
	for i := range bufs {
		bufs[i] = r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 4096)
		if !gpas {
			bufs[i].GPAs = nil
		}
	}
	require.Equal(b, len(bufs), m.PostRx(bufs))
	repost := make([]nic.Buf, 0, len(bufs))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	perFrame := (size+12)/1024 + 2 // 1 KiB NIC buffers, with slack
	for i := 0; i < b.N; i++ {
		m.rxOnce(m.stop, false)
		if (i+1)%batch != 0 && len(s.ids)+m.batch.Buffers()+2*perFrame < len(bufs) {
			continue // batch the report and refill, unless the ring would run dry
		}
		m.flushRx() // as the reader does when the port runs dry
		repost = repost[:0]
		for _, id := range s.ids {
			repost = append(repost, bufs[id])
		}
		s.ids = s.ids[:0]
		m.PostRx(repost)
	}
	m.flushRx()
	b.StopTimer()
	st := m.Stats()
	require.Equal(b, uint64(b.N), st.RxFrames)
	b.ReportMetric(float64(st.RxCopiedBytes)/float64(b.N), "copied-B/frame")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	m.Stop()
}

// BenchmarkTx transmits frames from two-segment guest chains (header, then
// data, as Linux posts them), batch frames per Transmit call. copy: no
// guest addresses, so the frame is copied into the bounce area.
func BenchmarkTx(b *testing.B) {
	for _, lane := range []string{"zerocopy", "copy"} {
		for _, size := range benchSizes {
			for _, batch := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/%dB/batch=%d", lane, size, batch), func(b *testing.B) {
					benchTx(b, lane == "zerocopy", size, batch)
				})
			}
		}
	}
}

func benchTx(b *testing.B, gpas bool, size, batch int) {
	mem := testRAM(b)
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: &loopPort{}})
	require.NoError(b, err)
	require.NoError(b, m.Start(mrgCfg, &benchSink{}))
	defer func() { m.Stop(); m.Close() }()
	r := &rig{t: b, mem: mem}
	frames := make([]nic.Buf, batch)
	for i := range frames {
		gpa := highRAM + uint64(i)*0x4000
		copy(r.at(gpa+12, size), frame(size, byte(i)))
		frames[i] = r.buf(uint16(i), gpa, 12, size)
		if !gpas {
			frames[i].GPAs = nil
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		m.Transmit(frames[:min(batch, b.N-i)])
	}
	b.StopTimer()
	st := m.Stats()
	require.Equal(b, uint64(b.N), st.TxFrames)
	b.ReportMetric(float64(st.TxCopiedBytes)/float64(b.N), "copied-B/frame")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
