package ixgbeemu

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"testing"

	"github.com/stretchr/testify/require"
)

func (r *rig) txStatus(q, i int) uint32 {
	return uint32(r.u64(txRingOf(q)+uint64(i)*16+8) >> 32)
}

// §7.2.3.2.4 advanced data descriptor, one descriptor per frame: sent
// zero-copy, DD written back for RS (§7.2.3.5.2), TDH advanced.
func TestTxSingleDescriptor(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 8)
	f := udp4Frame(peerMAC, payloadBytes(100))
	copy(r.bytes(txBufs, len(f)), f)
	r.txData(0, 0, txBufs, len(f), txdCmdEOP|txdCmdIFCS|txdCmdRS, uint32(len(f))<<14)
	r.wr(txQueueBase(0)+qRDT, 1)
	require.Equal(t, [][]byte{f}, r.wire.get())
	require.Equal(t, []int{1}, r.wire.nsegs)
	require.NotZero(t, r.txStatus(0, 0)&txdStatDD)
	require.Equal(t, uint32(1), r.rd(txQueueBase(0)+qRDH))
	require.Equal(t, uint32(1), r.rd(regGPTC))
	require.Equal(t, uint32(len(f)), r.rd(regGOTCL))
	s := r.d.Stats()
	require.Equal(t, uint64(1), s.TxFrames)

	// no RS → no write-back
	r.txData(0, 1, txBufs, len(f), txdCmdEOP, 0)
	r.wr(txQueueBase(0)+qRDT, 2)
	require.Zero(t, r.txStatus(0, 1)&txdStatDD)
	require.Len(t, r.wire.get(), 2)
}

const txdCmdIFCS = 1 << 25

// §7.2.1: a frame gathered from several data descriptors up to EOP is
// passed as one Send with one segment per descriptor; a frame whose EOP is
// not yet behind TDT waits.
func TestTxMultiDescriptor(t *testing.T) {
	r := newRig(t)
	r.setupTx(2, 16)
	f := tcp4Frame(peerMAC, payloadBytes(3000))
	parts := []int{54, 1000, 1000, len(f) - 2054}
	off := 0
	for i, n := range parts {
		addr := txBufs + uint64(i)*0x1000
		copy(r.bytes(addr, n), f[off:off+n])
		cmd := uint32(0)
		if i == len(parts)-1 {
			cmd = txdCmdEOP | txdCmdRS
		}
		r.txData(2, i, addr, n, cmd, 0)
		off += n
	}
	r.wr(txQueueBase(2)+qRDT, 2) // EOP not yet available
	require.Empty(t, r.wire.get())
	require.Zero(t, r.rd(txQueueBase(2)+qRDH))
	r.wr(txQueueBase(2)+qRDT, 4)
	require.Equal(t, [][]byte{f}, r.wire.get())
	require.Equal(t, []int{4}, r.wire.nsegs, "zero-copy: one view per descriptor")
	require.NotZero(t, r.txStatus(2, 3)&txdStatDD)
	require.Equal(t, uint32(4), r.rd(txQueueBase(2)+qRDH))
}

// §7.2.5 checksum offload: context descriptor (MACLEN/IPLEN/L4T) + data
// descriptor POPTS.IXSM/TXSM; the driver seeds the L4 checksum with the
// pseudo-header sum as Linux does for CHECKSUM_PARTIAL.
func TestTxChecksumInsertion(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 16)
	mk := []struct {
		f     []byte
		v6    bool
		proto uint8
		tucmd uint32
		iplen int
	}{
		{tcp4Frame(peerMAC, payloadBytes(777)), false, protoTCP, tucmdIPv4 | tucmdL4TTCP, 20},
		{udp4Frame(peerMAC, payloadBytes(333)), false, protoUDP, tucmdIPv4, 20},
		{tcp6Frame(peerMAC, payloadBytes(501)), true, protoTCP, tucmdL4TTCP, 40},
	}
	slot := 0
	for i, c := range mk {
		want := append([]byte(nil), c.f...)
		f := append([]byte(nil), c.f...)
		l4 := 14 + c.iplen
		co := l4 + 16
		if c.proto == protoUDP {
			co = l4 + 6
		}
		// seed = folded pseudo-header sum (with length), IPv4 csum zeroed
		var ps uint64
		if c.v6 {
			ps = csum.Sum(f[14+8:14+40], 0)
		} else {
			ps = csum.Sum(f[14+12:14+20], 0)
			f[14+10], f[14+11] = 0, 0
		}
		ps += uint64(c.proto) + uint64(len(f)-l4)
		binary.BigEndian.PutUint16(f[co:], csum.Fold(ps))
		addr := txBufs + uint64(i)*0x1000
		copy(r.bytes(addr, len(f)), f)
		r.txCtx(0, slot, 14, c.iplen, c.tucmd, 0, 0)
		popts := uint32(txdPoptsTXSM)
		if !c.v6 {
			popts |= txdPoptsIXSM
		}
		r.txData(0, slot+1, addr, len(f), txdCmdEOP|txdCmdRS, popts|uint32(len(f))<<14)
		slot += 2
		r.wr(txQueueBase(0)+qRDT, uint32(slot))
		got := r.wire.get()[i]
		require.Equal(t, want, got, "frame %d", i)
		require.Equal(t, uint16(0xFFFF), l4Sum(got, 14, c.v6, c.proto))
		if !c.v6 {
			require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(got[14:34], 0)))
		}
	}
}

