package ixgbeemu

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func wbLen(hi uint64) int       { return int(hi >> 32 & 0xFFFF) }
func wbStatus(hi uint64) uint32 { return uint32(hi) }

// §7.1.6.2 advanced one-buffer write-back: length, DD|EOP, packet type,
// IPCS/L4CS, RDH advance; data lands in the packet buffer.
func TestRxOneBufferWriteBack(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	f := tcp4Frame(testMAC, payloadBytes(200))
	require.NoError(t, r.d.Receive(0, f))
	lo, hi := r.rxDesc(0, 0)
	require.Equal(t, len(f), wbLen(hi))
	st := wbStatus(hi)
	require.Equal(t, uint32(rxdStatDD|rxdStatEOP|rxdStatIPCS|rxdStatL4CS), st&0xFFFFF)
	require.Zero(t, st>>20, "no errors")
	require.Equal(t, uint32(pktTypeIPv4|pktTypeTCP), uint32(lo)>>4&0x1FFF)
	require.Zero(t, uint32(lo)>>31, "no SPH")
	require.Equal(t, f, r.bytes(rxBufOf(0, 0), len(f)))
	require.Equal(t, uint32(1), r.rd(rxQueueBase(0)+qRDH))
	s := r.d.Stats()
	require.Equal(t, uint64(1), s.RxFrames)
	require.Equal(t, uint64(len(f)), s.RxBytes)
}

// §7.1.9 "Receive descriptor ring": the ring wraps; software re-posts
// descriptors and moves RDT.
func TestRxRingWrap(t *testing.T) {
	r := newRig(t)
	const n = 8
	r.setupRx(1, n, 2, descTypeAdvOneBuf)
	base := rxQueueBase(1)
	for k := 0; k < 3*n; k++ {
		f := udp4Frame(testMAC, payloadBytes(60+k))
		require.NoError(t, r.d.Receive(1, f), "frame %d", k)
		i := k % n
		_, hi := r.rxDesc(1, i)
		require.Equal(t, len(f), wbLen(hi))
		require.Equal(t, f, r.bytes(rxBufOf(1, i), len(f)))
		// driver: clean and re-post, RDT = last cleaned
		r.post(1, i)
		r.wr(base+qRDT, uint32(i))
	}
	require.Equal(t, uint32(3*n%n), r.rd(base+qRDH))
}

// §7.1.6.2: a frame larger than BSIZEPKT spans descriptors, each holding
// min(BSIZEPKT, remaining); only the last has EOP (and the checksum status).
func TestRxSpanningDescriptors(t *testing.T) {
	r := newRig(t)
	r.wr(regHLREG0, r.rd(regHLREG0)|hlreg0JumboEn)
	r.wr(regMAXFRS, 9018<<16)
	r.setupRx(0, 8, 1, descTypeAdvOneBuf)
	f := tcp4Frame(testMAC, payloadBytes(3000-54))
	require.Len(t, f, 3000)
	require.NoError(t, r.d.Receive(0, f))
	lens := []int{1024, 1024, 952}
	var got []byte
	for i, l := range lens {
		_, hi := r.rxDesc(0, i)
		require.Equal(t, l, wbLen(hi))
		st := wbStatus(hi)
		require.NotZero(t, st&rxdStatDD)
		require.Equal(t, i == 2, st&rxdStatEOP != 0, "EOP only on the last")
		got = append(got, r.bytes(rxBufOf(0, i), l)...)
	}
	require.Equal(t, f, got)
	_, hi := r.rxDesc(0, 2)
	require.NotZero(t, wbStatus(hi)&rxdStatL4CS, "checksum across buffers")
	require.Zero(t, wbStatus(hi)>>20)
	require.Equal(t, uint32(3), r.rd(rxQueueBase(0)+qRDH))
}

