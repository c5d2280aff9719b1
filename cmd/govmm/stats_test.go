package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine"
)

func TestStatsFileIsAlwaysCompleteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	var n atomic.Uint64
	w := startStats(path, func() []machine.NetStats {
		return []machine.NetStats{{Name: "net0", RxFrames: n.Add(1), RxZeroCopyFrames: 5}}
	})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var doc map[string]any
			require.NoError(t, json.Unmarshal(b, &doc), "a reader must never see a partial file")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, w.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc struct {
		NICs []map[string]any `json:"nics"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	require.Len(t, doc.NICs, 1)
	for _, k := range []string{"rx_frames", "rx_zerocopy_frames", "rx_copied_frames", "rx_copied_bytes", "rx_dropped_no_buffer",
		"tx_frames", "tx_zerocopy_frames", "tx_copied_bytes", "pinned_bytes", "pinned_bytes_peak", "pin_limit_bytes", "headroom_fallbacks"} {
		require.Contains(t, doc.NICs[0], k)
	}
	require.Equal(t, float64(n.Load()), doc.NICs[0]["rx_frames"], "the exit write has the final counters")
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".govmm-stats-*"))
	require.Empty(t, matches, "no temporary files left behind")
}