// §7.2.4 TCP segmentation: 9000-byte payload, MSS 1448 → 7 segments with
// consecutive sequence numbers, IP IDs, lengths, flags and valid checksums.
func TestTxTSO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		r := newRig(t)
		r.setupTx(0, 16)
		const mss, plen = 1448, 9000
		var f []byte
		iplen := 20
		if v6 {
			f = tcp6Frame(peerMAC, payloadBytes(plen))
			iplen = 40
		} else {
			f = tcp4Frame(peerMAC, payloadBytes(plen))
		}
		binary.BigEndian.PutUint16(f[14+iplen+12:], 5<<12|0x19) // FIN|PSH|ACK
		// Linux ixgbe_tso: pseudo-header seed without the length
		var ps uint64
		if v6 {
			ps = csum.Sum(f[14+8:14+40], 0)
		} else {
			ps = csum.Sum(f[14+12:14+20], 0)
		}
		ps += protoTCP
		binary.BigEndian.PutUint16(f[14+iplen+16:], csum.Fold(ps))
		hdr := 14 + iplen + 20
		copy(r.bytes(txBufs, hdr), f[:hdr])
		copy(r.bytes(txBufs+0x1000, plen), f[hdr:])
		tucmd := uint32(tucmdL4TTCP)
		popts := uint32(txdPoptsTXSM)
		if !v6 {
			tucmd |= tucmdIPv4
			popts |= txdPoptsIXSM
		}
		r.txCtx(0, 0, 14, iplen, tucmd, mss, 20)
		r.txData(0, 1, txBufs, hdr, txdCmdTSE, popts|plen<<14)
		r.txData(0, 2, txBufs+0x1000, plen, txdCmdTSE|txdCmdEOP|txdCmdRS, popts|plen<<14)
		r.wr(txQueueBase(0)+qRDT, 3)

		segs := r.wire.get()
		require.Len(t, segs, 7) // ceil(9000/1448)
		got := 0
		for i, s := range segs {
			n := min(mss, plen-i*mss)
			require.Len(t, s, hdr+n)
			l4 := 14 + iplen
			require.Equal(t, uint32(1000+i*mss), binary.BigEndian.Uint32(s[l4+4:]), "seq")
			fl := binary.BigEndian.Uint16(s[l4+12:]) & 0xFFF
			if i == len(segs)-1 {
				require.Equal(t, uint16(0x19), fl, "last keeps FIN|PSH")
			} else {
				require.Equal(t, uint16(0x10), fl, "FIN/PSH cleared")
			}
			if v6 {
				require.Equal(t, uint16(20+n), binary.BigEndian.Uint16(s[14+4:]))
			} else {
				require.Equal(t, uint16(20+20+n), binary.BigEndian.Uint16(s[14+2:]))
				require.Equal(t, uint16(0x1234+i), binary.BigEndian.Uint16(s[14+4:]))
				require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(s[14:34], 0)), "IP checksum")
			}
			require.Equal(t, uint16(0xFFFF), l4Sum(s, 14, v6, protoTCP), "TCP checksum seg %d", i)
			require.Equal(t, f[hdr+i*mss:hdr+i*mss+n], s[hdr:])
			got += n
		}
		require.Equal(t, plen, got)
		require.NotZero(t, r.txStatus(0, 2)&txdStatDD)
		require.Equal(t, uint64(7), r.d.Stats().TxFrames)
	}
}

