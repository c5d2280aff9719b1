package zerocopy

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic"
)

var offCfg = nic.Config{HdrLen: 12, Mergeable: true, GuestCsum: true, GuestTSO4: true, GuestTSO6: true,
	HostCsum: true, HostTSO4: true, HostTSO6: true}

// tcpFrame builds an Ethernet/IPv4 (or IPv6)/TCP frame with plen payload
// bytes whose TCP checksum field holds what a Linux stack leaves for a
// partial checksum: the pseudo-header sum, L4 length included.
func tcpFrame(v6 bool, plen int) []byte {
	ipl := 20
	if v6 {
		ipl = 40
	}
	f := make([]byte, 14+ipl+20+plen)
	copy(f, guestMAC[:])
	copy(f[6:], []byte{0x02, 0, 0, 0, 0, 1})
	ip := f[14:]
	l4len := 20 + plen
	var ps uint64
	if v6 {
		binary.BigEndian.PutUint16(f[12:], 0x86DD)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
		ip[6], ip[7] = 6, 64
		ip[8], ip[39] = 0xFD, 2
		ps = csum.Sum(ip[8:40], 0)
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len))
		ip[8], ip[9] = 64, 6
		copy(ip[12:], []byte{10, 77, 0, 2, 10, 77, 0, 1})
		binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Sum(ip[:20], 0)))
		ps = csum.Sum(ip[12:20], 0)
	}
	tcp := ip[ipl:]
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = 5 << 4
	tcp[13] = 0x18 // PSH|ACK
	binary.BigEndian.PutUint16(tcp[16:], csum.Fold(ps+6+uint64(l4len)))
	for i := range plen {
		tcp[20+i] = byte(i * 13)
	}
	return f
}

func vnet(flags, gso uint8, gsoSize, start, off uint16) []byte {
	b := make([]byte, 12)
	b[0], b[1] = flags, gso
	binary.LittleEndian.PutUint16(b[4:], gsoSize)
	binary.LittleEndian.PutUint16(b[6:], start)
	binary.LittleEndian.PutUint16(b[8:], off)
	return b
}

// A guest TSO frame leaves as one GSO frame on the port: payload straight
// from guest memory, every byte as the guest wrote it (the TCP seed goes
// through the 82599's representation and back unchanged), and the vnet
// header the guest asked for.
func TestTxTSOZeroCopy(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		spy := &txSpy{MemPort: NewMemPort(12)}
		mem := testRAM(t)
		m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: spy})
		require.NoError(t, err)
		s := newSink()
		require.NoError(t, m.Start(offCfg, s))
		r := &rig{t: t, mem: mem, m: m}

		f := tcpFrame(v6, 40000)
		l4 := 34
		gso := uint8(vnetGSOTCPv4)
		if v6 {
			l4, gso = 54, vnetGSOTCPv6
		}
		gpa := uint64(highRAM + 0x8000)
		copy(r.at(gpa, 12), vnet(vnetNeedsCsum, gso, 1448, uint16(l4), 16))
		copy(r.at(gpa+12, 200), f[:200])
		copy(r.at(gpa+0x1000, len(f)-200), f[200:])
		b := r.buf(3, gpa, 12+200)
		b2 := r.buf(0, gpa+0x1000, len(f)-200)
		b.Segs, b.GPAs = append(b.Segs, b2.Segs...), append(b.GPAs, b2.GPAs...)
		m.Transmit([]nic.Buf{b})

		require.Equal(t, [][]byte{f}, spy.Sent(), "the guest's bytes, unchanged")
		h := parseVnetHdr(spy.segs[0])
		require.Equal(t, vnetHdr{flags: vnetNeedsCsum, gsoType: gso, gsoSize: 1448, csumStart: uint16(l4), csumOffset: 16}, h)
		require.Equal(t, uint16(l4+20), binary.LittleEndian.Uint16(spy.segs[0][2:]), "hdr_len for the tap")
		fromGuest := false
		for _, sg := range spy.segs {
			fromGuest = fromGuest || sameMem(sg, r.at(gpa+0x1000, 1))
		}
		require.True(t, fromGuest, "payload written from guest memory")
		st := m.Stats()
		require.Equal(t, uint64(1), st.TxZeroCopyFrames)
		require.Zero(t, st.TxCopiedBytes)
		require.Zero(t, st.TxDropped)
		require.Equal(t, uint64((40000+1447)/1448), m.Device().Stats().TxFrames, "the 82599 counts the segments")
		m.Stop()
		m.Close()
	}
}

