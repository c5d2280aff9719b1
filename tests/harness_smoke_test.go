package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/tests/harness"
)

// TestHarnessSmoke proves the harness end to end without govmm: the host script runs where scenarios run
// (the nested test host on PVM machines) and its RESULT lines, exit code and guest overlay come back.
func TestHarnessSmoke(t *testing.T) {
	env := harness.Setup(t)
	results := env.Run(t,
		harness.Scenario{
			Name: "host-info",
			HostScript: `uname -r
echo "RESULT: host-kvm $( [ -c /dev/kvm ] && echo yes || echo no )"
for v in GOVMM KERNEL INITRD OVERLAY WORK; do eval "[ -n \"\$$v\" ]" || { echo "missing $v"; exit 1; }; done
[ -s "$KERNEL" ] && [ -s "$INITRD" ] && [ -s "$OVERLAY" ] && echo "RESULT: images present"
# The guest overlay must list the file the test put in it.
gzip -dc "$OVERLAY" | cpio -t 2>/dev/null | grep -q '^etc/smoke.sh$' && echo "RESULT: overlay ok"
# Nested, a test-host kernel error must reach the stream, prefixed (testhost-init).
if [ -w /dev/kmsg ] && [ -n "$(pidof awk)" ]; then
	echo "<3>govmm-harness: kmsg check" >/dev/kmsg
	sleep 1
fi
`,
			GuestFiles: map[string]string{"/etc/smoke.sh": "#!/bin/sh\necho hi\n"},
			Timeout:    30 * time.Second,
		},
		harness.Scenario{
			Name:       "exit-code",
			HostScript: "echo partial; exit 7",
			Timeout:    10 * time.Second,
		},
	)
	require.Len(t, results, 2)

	info := results[0]
	require.False(t, info.TimedOut, info.Output)
	require.Equal(t, 0, info.ExitCode, info.Output)
	assert.Equal(t, "present", info.Values["images"], info.Output)
	assert.Equal(t, "ok", info.Values["overlay"], info.Output)
	if env.Mode == harness.Nested {
		assert.Equal(t, "yes", info.Values["host-kvm"], "the nested test host must offer KVM")
		assert.Contains(t, info.Output, harness.HostKmsgPrefix, "test-host kernel errors must reach the scenario's output")
		assert.Contains(t, info.Output, "govmm-harness: kmsg check")
	}

	assert.Equal(t, 7, results[1].ExitCode)
	assert.Contains(t, results[1].Output, "partial")
}

// TestHarnessNestedGuest boots the L2 guest image under QEMU/KVM inside the test host with a vhost-net tap:
// it checks the test host's KVM, tun/vhost modules and iproute2, and the guest init contract (govmm.ip,
// govmm.run, poweroff). It is also the QEMU baseline that govmm's own scenarios can be compared with.
func TestHarnessNestedGuest(t *testing.T) {
	env := harness.Setup(t)
	if env.Mode != harness.Nested {
		t.Skip("creates a tap device: only inside the isolated nested test host")
	}
	results := env.Run(t, harness.Scenario{
		Name: "qemu-guest",
		HostScript: `set -e
/sbin/ip tuntap add dev tap0 mode tap
/sbin/ip addr add 10.77.0.1/24 dev tap0
/sbin/ip link set tap0 up
cat "$INITRD" "$OVERLAY" >"$WORK/initrd"
qemu-system-x86_64 -enable-kvm -cpu host -m 256 -smp 1 -nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$KERNEL" -initrd "$WORK/initrd" \
	-append "console=ttyS0 panic=-1 quiet govmm.ip=10.77.0.2/24 govmm.run=/ping.sh" \
	-netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=on -device virtio-net-pci,netdev=n0,romfile=
`,
		GuestFiles: map[string]string{"/ping.sh": `#!/bin/sh
ping -c 3 -W 2 10.77.0.1 >/dev/null && echo "RESULT: guest-ping ok"
echo "RESULT: guest-driver $(ethtool -i eth0 | sed -n 's/^driver: //p')"
`},
		Timeout:   90 * time.Second,
		Reference: true,
	})
	require.Len(t, results, 1)
	r := results[0]
	require.False(t, r.TimedOut, r.Output)
	require.Equal(t, 0, r.ExitCode, r.Output)
	assert.Contains(t, r.Output, "GOVMM-GUEST: init ")
	assert.Contains(t, r.Output, "GOVMM-GUEST: run end rc=0")
	assert.Contains(t, r.Output, "GOVMM-GUEST: end poweroff")
	assert.Equal(t, "ok", r.Values["guest-ping"], r.Output)
	assert.Equal(t, "virtio_net", r.Values["guest-driver"], r.Output)
}