// §7.1.10 header split (SRRCTL.DESCTYPE=010, PSRTYPE): headers to the
// header buffer, payload to the packet buffer, SPH and HDR_LEN set.
func TestRxHeaderSplit(t *testing.T) {
	r := newRig(t)
	r.wr(regPSRTYPE, psrtypeL2Hdr|psrtypeIPv4Hdr|psrtypeIPv6Hdr|psrtypeTCPHdr|psrtypeUDPHdr)
	r.setupRx(0, 8, 2, descTypeAdvHdrSplit)
	for i, f := range [][]byte{tcp4Frame(testMAC, payloadBytes(500)), udp4Frame(testMAC, payloadBytes(100)), tcp6Frame(testMAC, payloadBytes(300))} {
		hl := map[int]int{0: 54, 1: 42, 2: 74}[i]
		require.NoError(t, r.d.Receive(0, f))
		lo, hi := r.rxDesc(0, i)
		require.Equal(t, uint32(1), uint32(lo)>>31, "SPH")
		require.Equal(t, hl, int(uint32(lo)>>21&0x3FF), "HDR_LEN")
		require.Equal(t, len(f)-hl, wbLen(hi), "PKT_LEN counts the packet buffer")
		require.Equal(t, f[:hl], r.bytes(rxBufOf(0, i)+0x3000, hl))
		require.Equal(t, f[hl:], r.bytes(rxBufOf(0, i), len(f)-hl))
		require.NotZero(t, wbStatus(hi)&rxdStatL4CS)
	}
	// Header larger than BSIZEHDR (256 B here): no split, HBO error.
	r.wr(rxQueueBase(0)+qSRRCTL, 2|1<<8|descTypeAdvHdrSplit<<srrctlDescTypeSh) // 64 B header buffer
	f := tcp6Frame(testMAC, payloadBytes(10))                                  // 74-byte header
	require.NoError(t, r.d.Receive(0, f))
	lo, hi := r.rxDesc(0, 3)
	require.NotZero(t, wbStatus(hi)&rxdErrHBO)
	require.Zero(t, uint32(lo)>>31)
	require.Equal(t, len(f), wbLen(hi))
	_ = lo
	f2 := append(ethHdr(testMAC, peerMAC, etherTypeIPv4), make([]byte, 20)...) // not IPv4 payload
	f2[14] = 0x45
	binary.BigEndian.PutUint16(f2[16:], 20)
	f2[23] = 99 // unknown L4
	copy(f2[14:], ip4Hdr(99, 0))
	r.wr(rxQueueBase(0)+qSRRCTL, 2|4<<8|descTypeAdvHdrSplit<<srrctlDescTypeSh)
	require.NoError(t, r.d.Receive(0, f2))
	lo, hi = r.rxDesc(0, 4)
	require.Equal(t, 34, int(uint32(lo)>>21&0x3FF), "split after L3 when L4 is unknown")
	require.Zero(t, wbLen(hi))
}

// §7.1.3.2 / §8.2.3.23.4: with no free descriptor (RDH == RDT) the frame is
// dropped and counted in MPC and, with SRRCTL.DROP_EN, QPRDC.
func TestRxEmptyRingDrops(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf) // 7 usable descriptors
	f := udp4Frame(testMAC, payloadBytes(64))
	for i := 0; i < 7; i++ {
		require.NoError(t, r.d.Receive(0, f))
	}
	require.Equal(t, r.rd(rxQueueBase(0)+qRDT), r.rd(rxQueueBase(0)+qRDH))
	require.ErrorIs(t, r.d.Receive(0, f), ErrNoDescriptors)
	require.ErrorIs(t, r.d.Receive(0, f), ErrNoDescriptors)
	require.Equal(t, uint64(2), r.d.Stats().RxMissed)
	require.Equal(t, uint32(2), r.rd(regMPC))
	require.Equal(t, uint32(2), r.rd(regQPRDC))
	require.Equal(t, uint32(7), r.rd(regGPRC))
	_, ok := r.d.RxTarget(0)
	require.False(t, ok)
}

// §8.2.3.22.13 MAXFRS / §8.2.3.22.8 HLREG0.JUMBOEN: oversize frames are
// dropped and counted in ROC.
func TestRxMaxFrameSize(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	require.NoError(t, r.d.Receive(0, udp4Frame(testMAC, payloadBytes(1514-42))))
	require.ErrorIs(t, r.d.Receive(0, udp4Frame(testMAC, payloadBytes(1515-42))), ErrOversize)
	r.wr(regHLREG0, r.rd(regHLREG0)|hlreg0JumboEn)
	r.wr(regMAXFRS, 2000<<16)
	require.NoError(t, r.d.Receive(0, udp4Frame(testMAC, payloadBytes(1996-42))))
	require.ErrorIs(t, r.d.Receive(0, udp4Frame(testMAC, payloadBytes(1997-42))), ErrOversize)
	require.Equal(t, uint32(2), r.rd(regROC))
	require.Equal(t, uint64(2), r.d.Stats().RxOversize)
	require.ErrorIs(t, r.d.Receive(0, make([]byte, 10)), ErrUndersize)
}

