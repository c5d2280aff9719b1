package ixgbeemu

import (
	"encoding/binary"
	"github.com/govmm/govmm/devices/nic/csum"
	"testing"

	"github.com/stretchr/testify/require"
)

// offloadWire records hand-offs; plain Sends go to the embedded fakeWire.
type offloadWire struct {
	fakeWire
	segs [][][]byte
	offs []TxOffload
}

func (w *offloadWire) SendOffload(segs [][]byte, off TxOffload) error {
	w.segs = append(w.segs, append([][]byte(nil), segs...))
	w.offs = append(w.offs, off)
	return nil
}

func newOffloadRig(t *testing.T) (*rig, *offloadWire) {
	r := newRig(t)
	w := &offloadWire{}
	d, err := New(Config{MAC: testMAC, Queues: 2, DMA: r.mem, Wire: w, IRQ: r.irq})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	r.d = d
	return r, w
}

func concat(segs [][]byte) []byte {
	var f []byte
	for _, s := range segs {
		f = append(f, s...)
	}
	return f
}

// A TSO frame goes to an OffloadWire in one piece: the payload as views of
// guest memory, the headers rewritten as a GSO frame's (IP length, IPv4
// header checksum, TCP seed with the length), so that the checksum the
// wire completes over the whole frame is valid.
func TestTxTSOHandOff(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		r, w := newOffloadRig(t)
		r.setupTx(0, 16)
		const mss, plen = 1448, 9000
		iplen, f := 20, tcp4Frame(peerMAC, payloadBytes(plen))
		if v6 {
			iplen, f = 40, tcp6Frame(peerMAC, payloadBytes(plen))
		}
		l4 := 14 + iplen
		hdr := l4 + 20
		// What Linux ixgbe_tso leaves: IP length 0, IPv4 checksum 0, the
		// pseudo-header seed without the length.
		var ps uint64
		if v6 {
			ps = csum.Sum(f[14+8:14+40], 0)
			binary.BigEndian.PutUint16(f[14+4:], 0)
		} else {
			ps = csum.Sum(f[14+12:14+20], 0)
			binary.BigEndian.PutUint16(f[14+2:], 0)
			binary.BigEndian.PutUint16(f[14+10:], 0)
		}
		binary.BigEndian.PutUint16(f[l4+16:], csum.Fold(ps+protoTCP))
		copy(r.bytes(txBufs, hdr), f[:hdr])
		copy(r.bytes(txBufs+0x1000, plen), f[hdr:])
		tucmd, popts := uint32(tucmdL4TTCP), uint32(txdPoptsTXSM)
		if !v6 {
			tucmd |= tucmdIPv4
			popts |= txdPoptsIXSM
		}
		r.txCtx(0, 0, 14, iplen, tucmd, mss, 20)
		r.txData(0, 1, txBufs, hdr, txdCmdTSE, popts|plen<<14)
		r.txData(0, 2, txBufs+0x1000, plen, txdCmdTSE|txdCmdEOP|txdCmdRS, popts|plen<<14)
		r.wr(txQueueBase(0)+qRDT, 3)

		require.Empty(t, w.get(), "nothing segmented in software")
		require.Len(t, w.offs, 1)
		gso := uint8(GSOTCPv4)
		if v6 {
			gso = GSOTCPv6
		}
		require.Equal(t, TxOffload{NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: 16, GSOType: gso, GSOSize: mss, HdrLen: uint16(hdr)}, w.offs[0])
		segs := w.segs[0]
		require.Same(t, &r.ram[txBufs+0x1000-memBase], &segs[len(segs)-1][0], "payload is a view of guest memory")
		got := concat(segs)
		require.Len(t, got, hdr+plen)
		require.Equal(t, f[hdr:], got[hdr:])
		require.Equal(t, f[:hdr], r.bytes(txBufs, hdr), "guest memory is not written")
		if v6 {
			require.Equal(t, uint16(20+plen), binary.BigEndian.Uint16(got[14+4:]))
		} else {
			require.Equal(t, uint16(20+20+plen), binary.BigEndian.Uint16(got[14+2:]))
			require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(got[14:34], 0)), "IPv4 header checksum")
		}
		// Complete the checksum as the wire would (NEEDS_CSUM over the whole
		// frame): the result must be the frame's valid TCP checksum.
		c := ^csum.Fold(csum.Sum(got[l4:], 0))
		binary.BigEndian.PutUint16(got[l4+16:], c)
		require.Equal(t, uint16(0xFFFF), l4Sum(got, 14, v6, protoTCP))
		require.Equal(t, uint64(7), r.d.Stats().TxFrames, "counted as the segments it stands for")
		require.NotZero(t, r.txStatus(0, 2)&txdStatDD)
	}
}

// A checksum-only frame is handed over untouched, every byte a view of
// guest memory; an IPv4 header checksum request without TSO, and SCTP,
// are done in software.
func TestTxChecksumHandOff(t *testing.T) {
	r, w := newOffloadRig(t)
	r.setupTx(0, 16)
	f := udp4Frame(peerMAC, payloadBytes(300))
	copy(r.bytes(txBufs, len(f)), f)
	r.txCtx(0, 0, 14, 20, tucmdIPv4, 0, 0) // L4T 0: UDP
	r.txData(0, 1, txBufs, len(f), txdCmdEOP|txdCmdRS, txdPoptsTXSM|uint32(len(f))<<14)
	r.txData(0, 2, txBufs, len(f), txdCmdEOP|txdCmdRS, txdPoptsTXSM|txdPoptsIXSM|uint32(len(f))<<14)
	r.wr(txQueueBase(0)+qRDT, 3)
	require.Len(t, w.offs, 1)
	require.Equal(t, TxOffload{NeedsCsum: true, CsumStart: 34, CsumOffset: 6}, w.offs[0])
	require.Len(t, w.segs[0], 1)
	require.Same(t, &r.ram[txBufs-memBase], &w.segs[0][0][0])
	sw := w.get()
	require.Len(t, sw, 1, "IXSM without TSO: software")
	require.Equal(t, uint16(0xFFFF), csum.Fold(csum.Sum(sw[0][14:34], 0)))
}

// Hostile context descriptors never reach the wire.
func TestTxHandOffHostile(t *testing.T) {
	r, w := newOffloadRig(t)
	r.setupTx(0, 16)
	f := tcp4Frame(peerMAC, payloadBytes(100))
	copy(r.bytes(txBufs, len(f)), f)
	r.txCtx(0, 0, 2, 20, tucmdL4TTCP|tucmdIPv4, 1448, 20) // MACLEN 2
	r.txData(0, 1, txBufs, len(f), txdCmdTSE|txdCmdEOP|txdCmdRS, txdPoptsTXSM|uint32(len(f))<<14)
	r.txCtx(0, 2, 14, 20, tucmdL4TTCP|tucmdIPv4, 1448, 255) // header longer than the frame
	r.txData(0, 3, txBufs, len(f), txdCmdTSE|txdCmdEOP|txdCmdRS, txdPoptsTXSM|uint32(len(f))<<14)
	r.txCtx(0, 4, 14, 20, tucmdL4TTCP|tucmdIPv4, 0, 20) // MSS 0
	r.txData(0, 5, txBufs, len(f), txdCmdTSE|txdCmdEOP|txdCmdRS, txdPoptsTXSM|uint32(len(f))<<14)
	r.wr(txQueueBase(0)+qRDT, 6)
	require.Empty(t, w.offs)
	require.Empty(t, w.get())
	require.Equal(t, uint32(6), r.rd(txQueueBase(0)+qRDH), "the ring moves on")
}
