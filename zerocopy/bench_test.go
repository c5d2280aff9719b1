package zerocopy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

// benchSink re-posts completed buffers, like a guest refilling its ring.
type benchSink struct{ ids []uint16 }

func (s *benchSink) RxFrame(u []nic.Used) {
	for _, x := range u {
		s.ids = append(s.ids, x.ID)
	}
}
func (s *benchSink) TxDone([]uint16) {}

// benchRx receives 1514-byte frames (1500 MTU) into 64 mergeable 1536-byte
// buffers, re-posting each as it completes. gpas=false withholds the guest
// addresses, which forces every buffer onto the bounce-and-copy lane.
func benchRx(b *testing.B, gpas bool) {
	mem := testRAM(b)
	port := NewMemPort(12)
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: port})
	require.NoError(b, err)
	m.manual = true
	s := &benchSink{}
	require.NoError(b, m.Start(mrgCfg, s))
	defer m.Close()
	r := &rig{t: b, mem: mem}
	bufs := make([]nic.Buf, 64)
	for i := range bufs {
		bufs[i] = r.buf(uint16(i), lowRAM+uint64(i)*0x1000, 1536)
		if !gpas {
			bufs[i].GPAs = nil
		}
	}
	require.Equal(b, len(bufs), m.PostRx(bufs))
	f := frame(1514, 1)
	repost := make([]nic.Buf, 0, 8)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		port.Inject(nil, f)
		m.rxOnce(m.stop, false)
		repost = repost[:0]
		for _, id := range s.ids {
			repost = append(repost, bufs[id])
		}
		s.ids = s.ids[:0]
		m.PostRx(repost)
	}
	b.StopTimer()
	st := m.Stats()
	require.Equal(b, uint64(b.N), st.RxFrames)
	b.ReportMetric(float64(st.RxCopiedBytes)/float64(b.N), "copied-B/frame")
	m.Stop()
}

func BenchmarkRxZeroCopy1500(b *testing.B) { benchRx(b, true) }
func BenchmarkRxCopy1500(b *testing.B)     { benchRx(b, false) }