// A partial checksum the 82599 cannot place (not TCP/UDP over IP) is
// completed in the bounce copy; a malformed request is dropped and counted.
func TestTxChecksumSoftAndMalformed(t *testing.T) {
	spy := &txSpy{MemPort: NewMemPort(12)}
	mem := testRAM(t)
	m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: spy})
	require.NoError(t, err)
	require.NoError(t, m.Start(offCfg, newSink()))
	defer func() { m.Stop(); m.Close() }()
	r := &rig{t: t, mem: mem, m: m}
	gpa := uint64(highRAM + 0x8000)
	f := frame(200, 3) // EtherType 0x88B5: no IP
	copy(r.at(gpa, 12), vnet(vnetNeedsCsum, 0, 0, 20, 4))
	copy(r.at(gpa+12, len(f)), f)
	m.Transmit([]nic.Buf{r.buf(1, gpa, 12+len(f))})
	sent := spy.Sent()
	require.Len(t, sent, 1)
	// The seed the guest left in the field stands for the pseudo-header.
	seed := uint64(binary.BigEndian.Uint16(f[24:]))
	require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(sent[0][20:], seed)), "checksum completed")
	require.Equal(t, uint64(len(f)), m.Stats().TxCopiedBytes)

	for _, h := range [][]byte{
		vnet(0, vnetGSOTCPv4, 1448, 0, 0),               // GSO without a partial checksum
		vnet(vnetNeedsCsum, 0, 0, 190, 16),              // checksum field past the end
		vnet(vnetNeedsCsum, vnetGSOTCPv4, 0, 34, 16),    // MSS 0
		vnet(vnetNeedsCsum, 3, 1448, 34, 6),             // UDP fragmentation: not offered
		vnet(vnetNeedsCsum, vnetGSOTCPv4, 1448, 20, 4),  // GSO of a non-IP frame
		vnet(vnetNeedsCsum, vnetGSOTCPv6, 1448, 34, 16), // TCPv6 GSO of an IPv4 frame
	} {
		g := tcpFrame(false, 150)
		copy(r.at(gpa, 12), h)
		copy(r.at(gpa+12, len(g)), g)
		m.Transmit([]nic.Buf{r.buf(1, gpa, 12+len(g))})
	}
	require.Equal(t, uint64(6), m.Stats().TxDropped)
	require.Len(t, spy.Sent(), 1)
}

// Received frames keep the tap's offload metadata when the guest
// negotiated it: a partial-checksum GSO frame reaches the guest as such.
func TestRxOffloadHeaderPassesThrough(t *testing.T) {
	r := newRig(t, offCfg, true, nil)
	var bufs []nic.Buf
	for i := range 80 {
		bufs = append(bufs, r.buf(uint16(i), lowRAM+0x4000+uint64(i)*0x1000, 4096))
	}
	require.Equal(t, 80, r.m.PostRx(bufs))
	f := tcpFrame(false, 30000)
	h := vnet(vnetNeedsCsum, vnetGSOTCPv4, 1448, 34, 16)
	binary.LittleEndian.PutUint16(h[2:], 54)
	r.port.Inject(h, f)
	r.step()
	used := r.sink.rx()
	require.Len(t, used, 1)
	// 1 KiB NIC buffers, as many as fit in each 4 KiB guest buffer: three
	// behind the header in the first, four in every other.
	want := []nic.Used{{ID: 0, Written: 12 + 3072}}
	for i := 1; i < 7; i++ {
		want = append(want, nic.Used{ID: uint16(i), Written: 4096})
	}
	want = append(want, nic.Used{ID: 7, Written: uint32(len(f) - 3072 - 6*4096)})
	require.Equal(t, want, used[0])
	hdr := r.at(lowRAM+0x4000, 12)
	require.Equal(t, h[:10], hdr[:10])
	require.Equal(t, uint16(8), numBuffers(hdr))
	require.Equal(t, f[:3072], r.at(lowRAM+0x4000+12, 3072))
	require.Equal(t, f[3072:3072+4096], r.at(lowRAM+0x5000, 4096))
	require.Zero(t, r.m.Stats().RxCopiedBytes)
}

