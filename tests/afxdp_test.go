package tests

import (
	"os"
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
// and a 64 MiB round trip with a sha256 check. veth has native XDP but no
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

// afxdpZeroCopyKernel is the test host kernel for TestAFXDPZeroCopy. Linux
// 6.12 (bookworm-backports) has virtio_net's zero-copy receive code but does
// not yet advertise NETDEV_XDP_ACT_XSK_ZEROCOPY, so a zero-copy bind fails
// with EOPNOTSUPP there (tried); 6.13 completed it. 6.18, the LTS kernel of
// trixie-backports, resolved by guest-images/lib.sh to the series' newest.
const afxdpZeroCopyKernel = "linux-image-6.18-amd64"

// nicPairLink is the far end on the test host's two hub-joined NICs
// (harness.TestHostOptions.NICPair): eth1 goes into namespace far with the
// host address, eth0 carries govmm's AF_XDP socket. Frames eth1 sends are
// written by the outer QEMU's NIC model into the buffers eth0's driver
// posted, which in zero-copy mode are the guest's own.
const nicPairLink = `/sbin/ip netns add far
/sbin/ip link set eth1 netns far
/sbin/ip -n far addr add ` + hostIP + `/24 dev eth1
/sbin/ip -n far link set eth1 up
/sbin/ip -n far link set lo up
/sbin/ip link set eth0 up
echo "RESULT: l1-kernel $(uname -r)"
echo "RESULT: nic-driver $(ethtool -i eth0 | sed -n 's/^driver: //p')"
echo "RESULT: nic-features $(cat /sys/class/net/eth0/device/features)"
`

// TestAFXDPZeroCopy is TestAFXDP on a NIC with AF_XDP zero-copy, the
// 2010 RFC's goal on a real driver: the test host runs Linux 6.12 with two
// virtio-net NICs on one hub of the outer QEMU, govmm binds mode=zerocopy
// on one, and every received frame is written by the NIC (the outer QEMU's
// model) straight into the guest's virtio-net buffer: no copy in the test
// host's kernel and none in govmm.
//
// Opt-in (GOVMM_AFXDP_ZEROCOPY=1, make afxdp-zerocopy): the socket binds
// zero-copy there, but the outer QEMU's emulated SVM reports a stale
// "event being delivered" on the guest's doorbell exits, which Linux 6.18's
// KVM refuses to emulate (KVM_INTERNAL_ERROR_DELIVERY_EV), and the guest
// stops at its first kicks (README, Known problems). It stays runnable for
// a test host that does not have that fault.
func TestAFXDPZeroCopy(t *testing.T) {
	if os.Getenv("GOVMM_AFXDP_ZEROCOPY") != "1" {
		t.Skip("opt-in (GOVMM_AFXDP_ZEROCOPY=1): blocked in the TCG nested host, see the comment and README")
	}
	env := harness.Setup(t)
	host, err := env.WithTestHost(t, harness.TestHostOptions{Kernel: afxdpZeroCopyKernel, NICPair: true})
	if err != nil {
		t.Skipf("no test host with AF_XDP zero-copy: %v", err)
	}
	vmm := `"$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --stats "$WORK/stats.json" ` +
		`--net xdp=eth0,mode=zerocopy,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/net.sh"`
	// The test host kernel's word on the NIC, XDP and the socket, whatever happened.
	vmm = "{ " + vmm + `; rc=$?; dmesg | grep -iE 'virtio|xdp|xsk' | tail -20 | sed 's/^/L1-DMESG: /'; (exit $rc); }`
	res := host.Run(t, harness.Scenario{Name: "afxdp-zerocopy", HostScript: netHostWith(nicPairLink, "/sbin/ip netns exec far", vmm, 64<<20),
		GuestFiles: map[string]string{"/net.sh": netGuest}, Timeout: 8 * time.Minute, Network: true})
	r := res[0]
	v := r.Values
	t.Logf("test host kernel %s, NIC driver %s", v["l1-kernel"], v["nic-driver"])
	checkNet(t, r)
	assert.Contains(t, r.Output, "xdp-mode=zerocopy", "the socket is bound in zero-copy mode (XDP_OPTIONS_ZEROCOPY)")
	assert.GreaterOrEqual(t, atoi(v["stats-rx_zerocopy_frames"]), 1000, "frames the NIC wrote straight into guest buffers")
	assert.Equal(t, "0", v["stats-rx_copied_bytes"], "no frame copied by govmm")
	assert.Positive(t, atoi(v["stats-tx_zerocopy_frames"]), "frames the NIC read from guest memory")
	t.Logf("afxdp zero-copy stats: %v", v)
}