// §7.1.1 "Receive address filtering": RAL/RAH perfect match with AV,
// broadcast with FCTRL.BAM, multicast via MTA/MPE, promiscuous FCTRL.UPE.
func TestRxFiltering(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 64, 2, descTypeAdvOneBuf)
	other := [6]byte{0x52, 0x54, 0, 9, 9, 9}
	mc := [6]byte{0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB}
	recv := func(dst [6]byte) error { return r.d.Receive(0, udp4Frame(dst, payloadBytes(20))) }

	require.NoError(t, recv(testMAC))
	require.ErrorIs(t, recv(other), ErrFiltered)
	require.NoError(t, recv(bcastMAC))
	require.ErrorIs(t, recv(mc), ErrFiltered)

	// second unicast address in RAR(3)
	r.wr(regRAL+3*8, 0x09000452|0<<24)
	r.wr(regRAL+3*8, uint32(other[0])|uint32(other[1])<<8|uint32(other[2])<<16|uint32(other[3])<<24)
	r.wr(regRAL+3*8+4, uint32(other[4])|uint32(other[5])<<8|rahAV)
	require.NoError(t, recv(other))
	r.wr(regRAL+3*8+4, uint32(other[4])|uint32(other[5])<<8) // AV off
	require.ErrorIs(t, recv(other), ErrFiltered)

	// MTA hash, filter type 0 (bits 47:36), as ixgbe_mta_vector
	v := (uint32(mc[4])>>4 | uint32(mc[5])<<4) & 0xFFF
	r.wr(regMTA+4*(v>>5), 1<<(v&31))
	require.ErrorIs(t, recv(mc), ErrFiltered, "MFE off")
	r.wr(regMCSTCTRL, mcstctrlMFE)
	require.NoError(t, recv(mc))
	mc2 := mc
	mc2[5] = 0xFC
	require.ErrorIs(t, recv(mc2), ErrFiltered)
	r.wr(regFCTRL, fctrlBAM|fctrlMPE)
	require.NoError(t, recv(mc2))

	r.wr(regFCTRL, 0)
	require.ErrorIs(t, recv(bcastMAC), ErrFiltered, "BAM off")
	r.wr(regFCTRL, fctrlUPE)
	require.NoError(t, recv([6]byte{2, 3, 4, 5, 6, 7}))
	require.Equal(t, uint32(1), r.rd(regBPRC))
	require.Equal(t, uint32(2), r.rd(regMPRC))

	r.wr(regRXCTRL, 0)
	require.ErrorIs(t, recv(testMAC), ErrRxDisabled)
}

// §7.1.11 receive checksum offload: IPCS/L4CS with IPE/TCPE on mismatch.
func TestRxChecksumStatus(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 16, 2, descTypeAdvOneBuf)
	cases := []struct {
		name   string
		f      []byte
		st, er uint32
		typ    uint32
	}{
		{"tcp4 ok", tcp4Frame(testMAC, payloadBytes(33)), rxdStatIPCS | rxdStatL4CS, 0, pktTypeIPv4 | pktTypeTCP},
		{"udp4 ok", udp4Frame(testMAC, payloadBytes(33)), rxdStatIPCS | rxdStatL4CS | rxdStatUDPCS, 0, pktTypeIPv4 | pktTypeUDP},
		{"tcp6 ok", tcp6Frame(testMAC, payloadBytes(33)), rxdStatL4CS, 0, pktTypeIPv6 | pktTypeTCP},
		{"bad ip", func() []byte { f := tcp4Frame(testMAC, payloadBytes(33)); f[14+10] ^= 1; return f }(), rxdStatIPCS | rxdStatL4CS, rxdErrIPE, pktTypeIPv4 | pktTypeTCP},
		{"bad tcp", func() []byte { f := tcp4Frame(testMAC, payloadBytes(33)); f[len(f)-1] ^= 1; return f }(), rxdStatIPCS | rxdStatL4CS, rxdErrTCPE, pktTypeIPv4 | pktTypeTCP},
		{"udp no csum", func() []byte { f := udp4Frame(testMAC, payloadBytes(33)); f[40], f[41] = 0, 0; return f }(), rxdStatIPCS, 0, pktTypeIPv4 | pktTypeUDP},
		{"arp", append(ethHdr(testMAC, peerMAC, 0x0806), make([]byte, 28)...), 0, 0, 0},
	}
	for i, c := range cases {
		require.NoError(t, r.d.Receive(0, c.f), c.name)
		lo, hi := r.rxDesc(0, i)
		st := wbStatus(hi)
		require.Equal(t, c.st|rxdStatDD|rxdStatEOP, st&0xFFFFF, c.name)
		require.Equal(t, c.er, st&0xFFF00000, c.name)
		require.Equal(t, c.typ, uint32(lo)>>4&0x1FFF, c.name)
	}
}