// planTx is the only reader of guest offload requests: table of the
// layouts Linux produces and hostile ones.
func TestPlanTx(t *testing.T) {
	f4, f6 := tcpFrame(false, 3000), tcpFrame(true, 3000)
	at := func(f []byte) func(int) (byte, bool) {
		return func(o int) (byte, bool) {
			if o < 0 || o >= len(f) {
				return 0, false
			}
			return f[o], true
		}
	}
	cases := []struct {
		name string
		h    vnetHdr
		f    []byte
		want txPlan
		err  bool
	}{
		{"none", vnetHdr{}, f4, txPlan{}, false},
		{"tcp4 csum", vnetHdr{flags: 1, csumStart: 34, csumOffset: 16}, f4,
			txPlan{ctx: true, maclen: 14, iplen: 20, tucmd: tucmdIPv4 | tucmdL4TTCP, csumStart: 34, csumOffset: 16}, false},
		{"udp6 csum", vnetHdr{flags: 1, csumStart: 54, csumOffset: 6}, f6,
			txPlan{ctx: true, maclen: 14, iplen: 40, csumStart: 54, csumOffset: 6}, false},
		{"tso4", vnetHdr{flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16}, f4,
			txPlan{ctx: true, maclen: 14, iplen: 20, l4len: 20, tucmd: tucmdIPv4 | tucmdL4TTCP, mss: 1448, tso: true, csumStart: 34, csumOffset: 16}, false},
		{"tso6", vnetHdr{flags: 1, gsoType: 4, gsoSize: 1440, csumStart: 54, csumOffset: 16}, f6,
			txPlan{ctx: true, maclen: 14, iplen: 40, l4len: 20, tucmd: tucmdL4TTCP, mss: 1440, tso: true, csumStart: 54, csumOffset: 16}, false},
		{"odd offset: software", vnetHdr{flags: 1, csumStart: 34, csumOffset: 10}, f4,
			txPlan{soft: true, maclen: 14, iplen: 20, csumStart: 34, csumOffset: 10}, false},
		{"start inside MAC header", vnetHdr{flags: 1, csumStart: 4, csumOffset: 16}, f4,
			txPlan{soft: true, maclen: 14, iplen: -10, csumStart: 4, csumOffset: 16}, false},
		{"start past end", vnetHdr{flags: 1, csumStart: 0xFFFF, csumOffset: 0xFFFF}, f4, txPlan{}, true},
		{"gso no csum", vnetHdr{gsoType: 1, gsoSize: 1448}, f4, txPlan{}, true},
		{"gso mss 0", vnetHdr{flags: 1, gsoType: 1, csumStart: 34, csumOffset: 16}, f4, txPlan{}, true},
		{"gso udp offset", vnetHdr{flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 6}, f4, txPlan{}, true},
		{"gso ufo", vnetHdr{flags: 1, gsoType: 3, gsoSize: 1448, csumStart: 34, csumOffset: 6}, f4, txPlan{}, true},
		{"gso v6 on v4", vnetHdr{flags: 1, gsoType: 4, gsoSize: 1448, csumStart: 34, csumOffset: 16}, f4, txPlan{}, true},
		{"short frame", vnetHdr{flags: 1, csumStart: 0, csumOffset: 0}, f4[:10], txPlan{}, true},
	}
	for _, c := range cases {
		p, err := planTx(c.h, at(c.f), len(c.f))
		if c.err {
			require.Error(t, err, c.name)
			continue
		}
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, p, c.name)
	}
	// A TCP data offset below 5 words is refused.
	bad := tcpFrame(false, 100)
	bad[34+12] = 4 << 4
	_, err := planTx(vnetHdr{flags: 1, gsoType: 1, gsoSize: 1448, csumStart: 34, csumOffset: 16}, at(bad), len(bad))
	require.Error(t, err)
}

// FuzzPlanTx: any virtio_net_hdr against any frame is either refused or
// yields a plan the frame backs up.
func FuzzPlanTx(f *testing.F) {
	f.Add(vnet(vnetNeedsCsum, vnetGSOTCPv4, 1448, 34, 16), tcpFrame(false, 3000))
	f.Add(vnet(vnetNeedsCsum, vnetGSOTCPv6, 1440, 54, 16), tcpFrame(true, 3000))
	f.Add(vnet(vnetNeedsCsum, 0, 0, 34, 6), tcpFrame(false, 100))
	f.Add(vnet(0, 0, 0, 0, 0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, h, frame []byte) {
		if len(h) < 10 {
			return
		}
		at := func(o int) (byte, bool) {
			if o < 0 || o >= len(frame) {
				return 0, false
			}
			return frame[o], true
		}
		p, err := planTx(parseVnetHdr(h), at, len(frame))
		if err != nil {
			return
		}
		if p.ctx || p.soft {
			require.LessOrEqual(t, p.csumStart+p.csumOffset+2, len(frame))
		}
		if p.ctx {
			require.Equal(t, p.csumStart, p.maclen+p.iplen)
			require.True(t, p.maclen == 14 || p.maclen == 18)
			require.True(t, p.iplen >= 20 && p.iplen <= 511)
		}
		if p.tso {
			require.True(t, p.ctx)
			require.Positive(t, p.mss)
			require.True(t, p.l4len >= 20 && p.l4len <= 60)
			require.LessOrEqual(t, p.hdrLen(), len(frame))
		}
	})
}
