package zerocopy

import "sync/atomic"

// Stats are cumulative counters of one model; every read is an atomic load.
type Stats struct {
	RxFrames          uint64 `json:"rx_frames"`
	RxZeroCopyFrames  uint64 `json:"rx_zerocopy_frames"`   // written by the NIC straight into guest buffers
	RxCopiedFrames    uint64 `json:"rx_copied_frames"`     // went through the bounce buffer
	RxCopiedBytes     uint64 `json:"rx_copied_bytes"`      // frame bytes copied by the VMM (headers excluded)
	RxDroppedNoBuffer uint64 `json:"rx_dropped_no_buffer"` // read, but no posted buffer could hold it
	RxDroppedNIC      uint64 `json:"rx_dropped_nic"`       // rejected by the 82599 (size, filter) or a bad write-back
	RxPortErrors      uint64 `json:"rx_port_errors"`
	TxFrames          uint64 `json:"tx_frames"`
	TxZeroCopyFrames  uint64 `json:"tx_zerocopy_frames"` // sent from guest memory by descriptor
	TxCopiedBytes     uint64 `json:"tx_copied_bytes"`    // frame bytes copied into the tx bounce area
	TxDropped         uint64 `json:"tx_dropped"`
	PinnedBytes       uint64 `json:"pinned_bytes"`
	PinnedBytesPeak   uint64 `json:"pinned_bytes_peak"`
	PinnedDescs       uint64 `json:"pinned_descs"`
	PinLimitBytes     uint64 `json:"pin_limit_bytes"`
	PinLimitDescs     uint64 `json:"pin_limit_descs"`
	PostRxRefused     uint64 `json:"post_rx_refused"` // buffers left in the avail ring by the cap
	HeadroomFallbacks uint64 `json:"headroom_fallbacks"`
	// FallbackReasons breaks HeadroomFallbacks down by Reason name.
	FallbackReasons map[string]uint64 `json:"fallback_reasons,omitempty"`
	// Decisions counts posted chains by outcome ("zerocopy", …).
	Decisions map[string]uint64 `json:"decisions"`
}

type counters struct {
	rxFrames, rxZC, rxCopied, rxCopiedBytes, rxNoBuf, rxNIC, rxPortErr atomic.Uint64
	txFrames, txZC, txCopiedBytes, txDropped                           atomic.Uint64
	fallbacks                                                          atomic.Uint64
	reasons                                                            [numReasons]atomic.Uint64
	kinds                                                              [3]atomic.Uint64
}

func (c *counters) decided(d Decision) {
	c.kinds[d.Kind].Add(1)
	if d.Kind == Fallback {
		c.fallbacks.Add(1)
		c.reasons[d.Reason].Add(1)
	}
}

// Stats returns the counters. Safe to call from any goroutine at any time.
func (m *Model) Stats() Stats {
	c := &m.cnt
	s := Stats{
		RxFrames:          c.rxFrames.Load(),
		RxZeroCopyFrames:  c.rxZC.Load(),
		RxCopiedFrames:    c.rxCopied.Load(),
		RxCopiedBytes:     c.rxCopiedBytes.Load(),
		RxDroppedNoBuffer: c.rxNoBuf.Load(),
		RxDroppedNIC:      c.rxNIC.Load(),
		RxPortErrors:      c.rxPortErr.Load(),
		TxFrames:          c.txFrames.Load(),
		TxZeroCopyFrames:  c.txZC.Load(),
		TxCopiedBytes:     c.txCopiedBytes.Load(),
		TxDropped:         c.txDropped.Load(),
		PinnedBytes:       m.pin.bytes.Load(),
		PinnedBytesPeak:   m.pin.peak.Load(),
		PinnedDescs:       m.pin.descs.Load(),
		PinLimitBytes:     m.pin.limit.Bytes,
		PinLimitDescs:     uint64(m.pin.limit.Descs),
		PostRxRefused:     m.pin.refusedBuf.Load(),
		HeadroomFallbacks: c.fallbacks.Load(),
		Decisions:         map[string]uint64{},
	}
	for k := range c.kinds {
		s.Decisions[Kind(k).String()] = c.kinds[k].Load()
	}
	for r := Reason(1); r < numReasons; r++ {
		if v := c.reasons[r].Load(); v != 0 {
			if s.FallbackReasons == nil {
				s.FallbackReasons = map[string]uint64{}
			}
			s.FallbackReasons[r.String()] = v
		}
	}
	return s
}