// §7.2.3.2.4 DCMD.VLE: the VLAN tag from the context descriptor is inserted.
func TestTxVLANInsert(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 8)
	f := udp4Frame(peerMAC, payloadBytes(50))
	copy(r.bytes(txBufs, len(f)), f)
	d := txRingOf(0)
	r.put64(d, uint64(14<<9|20)|uint64(100)<<16)
	r.put64(d+8, uint64(tucmdIPv4|txdDTypCtxt<<txdDTypShift|txdCmdDEXT))
	r.txData(0, 1, txBufs, len(f), txdCmdEOP|txdCmdVLE, 0)
	r.wr(txQueueBase(0)+qRDT, 2)
	got := r.wire.get()[0]
	require.Equal(t, []byte{0x81, 0, 0, 100}, got[12:16])
	require.Equal(t, f[12:], got[16:])
}

// §7.2.3.5.1: head write-back through TDWBAL/H when Head_WB_En is set.
func TestTxHeadWriteBack(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 8)
	wb := uint64(memBase + 0x7000)
	r.wr(txQueueBase(0)+qTDWBAL, uint32(wb)|1)
	f := udp4Frame(peerMAC, payloadBytes(10))
	copy(r.bytes(txBufs, len(f)), f)
	r.txData(0, 0, txBufs, len(f), txdCmdEOP, 0)
	r.txData(0, 1, txBufs, len(f), txdCmdEOP, 0)
	r.wr(txQueueBase(0)+qRDT, 2)
	require.Equal(t, uint32(2), binary.LittleEndian.Uint32(r.bytes(wb, 4)))
}

// Hostile tx programming: nothing panics, errors are counted, the ring
// keeps moving past bad frames.
func TestTxHostile(t *testing.T) {
	r := newRig(t)
	r.setupTx(0, 8)
	base := txQueueBase(0)
	r.wr(base+qRDT, 200) // beyond ring
	require.ErrorIs(t, r.d.ProcessTx(0), ErrBadRing)
	r.wr(base+qRDT, 0)
	// buffer outside memory: frame dropped, DD still written, head moves
	r.txData(0, 0, 0xFFFF_FFFF_0000, 100, txdCmdEOP|txdCmdRS, 0)
	r.wr(base+qRDT, 1)
	require.Empty(t, r.wire.get())
	require.NotZero(t, r.txStatus(0, 0)&txdStatDD)
	require.Equal(t, uint32(1), r.rd(base+qRDH))
	// TSO with MSS 0 / bogus header lengths
	r.txCtx(0, 1, 127, 511, tucmdL4TTCP, 0, 255)
	r.txData(0, 2, txBufs, 100, txdCmdEOP|txdCmdTSE, txdPoptsTXSM)
	r.wr(base+qRDT, 3)
	r.txCtx(0, 3, 14, 20, tucmdL4TTCP|tucmdIPv4, 0, 0)
	r.txData(0, 4, txBufs, 10, txdCmdEOP, txdPoptsTXSM|txdPoptsIXSM)
	r.wr(base+qRDT, 5)
	require.Empty(t, r.wire.get())
	require.Equal(t, uint64(5), r.d.Stats().TxErrors, "2 bad-TDT + bad buffer + 2 bad offload")
	require.Equal(t, uint32(5), r.rd(base+qRDH))
	// ring outside memory
	r.wr(base+qRDBAH, 0x100)
	r.wr(base+qRDT, 6)
	require.ErrorIs(t, r.d.ProcessTx(0), ErrDMA)
	// TDLEN 0
	r.wr(base+qRDLEN, 0)
	require.ErrorIs(t, r.d.ProcessTx(0), ErrBadRing)
	require.ErrorIs(t, r.d.ProcessTx(1000), ErrBadQueue)
	// DMATXCTL.TE off: nothing happens
	r.setupTx(1, 8)
	r.wr(regDMATXCTL, 0)
	r.txData(1, 0, txBufs, 60, txdCmdEOP, 0)
	r.wr(txQueueBase(1)+qRDT, 1)
	require.Zero(t, r.rd(txQueueBase(1)+qRDH))
}
