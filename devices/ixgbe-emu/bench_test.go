package ixgbeemu

import (
	"testing"
)

// BenchmarkRx1500: one 1500-byte frame through Receive to write-back
// (copy, checksum verification, descriptor write-back, MSI-X).
func BenchmarkRx1500(b *testing.B) {
	r := newRig(b)
	r.msixSetup(1)
	r.d.irq = &nullIRQ{}
	r.wr(regEIAMEx, 0)
	const n = 256
	r.setupRxB(n)
	f := tcp4Frame(testMAC, payloadBytes(1500-54))
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.d.Receive(0, f); err != nil {
			b.Fatal(err)
		}
		idx := i % n
		r.post(0, idx)
		r.wr(rxQueueBase(0)+qRDT, uint32(idx))
	}
}

func (r *rig) setupRxB(n int) {
	base := rxQueueBase(0)
	r.wr(regFCTRL, fctrlBAM)
	r.wr(base+qRDBAL, uint32(rxRingOf(0)))
	r.wr(base+qRDLEN, uint32(n*16))
	r.wr(base+qSRRCTL, 2|descTypeAdvOneBuf<<srrctlDescTypeSh)
	r.wr(base+qRXDCTL, rxdctlEnable)
	for i := 0; i < n; i++ {
		r.put64(rxRingOf(0)+uint64(i)*16, rxBufs+uint64(i%16)*0x4000)
		r.put64(rxRingOf(0)+uint64(i)*16+8, 0)
	}
	r.wr(base+qRDT, uint32(n-1))
	r.wr(regRXCTRL, rxctrlRXEN)
}

type nullWire struct{ n int }

func (w *nullWire) Send(segs [][]byte) error { w.n += len(segs); return nil }

// BenchmarkTx1500: one 1500-byte frame per TDT write, zero-copy Send, RS
// write-back.
func BenchmarkTx1500(b *testing.B) {
	r := newRig(b)
	r.d.wire = &nullWire{}
	r.wr(regDMATXCTL, dmatxctlTE)
	const n = 256
	base := txQueueBase(0)
	r.wr(base+qRDBAL, uint32(txRingOf(0)))
	r.wr(base+qRDLEN, n*16)
	r.wr(base+qRXDCTL, txdctlEnable)
	f := tcp4Frame(peerMAC, payloadBytes(1500-54))
	copy(r.bytes(txBufs, len(f)), f)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx := i % n
		r.txData(0, idx, txBufs, len(f), txdCmdEOP|txdCmdRS, 0)
		r.wr(base+qRDT, uint32((idx+1)%n))
	}
}

type nullIRQ struct{ n int }

func (q *nullIRQ) Trigger(int) error { q.n++; return nil }
func (q *nullIRQ) SetINTx(bool)      {}
