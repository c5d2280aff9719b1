package gso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/nic/csum"
)

const wireMax = 1514

// tcpFrame builds an Ethernet/IP/TCP frame with payload bytes, its TCP
// checksum field seeded as Linux leaves it for a GSO frame (the value must
// not matter: segments are summed from scratch).
func tcpFrame(v6, vlan bool, payload []byte, flags byte) []byte {
	var f []byte
	f = append(f, 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2)
	if vlan {
		f = append(f, 0x81, 0x00, 0x00, 0x05)
	}
	if v6 {
		f = append(f, 0x86, 0xDD)
		ip := make([]byte, 40)
		ip[0] = 6 << 4
		ip[6], ip[7] = 6, 64
		for i := 8; i < 40; i++ {
			ip[i] = byte(i)
		}
		f = append(f, ip...)
	} else {
		f = append(f, 0x08, 0x00)
		ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
		f = append(f, ip...)
	}
	tcp := make([]byte, 32) // 12 bytes of options
	binary.BigEndian.PutUint16(tcp[0:], 5001)
	binary.BigEndian.PutUint16(tcp[2:], 40000)
	binary.BigEndian.PutUint32(tcp[4:], 0xFFFFF000) // wraps within the frame
	tcp[12] = 8 << 4
	tcp[13] = flags
	tcp[16], tcp[17] = 0xAB, 0xCD
	tcp[20], tcp[21], tcp[22] = 1, 1, 8 // NOP NOP timestamp
	f = append(f, tcp...)
	return append(f, payload...)
}

// split cuts f into pieces at random points, as a guest's scatter list is.
func split(f []byte, r *rand.Rand) [][]byte {
	var segs [][]byte
	for len(f) > 0 {
		n := min(len(f), 1+r.IntN(3000))
		segs = append(segs, f[:n])
		f = f[n:]
	}
	return segs
}

// checkSegment verifies one wire frame: IP header checksum and lengths,
// TCP checksum, as a receiving stack would. It returns the TCP sequence
// number, flags and payload.
func checkSegment(t *testing.T, s []byte, l3 int, v6 bool) (seq uint32, flags byte, payload []byte) {
	t.Helper()
	var l4 int
	var pseudo uint64
	if v6 {
		l4 = l3 + 40
		require.Equal(t, len(s)-l4, int(binary.BigEndian.Uint16(s[l3+4:])), "IPv6 payload length")
		pseudo = csum.Sum(s[l3+8:l3+40], 6+uint64(len(s)-l4))
	} else {
		l4 = l3 + 20
		require.Equal(t, len(s)-l3, int(binary.BigEndian.Uint16(s[l3+2:])), "IPv4 total length")
		require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(s[l3:l4], 0)), "IPv4 header checksum")
		pseudo = csum.Sum(s[l3+12:l3+20], 6+uint64(len(s)-l4))
	}
	require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(s[l4:], pseudo)), "TCP checksum")
	doff := int(s[l4+12]>>4) * 4
	return binary.BigEndian.Uint32(s[l4+4:]), s[l4+13], s[l4+doff:]
}

func TestSegmentsTCP(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name      string
		v6, vlan  bool
		payload   int
		mss       int
		wantSegs  int
		firstIPID uint16
	}{
		{name: "IPv4, 10000 bytes", payload: 10000, mss: 1448, wantSegs: 7},
		{name: "IPv4, 64 KiB", payload: 65535 - 20 - 32, mss: 1448, wantSegs: 46},
		{name: "IPv4 behind a VLAN tag", vlan: true, payload: 3000, mss: 1000, wantSegs: 3},
		{name: "IPv6, 10000 bytes", v6: true, payload: 10000, mss: 1428, wantSegs: 8},
		{name: "payload of exactly one MSS", payload: 1448, mss: 1448, wantSegs: 1},
		{name: "no payload", payload: 0, mss: 1448, wantSegs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.payload)
			for i := range payload {
				payload[i] = byte(r.Uint32())
			}
			typ := uint8(GSOTCPv4)
			if tc.v6 {
				typ = GSOTCPv6
			}
			f := tcpFrame(tc.v6, tc.vlan, payload, 0x18|0x01|0x80) // ACK PSH FIN CWR
			l3 := 14
			if tc.vlan {
				l3 = 18
			}
			h := Header{Flags: FlagNeedsCsum, GSOType: typ, HdrLen: 99, GSOSize: uint16(tc.mss), CsumStart: 1, CsumOffset: 2}
			p, err := Prepare(h, split(f, r), len(f), wireMax+4)
			require.NoError(t, err)
			require.Equal(t, tc.wantSegs, p.Segments())
			var joined []byte
			buf := make([]byte, wireMax+4)
			for i := range p.Segments() {
				n := p.Build(i, split(f, r), buf)
				require.Equal(t, p.Size(i), n)
				s := buf[:n]
				assert.Equal(t, f[:l3], s[:l3], "Ethernet header (and tag) copied")
				seq, flags, pl := checkSegment(t, s, l3, tc.v6)
				assert.Equal(t, uint32(0xFFFFF000)+uint32(len(joined)), seq, "segment %d sequence number", i)
				last, first := i == p.Segments()-1, i == 0
				assert.Equal(t, last, flags&0x01 != 0, "FIN on the last segment only")
				assert.Equal(t, last, flags&0x08 != 0, "PSH on the last segment only")
				assert.Equal(t, first, flags&0x80 != 0, "CWR on the first segment only")
				assert.NotZero(t, flags&0x10, "ACK on every segment")
				if !tc.v6 {
					assert.Equal(t, uint16(0x1234)+uint16(i), binary.BigEndian.Uint16(s[l3+4:]), "IPv4 ID")
				}
				assert.LessOrEqual(t, len(pl), tc.mss)
				joined = append(joined, pl...)
			}
			assert.True(t, bytes.Equal(payload, joined), "the segments carry the payload, in order")
		})
	}
}

