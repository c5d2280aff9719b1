package ixgbeemu

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// msKey is the key of Microsoft's RSS verification suite ("Verifying the
// RSS Hash Calculation"), whose expected hashes the tests below use.
var msKey = [40]byte{
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
	0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
	0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
}

type rssVector struct {
	src, dst        string
	sport, dport    uint16
	tcpHash, ipHash uint32
}

var rssVectors = []rssVector{
	{"66.9.149.187", "161.142.100.80", 2794, 1766, 0x51ccc178, 0x323e8fc2},
	{"199.92.111.2", "65.69.140.83", 14230, 4739, 0xc626b0ea, 0xd718262a},
	{"24.19.198.95", "12.22.207.184", 12898, 38024, 0x5c2b394a, 0xd2d0a5de},
	{"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x40207d3d, 0x2cc18cd5},
}

func TestToeplitzMicrosoftVectors(t *testing.T) {
	for _, v := range rssVectors {
		src, dst := netip.MustParseAddr(v.src).AsSlice(), netip.MustParseAddr(v.dst).AsSlice()
		ip := append(append([]byte{}, src...), dst...)
		ports := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, v.sport), v.dport)
		assert.Equal(t, v.ipHash, toeplitz(&msKey, ip), "%s → %s", v.src, v.dst)
		assert.Equal(t, v.tcpHash, toeplitz(&msKey, append(ip, ports...)), "%s:%d → %s:%d", v.src, v.sport, v.dst, v.dport)
	}
}

// flowFrame is a TCP frame of v's flow (checksums not fixed: RSS does not
// look at them).
func flowFrame(v rssVector) []byte {
	src, dst := netip.MustParseAddr(v.src), netip.MustParseAddr(v.dst)
	var f []byte
	l3 := 14
	if src.Is4() {
		f = tcp4Frame(bcastMAC, payloadBytes(64))
		copy(f[l3+12:], src.AsSlice())
		copy(f[l3+16:], dst.AsSlice())
		l3 += 20
	} else {
		f = tcp6Frame(bcastMAC, payloadBytes(64))
		copy(f[l3+8:], src.AsSlice())
		copy(f[l3+24:], dst.AsSlice())
		l3 += 40
	}
	binary.BigEndian.PutUint16(f[l3:], v.sport)
	binary.BigEndian.PutUint16(f[l3+2:], v.dport)
	return f
}

// setupRSS programs RSS as ixgbe_setup_mrqc does: the key, a redirection
// table spreading entries over queues round-robin, the hash fields, and
// RXCSUM.PCSD so the write-back carries the hash.
func (r *rig) setupRSS(queues int, fields uint32) {
	for i := 0; i < 10; i++ {
		r.wr(regRSSRK+4*uint32(i), binary.LittleEndian.Uint32(msKey[4*i:]))
	}
	for i := 0; i < retaEntries/4; i++ {
		var v uint32
		for j := 0; j < 4; j++ {
			v |= uint32((4*i+j)%queues) << (8 * j)
		}
		r.wr(regRETA+4*uint32(i), v)
	}
	r.wr(regRXCSUM, rxcsumPCSD)
	r.wr(regMRQC, mrqcRSS|fields)
}

// TestRSSSteersAndReports: with RSS on, a flow goes to the queue its hash
// picks from the redirection table, and the write-back carries the hash
// and its type; with RSS off everything goes to queue 0 with neither.
func TestRSSSteersAndReports(t *testing.T) {
	r := newRig(t)
	const queues = 4
	for q := 0; q < queues; q++ {
		r.setupRx(q, 16, 2, descTypeAdvOneBuf)
	}
	q, on := r.d.RxSteer(flowFrame(rssVectors[0]))
	assert.False(t, on)
	assert.Zero(t, q)

	r.setupRSS(1, mrqcTCPIPv4)
	assert.False(t, r.d.RSSSpreads(), "one queue: RSS on, every entry 0")
	r.setupRSS(queues, mrqcTCPIPv4|mrqcIPv4|mrqcTCPIPv6|mrqcIPv6)
	require.True(t, r.d.RSSSpreads())
	next := make([]int, queues)
	for _, v := range rssVectors {
		f := flowFrame(v)
		q, on := r.d.RxSteer(f)
		require.True(t, on)
		assert.Equal(t, int(v.tcpHash%retaEntries)%queues, q, "%s:%d → %s:%d", v.src, v.sport, v.dst, v.dport)
		require.NoError(t, r.d.Receive(q, f))
		lo, _ := r.rxDesc(q, next[q])
		next[q]++
		assert.Equal(t, v.tcpHash, uint32(lo>>32), "the hash in the write-back")
		wantType := uint64(rssTypeTCPIPv4)
		if netip.MustParseAddr(v.src).Is6() {
			wantType = rssTypeTCPIPv6
		}
		assert.Equal(t, wantType, lo&0xF, "the RSS type")
	}

	// Without the TCP fields, the addresses alone are hashed.
	r.setupRSS(queues, mrqcIPv4)
	v := rssVectors[1]
	q, _ = r.d.RxSteer(flowFrame(v))
	assert.Equal(t, int(v.ipHash%retaEntries)%queues, q)
	require.NoError(t, r.d.Receive(q, flowFrame(v)))
	lo, _ := r.rxDesc(q, next[q])
	assert.Equal(t, v.ipHash, uint32(lo>>32))
	assert.Equal(t, uint64(rssTypeIPv4), lo&0xF)

	// Non-IP frames and RSS-less fields: queue 0, no hash.
	arp := append(ethHdr(bcastMAC, [6]byte{2, 0, 0, 0, 0, 1}, 0x0806), make([]byte, 46)...)
	q, on = r.d.RxSteer(arp)
	assert.True(t, on)
	assert.Zero(t, q)
}

// TestRETAEntryBeyondQueues: a table entry naming a queue the device does
// not have steers to queue 0, never out of range.
func TestRETAEntryBeyondQueues(t *testing.T) {
	r := newRig(t)
	r.setupRSS(1, mrqcTCPIPv4)
	for i := 0; i < retaEntries/4; i++ {
		r.wr(regRETA+4*uint32(i), 0x0F0F0F0F)
	}
	q, on := r.d.RxSteer(flowFrame(rssVectors[0]))
	assert.True(t, on)
	assert.Less(t, q, r.d.Queues())
}

func FuzzRxSteer(f *testing.F) {
	for _, v := range rssVectors {
		f.Add(flowFrame(v), uint32(mrqcRSS|mrqcTCPIPv4|mrqcIPv4|mrqcTCPIPv6|mrqcIPv6|mrqcUDPIPv4|mrqcUDPIPv6), uint32(0x03020100))
	}
	r := newRig(f) // one device: every input rewrites what RxSteer reads
	f.Fuzz(func(t *testing.T, frame []byte, mrqc, reta uint32) {
		for i := 0; i < retaEntries/4; i++ {
			r.wr(regRETA+4*uint32(i), reta)
		}
		r.wr(regMRQC, mrqc)
		q, _ := r.d.RxSteer(frame)
		if q < 0 || q >= r.d.Queues() {
			t.Fatalf("queue %d of %d", q, r.d.Queues())
		}
	})
}
