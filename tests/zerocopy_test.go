package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/govmm/govmm/tests/harness"
)

// ping100 runs inside the guest before the common network checks.
const ping100 = `i=0; while ! ping -c1 -W1 ` + hostIP + ` >/dev/null 2>&1 && [ $i -lt 20 ]; do i=$((i+1)); done
echo "RESULT: ping100-received $(ping -c 100 -i 0.05 -W 2 ` + hostIP + ` | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
`

// randomPings sends 200 pings of random payload sizes (1..8972 bytes: one
// to seven frames each) and counts the unanswered ones.
const randomPings = `lost=0; i=0
while [ $i -lt 200 ]; do
	s=$(( (RANDOM % 8972) + 1 ))
	ping -c1 -W2 -s $s ` + hostIP + ` >/dev/null 2>&1 || { lost=$((lost+1)); echo "lost ping -s $s"; }
	i=$((i+1))
done
echo "RESULT: randping-lost $lost"
`

// TestZeroCopy runs the default --net path: the guest's virtio-net receive
// buffers are registered with the emulated 82599, which writes frames
// straight into them. With mergeable buffers (the Linux default) every
// frame must be zero-copy; without them Linux posts small buffers that the
// NIC's 2 KiB buffer size cannot take, and the stats must say so.
func TestZeroCopy(t *testing.T) {
	env := harness.Setup(t)
	files := map[string]string{"/net.sh": netGuest, "/extra.sh": ping100}
	// The default path also carries the bigger integrity check: a 256 MiB
	// round trip (sha256 at the host) and pings of random sizes, so frames
	// of every length cross the 82599 and the descriptor layout.
	big := map[string]string{"/net.sh": netGuest, "/extra.sh": ping100 + randomPings}
	res := env.Run(t,
		harness.Scenario{Name: "zerocopy-mrg", HostScript: netHostSized(govmmNet(""), 256<<20), GuestFiles: big, Timeout: 14 * time.Minute, Network: true},
		harness.Scenario{Name: "zerocopy-nomrg", HostScript: netHost(govmmNet(",mrg-rxbuf=off")), GuestFiles: files, Timeout: 8 * time.Minute, Network: true},
	)
	for _, r := range res {
		assert.Contains(t, r.Output, "model ixgbe-zerocopy", "%s: the default path is zero-copy", r.Name)
		assert.Equal(t, "100", r.Values["ping100-received"], "%s: ping 100/100", r.Name)
		checkNet(t, r)
		assert.Contains(t, r.Output, "HOST_TSO4", "%s: TSO offered and taken on the zero-copy path", r.Name)
		assert.Positive(t, atoi(r.Values["stats-tx_zerocopy_frames"]), "%s: transmit through the 82599 without copies", r.Name)
		assert.Positive(t, atoi(r.Values["stats-pin_limit_bytes"]), r.Name)
		assert.LessOrEqual(t, atoi(r.Values["stats-pinned_bytes_peak"]), atoi(r.Values["stats-pin_limit_bytes"]), "%s: pinned memory stays under the cap", r.Name)
	}
	mrg, nomrg := res[0].Values, res[1].Values
	assert.Equal(t, "0", mrg["randping-lost"], "pings of random sizes 1..8972 bytes all answered")
	assert.GreaterOrEqual(t, atoi(mrg["stats-rx_zerocopy_frames"]), 100, "mergeable buffers: frames DMA'd straight into guest RAM")
	assert.Equal(t, "0", mrg["stats-rx_copied_bytes"], "mergeable buffers: no payload byte copied by the VMM")
	assert.Positive(t, atoi(nomrg["stats-headroom_fallbacks"]), "small buffers must be reported as headroom fallbacks")
	assert.Positive(t, atoi(nomrg["stats-rx_copied_frames"]), "small buffers take the copy path")
	t.Logf("zero-copy stats: mrg %v", mrg)
	t.Logf("zero-copy stats: nomrg %v", nomrg)
}