// Zero-copy path: RxTarget hands out buffers, the caller fills them (as a
// tap readv would), RxComplete writes back (§7.1.6.2 layout).
func TestRxZeroCopy(t *testing.T) {
	r := newRig(t)
	r.setupRx(0, 8, 1, descTypeAdvOneBuf)
	bufs, ok := r.d.RxTarget(0)
	require.True(t, ok)
	require.Len(t, bufs, 2, "1518-byte max frame in 1 KB buffers")
	f := tcp4Frame(testMAC, payloadBytes(1400))
	n := copy(bufs[0], f)
	copy(bufs[1], f[n:])
	require.NoError(t, r.d.RxComplete(0, len(f)))
	_, hi0 := r.rxDesc(0, 0)
	_, hi1 := r.rxDesc(0, 1)
	require.Equal(t, 1024, wbLen(hi0))
	require.Zero(t, wbStatus(hi0)&rxdStatEOP)
	require.Equal(t, len(f)-1024, wbLen(hi1))
	require.Equal(t, uint32(rxdStatDD|rxdStatEOP|rxdStatIPCS|rxdStatL4CS), wbStatus(hi1))
	require.Equal(t, uint32(2), r.rd(rxQueueBase(0)+qRDH))

	// filtered frame: descriptors stay free
	bufs, ok = r.d.RxTarget(0)
	require.True(t, ok)
	copy(bufs[0], udp4Frame([6]byte{2, 0, 0, 0, 0, 1}, payloadBytes(10)))
	require.ErrorIs(t, r.d.RxComplete(0, 52), ErrFiltered)
	require.Equal(t, uint32(2), r.rd(rxQueueBase(0)+qRDH))

	// reservation invalidated by a ring reconfiguration
	_, ok = r.d.RxTarget(0)
	require.True(t, ok)
	r.wr(rxQueueBase(0)+qRDH, 2)
	require.ErrorIs(t, r.d.RxComplete(0, 60), ErrStale)
	require.ErrorIs(t, r.d.RxComplete(0, 60), ErrStale, "no reservation")
}

// Hostile ring programming (§8.2.3.8.1-3 constraints): never a panic, the
// frame is dropped and counted.
func TestRxHostileConfig(t *testing.T) {
	r := newRig(t)
	f := udp4Frame(testMAC, payloadBytes(64))
	base := rxQueueBase(0)

	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	r.wr(base+qRDLEN, 0)
	require.ErrorIs(t, r.d.Receive(0, f), ErrBadRing)
	r.wr(base+qRDLEN, 100) // < 128: masked to 0
	require.ErrorIs(t, r.d.Receive(0, f), ErrBadRing)
	r.wr(base+qRDLEN, 8*16)
	r.wr(base+qRDT, 500) // beyond the ring
	require.ErrorIs(t, r.d.Receive(0, f), ErrBadRing)
	_, ok := r.d.RxTarget(0)
	require.False(t, ok)
	r.wr(base+qRDT, 7)
	r.wr(base+qSRRCTL, 0) // BSIZEPKT 0
	require.ErrorIs(t, r.d.Receive(0, f), ErrBadRing)
	r.wr(base+qSRRCTL, 2|descTypeAdvOneBuf<<srrctlDescTypeSh)

	// ring base outside guest memory
	r.wr(base+qRDBAL, 0)
	r.wr(base+qRDBAH, 0x10)
	require.ErrorIs(t, r.d.Receive(0, f), ErrDMA)
	r.wr(base+qRDBAH, 0xFFFFFFFF)
	r.wr(base+qRDBAL, 0xFFFFFF80)
	require.ErrorIs(t, r.d.Receive(0, f), ErrDMA)

	// buffer outside memory: that descriptor is skipped with RXE
	r.setupRx(0, 8, 2, descTypeAdvOneBuf)
	r.put64(rxRingOf(0), 0xDEAD00000000)
	require.ErrorIs(t, r.d.Receive(0, f), ErrDMA)
	_, hi := r.rxDesc(0, 0)
	require.Equal(t, uint32(rxdStatDD|rxdStatEOP|rxdErrRXE), wbStatus(hi))
	require.Equal(t, uint32(1), r.rd(base+qRDH))
	require.NoError(t, r.d.Receive(0, f))
	_, hi = r.rxDesc(0, 1)
	require.Equal(t, len(f), wbLen(hi))
	require.NotZero(t, r.d.Stats().RxErrors)

	// queue index out of range / unimplemented queue never enables
	require.ErrorIs(t, r.d.Receive(99, f), ErrBadQueue)
	require.ErrorIs(t, r.d.Receive(-1, f), ErrBadQueue)
	r.wr(rxQueueBase(100)+qRXDCTL, rxdctlEnable)
	require.Zero(t, r.rd(rxQueueBase(100)+qRXDCTL)&rxdctlEnable)
	r.wr(rxQueueBase(3)+qRXDCTL, 0)
	require.ErrorIs(t, r.d.Receive(3, f), ErrRxDisabled)
}
