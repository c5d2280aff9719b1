package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/govmm/govmm/tests/harness"
)

// xdpLink is the far end for an AF_XDP guest: a veth pair in the test
// host, xv0 for govmm's socket and xv1 in a namespace of its own with the
// host address, where the servers run.
const xdpLink = `/sbin/ip netns add far
/sbin/ip link add xv0 type veth peer name xv1
/sbin/ip link set xv1 netns far
/sbin/ip -n far addr add ` + hostIP + `/24 dev xv1
/sbin/ip -n far link set xv1 up
# A veth sends its peer frames with checksums left to "hardware" and as
# GSO frames; XDP on the peer sees them as they are, and a guest behind
# AF_XDP would get TCP segments with no valid checksum. A real NIC's frames
# come off the wire complete: make the veth do the same.
/sbin/ip netns exec far ethtool -K xv1 tx off tso off gso off >/dev/null
/sbin/ip -n far link set lo up
/sbin/ip link set xv0 up
`

// TestAFXDP runs virtio-net on an AF_XDP socket whose UMEM is guest RAM
// (--net xdp=), on a veth pair in the test host: ping, iperf3 both ways
// and 64 MiB each way with sha256 checks. veth has native XDP but no
// AF_XDP zero-copy, so the socket is in copy mode: the kernel copies each
// frame straight into the guest's buffer (no bounce buffer, no VMM copy).
func TestAFXDP(t *testing.T) {
	env := harness.Setup(t)
	vmm := `"$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --stats "$WORK/stats.json" ` +
		`--net xdp=xv0,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/net.sh"`
	res := env.Run(t, harness.Scenario{Name: "afxdp", HostScript: netHostWith(xdpLink, "/sbin/ip netns exec far", vmm, 64<<20),
		GuestFiles: map[string]string{"/net.sh": netGuest}, Timeout: 8 * time.Minute, Network: true})
	r := res[0]
	checkNet(t, r)
	v := r.Values
	assert.Contains(t, r.Output, "model afxdp", "the NIC model")
	assert.Contains(t, r.Output, "xdp-mode", "the socket mode is logged")
	assert.GreaterOrEqual(t, atoi(v["stats-rx_zerocopy_frames"]), 1000, "frames written by the kernel straight into guest buffers")
	assert.Equal(t, "0", v["stats-rx_copied_bytes"], "mergeable buffers: none through govmm's bounce chunks")
	assert.Positive(t, atoi(v["stats-tx_zerocopy_frames"]), "frames sent from guest memory as the guest wrote them")
	t.Logf("afxdp stats: %v", v)
}
