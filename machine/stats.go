package machine

import (
	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp"
	"github.com/govmm/govmm/zerocopy"
)

// NetStats is one NIC's line in the --stats file. "Copied" means the frame
// did not land in the guest buffer by NIC DMA into a registered buffer: on
// the path=copy baseline every received frame is copied into guest memory
// by the host kernel's tap read; on the zero-copy path only headroom
// fallbacks are.
type NetStats struct {
	Name              string `json:"name"`
	Tap               string `json:"tap"`
	Model             string `json:"model"`
	RxFrames          uint64 `json:"rx_frames"`
	RxBytes           uint64 `json:"rx_bytes"`
	RxZeroCopyFrames  uint64 `json:"rx_zerocopy_frames"`
	RxCopiedFrames    uint64 `json:"rx_copied_frames"`
	RxCopiedBytes     uint64 `json:"rx_copied_bytes"`
	RxDroppedNoBuffer uint64 `json:"rx_dropped_no_buffer"`
	RxBadChains       uint64 `json:"rx_bad_chains"`
	TxFrames          uint64 `json:"tx_frames"`
	TxBytes           uint64 `json:"tx_bytes"`
	TxZeroCopyFrames  uint64 `json:"tx_zerocopy_frames"`
	TxCopiedBytes     uint64 `json:"tx_copied_bytes"`
	// TxOffloaded: guest frames whose checksum or TCP segmentation govmm
	// finished in software, making TxSegments wire frames (AF_XDP).
	TxOffloaded       uint64 `json:"tx_offloaded,omitempty"`
	TxSegments        uint64 `json:"tx_segments,omitempty"`
	TxBadChains       uint64 `json:"tx_bad_chains"`
	BrokenQueues      uint64 `json:"broken_queues"`
	SpuriousKicks     uint64 `json:"spurious_kicks"`
	KickThrottles     uint64 `json:"kick_throttles"`
	PinnedBytes       uint64 `json:"pinned_bytes"`
	PinnedBytesPeak   uint64 `json:"pinned_bytes_peak"`
	PinLimitBytes     uint64 `json:"pin_limit_bytes"`
	HeadroomFallbacks uint64 `json:"headroom_fallbacks"`
	// FallbackReasons says why chains were not zero-copy (zero-copy path).
	FallbackReasons map[string]uint64 `json:"fallback_reasons,omitempty"`
}

// Stats returns the NIC's counters.
func (n *NIC) Stats(name string) NetStats {
	if n.ixgbe != nil {
		st := n.ixgbe.Stats()
		return NetStats{Name: name, Tap: n.Config.Tap, Model: n.modelName,
			RxFrames: st.RxFrames, RxBytes: st.RxBytes, TxFrames: st.TxFrames, TxBytes: st.TxBytes,
			RxDroppedNoBuffer: st.RxMissed}
	}
	d := &n.dev.Stats
	s := NetStats{
		Name:          name,
		Tap:           n.Config.Tap,
		Model:         n.modelName,
		RxFrames:      d.RxFrames.Load(),
		RxBytes:       d.RxBytes.Load(),
		RxBadChains:   d.RxBadChains.Load(),
		TxFrames:      d.TxFrames.Load(),
		TxBytes:       d.TxBytes.Load(),
		TxBadChains:   d.TxBadChains.Load(),
		BrokenQueues:  d.BrokenQueues.Load(),
		SpuriousKicks: d.SpuriousKicks.Load(), KickThrottles: d.KickThrottles.Load(),
	}
	if _, ok := n.model.(*zerocopy.Model); ok {
		z := zeroCopyStats(n.models)
		s.RxZeroCopyFrames, s.RxCopiedFrames, s.RxCopiedBytes = z.RxZeroCopyFrames, z.RxCopiedFrames, z.RxCopiedBytes
		s.RxDroppedNoBuffer = z.RxDroppedNoBuffer
		s.TxZeroCopyFrames, s.TxCopiedBytes = z.TxZeroCopyFrames, z.TxCopiedBytes
		s.PinnedBytes, s.PinnedBytesPeak, s.PinLimitBytes = z.PinnedBytes, z.PinnedBytesPeak, z.PinLimitBytes
		s.HeadroomFallbacks = z.HeadroomFallbacks
		s.FallbackReasons = z.FallbackReasons
		return s
	}
	if x, ok := n.model.(*afxdp.Model); ok {
		st := &x.Stats
		s.Tap = "xdp:" + n.Config.XDP
		s.RxZeroCopyFrames, s.RxCopiedFrames, s.RxCopiedBytes = st.RxZeroCopyFrames.Load(), st.RxCopiedFrames.Load(), st.RxCopiedBytes.Load()
		s.RxDroppedNoBuffer = st.RxDropped.Load()
		s.TxZeroCopyFrames, s.TxCopiedBytes = st.TxZeroCopyFrames.Load(), st.TxCopiedBytes.Load()
		s.TxOffloaded, s.TxSegments = st.TxOffloaded.Load(), st.TxSegments.Load()
		s.FallbackReasons = x.FallbackReasons()
		return s
	}
	// The tap baseline: the host kernel copies every frame between the
	// tap's socket buffers and guest memory (readv/writev).
	s.RxCopiedFrames, s.RxCopiedBytes = s.RxFrames, s.RxBytes
	s.TxCopiedBytes = s.TxBytes
	return s
}

// zeroCopyStats adds up the counters of a NIC's zero-copy models (one per
// queue pair).
func zeroCopyStats(models []nic.Model) zerocopy.Stats {
	var t zerocopy.Stats
	for _, m := range models {
		zc, ok := m.(*zerocopy.Model)
		if !ok {
			continue
		}
		z := zc.Stats()
		t.RxZeroCopyFrames += z.RxZeroCopyFrames
		t.RxCopiedFrames += z.RxCopiedFrames
		t.RxCopiedBytes += z.RxCopiedBytes
		t.RxDroppedNoBuffer += z.RxDroppedNoBuffer
		t.TxZeroCopyFrames += z.TxZeroCopyFrames
		t.TxCopiedBytes += z.TxCopiedBytes
		t.PinnedBytes += z.PinnedBytes
		t.PinnedBytesPeak += z.PinnedBytesPeak // peaks of each pair: a bound on the NIC's
		t.PinLimitBytes += z.PinLimitBytes
		t.HeadroomFallbacks += z.HeadroomFallbacks
		for r, v := range z.FallbackReasons {
			if t.FallbackReasons == nil {
				t.FallbackReasons = map[string]uint64{}
			}
			t.FallbackReasons[r] += v
		}
	}
	return t
}