func TestChecksumOnly(t *testing.T) {
	// A UDP/IPv4 frame whose checksum field holds the pseudo-header seed.
	udp := []byte{0x13, 0x89, 0x9c, 0x40, 0, 0, 0, 0}
	data := []byte("checksum me, an odd length.")
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(data)))
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(data)))
	binary.BigEndian.PutUint16(ip[10:], ^csum.Fold(csum.Sum(ip, 0)))
	seed := csum.Fold(csum.Sum(ip[12:20], 17+uint64(8+len(data))))
	binary.BigEndian.PutUint16(udp[6:], seed)
	f := append(append(append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0}, ip...), udp...), data...)

	h := Header{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: 6}
	p, err := Prepare(h, split(f, rand.New(rand.NewPCG(3, 4))), len(f), wireMax)
	require.NoError(t, err)
	require.Equal(t, 1, p.Segments())
	out := make([]byte, p.Size(0))
	p.Build(0, [][]byte{f[:20], f[20:]}, out)
	pseudo := csum.Sum(out[26:34], 17+uint64(8+len(data)))
	assert.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(out[34:], pseudo)), "UDP checksum complete")
	assert.Equal(t, f[:40], out[:40], "nothing else changed")
	assert.Equal(t, uint16(seed), binary.BigEndian.Uint16(f[40:]), "the guest's frame is not written")
}

func TestRefusesWhatDoesNotAddUp(t *testing.T) {
	v4 := tcpFrame(false, false, make([]byte, 3000), 0x10)
	small := v4[:200]
	v6 := tcpFrame(true, false, make([]byte, 3000), 0x10)
	frag := append([]byte(nil), v4...)
	frag[14+6] |= 0x20 // MF
	udp := append([]byte(nil), v4...)
	udp[14+9] = 17
	gso := func(typ uint8, mss uint16) Header { return Header{Flags: FlagNeedsCsum, GSOType: typ, GSOSize: mss} }
	for _, tc := range []struct {
		name  string
		h     Header
		frame []byte
		want  error
	}{
		{"checksum start past the end", Header{Flags: FlagNeedsCsum, CsumStart: 200}, small, ErrCsumRange},
		{"checksum field past the end", Header{Flags: FlagNeedsCsum, CsumStart: 10, CsumOffset: 189}, small, ErrCsumRange},
		{"GSO UDP (not offered)", gso(3, 1000), v4, ErrGSOType},
		{"GSO with ECN (not offered)", gso(GSOTCPv4|GSOECN, 1000), v4, ErrGSOType},
		{"TCPv4 type on an IPv6 frame", gso(GSOTCPv4, 1000), v6, ErrNotTCP},
		{"TCPv6 type on an IPv4 frame", gso(GSOTCPv6, 1000), v4, ErrNotTCP},
		{"GSO on UDP", gso(GSOTCPv4, 1000), udp, ErrNotTCP},
		{"GSO on a fragment", gso(GSOTCPv4, 1000), frag, ErrIPFragment},
		{"gso_size 0", gso(GSOTCPv4, 0), v4, ErrMSS},
		{"segments larger than the wire", gso(GSOTCPv4, 1500), v4, ErrMSS},
		{"headers cut short", gso(GSOTCPv4, 1000), v4[:40], ErrShort},
		{"a frame too long for the wire", Header{}, v4, ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Prepare(tc.h, [][]byte{tc.frame}, len(tc.frame), wireMax)
			assert.True(t, errors.Is(err, tc.want), "got %v, want %v", err, tc.want)
		})
	}
}

// FuzzPrepareBuild feeds Prepare and Build arbitrary headers and frames:
// they must never panic, and every wire frame fits the wire.
func FuzzPrepareBuild(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0xa8, 5, 0, 0, 0, 0}, tcpFrame(false, false, make([]byte, 4000), 0x19), uint16(7))
	f.Add([]byte{1, 4, 0, 0, 0x94, 5, 0, 0, 0, 0}, tcpFrame(true, true, make([]byte, 2000), 0x10), uint16(100))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 34, 0, 6, 0}, tcpFrame(false, false, nil, 0), uint16(0))
	f.Fuzz(func(t *testing.T, hdr, frame []byte, cut uint16) {
		var hb [HeaderBytes]byte
		copy(hb[:], hdr)
		segs := [][]byte{frame}
		if c := int(cut); c < len(frame) {
			segs = [][]byte{frame[:c], frame[c:]}
		}
		p, err := Prepare(ParseHeader(hb), segs, len(frame), wireMax)
		if err != nil {
			return
		}
		buf := make([]byte, wireMax)
		for i := range p.Segments() {
			if p.Size(i) > wireMax || p.Size(i) < 0 {
				t.Fatalf("segment %d of %d bytes", i, p.Size(i))
			}
			p.Build(i, segs, buf)
		}
	})
}
