// Rx descriptor write-back, advanced (§7.1.6.2) and legacy (§7.1.5) layouts.

package ixgbeemu

import "encoding/binary"

// rxSkip drops a frame whose last descriptor, descs[len-1], has a buffer
// outside the DMA space: it consumes descs (those from RDH up to the bad
// one) in order, each written back with DD and length 0, the last with
// EOP and RXE, and counts an error. Consuming only the bad descriptor
// would leave the one at RDH without DD, and the driver waits for
// descriptors in ring order (§7.1.6.2).
func (d *Device) rxSkip(q *rxQueue, descs [][]byte, size uint32, legacy bool) {
	d.cnt.rxErrors.Add(1)
	for i, desc := range descs {
		// Advanced layout (§7.1.6.2): status and errors in bits 31:0.
		// Legacy layout (§7.1.5): status 39:32, errors 47:40 (RXE: 47).
		wb := uint64(rxdStatDD)
		if legacy {
			wb <<= 32
		}
		if i == len(descs)-1 {
			wb = uint64(rxdStatDD | rxdStatEOP | rxdErrRXE)
			if legacy {
				wb = (rxdStatDD|rxdStatEOP)<<32 | 1<<47
			}
		}
		binary.LittleEndian.PutUint64(desc, 0)
		store64(desc[8:], wb)
	}
	q.rdh = (q.rdh + uint32(len(descs))) % size
}

// rxWriteBack writes back q.descs with q.lens and advances RDH. The lower
// qword is written first and the upper qword (status, errors, length,
// VLAN) last with one 64-bit store, so a driver that sees DD or a non-zero
// length sees the whole descriptor (§7.1.6.2; Linux ixgbe_clean_rx_irq polls
// wb.upper.length, then dma_rmb()).
//
// With RSS the first descriptor's packet info carries the RSS type (bits
// 3:0) and, with RXCSUM.PCSD, its bits 63:32 the hash (§7.1.6.2). Called
// with d.mu read-locked and q.mu held.
func (d *Device) rxWriteBack(q *rxQueue, size uint32, pktType, status, errs, hlen, sph uint32, rss rssResult, legacy bool) {
	var hashHi uint64
	if d.store[regRXCSUM/4]&rxcsumPCSD != 0 {
		hashHi = uint64(rss.hash) << 32
	}
	last := len(q.descs) - 1
	for i, desc := range q.descs {
		st := uint32(rxdStatDD)
		var er uint32
		if i == last {
			st |= rxdStatEOP | status
			er = errs
		}
		plen := uint64(q.lens[i])
		if legacy {
			// Legacy write-back (§7.1.5): length 15:0, checksum 31:16,
			// status 39:32, errors 47:40, VLAN 63:48.
			lst := uint64(st & 3)
			if st&rxdStatIPCS != 0 {
				lst |= 1 << 6
			}
			if st&rxdStatL4CS != 0 {
				lst |= 1 << 5
			}
			var ler uint64
			if er&rxdErrTCPE != 0 {
				ler |= 1 << 5
			}
			if er&rxdErrIPE != 0 {
				ler |= 1 << 6
			}
			binary.LittleEndian.PutUint64(desc, 0)
			store64(desc[8:], plen|lst<<32|ler<<40)
			continue
		}
		dw0 := pktType<<4 | rss.typ
		lo := uint64(0)
		if i == 0 {
			dw0 |= (hlen&0x3FF)<<21 | sph<<31
		}
		if rss.typ != 0 {
			lo = hashHi
		}
		binary.LittleEndian.PutUint64(desc, uint64(dw0)|lo)
		store64(desc[8:], uint64(st|er)|plen<<32)
	}
	q.rdh = (q.rdh + uint32(len(q.descs))) % size
}
