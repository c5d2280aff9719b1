package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/govmm/govmm/tests/harness"
)

// lifeGuest drives the guest side of TestLifecycle; "LIFE:" lines are cues
// for the host script.
const lifeGuest = `#!/bin/sh
H=` + hostIP + `
waitping() { i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done; }
waitping
echo "RESULT: before $(ping -c 5 -i 0.2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
# The host takes the tap down for 3 s under load, then up again.
iperf3 -c $H -t 12 >/dev/null 2>&1 &
sleep 2
echo "LIFE: tap-down"
wait
waitping
echo "RESULT: after-tap-down $(ping -c 5 -i 0.2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
# Reset the device in the middle of a host→guest transfer: the driver
# goes away (virtio reset) and comes back.
iperf3 -c $H -t 10 -R >/dev/null 2>&1 &
sleep 3
rmmod virtio_net && insmod /lib/modules/virtio_net.ko && echo "RESULT: reload ok"
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip addr add ` + guestIP + `/24 dev eth0; ip link set eth0 up
wait
waitping
echo "RESULT: after-reset $(ping -c 5 -i 0.2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
echo "LIFE: sigterm"
sleep 600
`

// TestLifecycle: the host side disappearing under load, a device reset in
// the middle of traffic, and SIGTERM, on the default zero-copy path. govmm
// creates the tap itself, so it must also remove it.
func TestLifecycle(t *testing.T) {
	env := harness.Setup(t)
	host := `iperf3 -s -D >/dev/null
( "$GOVMM" --log-level info run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --stats "$WORK/stats.json" \
	--net tap=tapl,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/life.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	*"virtio-net active"*)
		/sbin/ip addr add ` + hostIP + `/24 dev tapl 2>/dev/null; /sbin/ip link set tapl up ;;
	*"LIFE: tap-down"*)
		/sbin/ip link set tapl down; sleep 3; /sbin/ip link set tapl up; echo "RESULT: tap-cycled 1" ;;
	*"LIFE: sigterm"*)
		kill -TERM $(pidof govmm) ;;
	esac
done
echo "RESULT: vmm-exit $(cat "$WORK/rc")"
/sbin/ip link show tapl >/dev/null 2>&1 && echo "RESULT: tap-left 1" || echo "RESULT: tap-left 0"
[ -s "$WORK/stats.json" ] && echo "RESULT: stats-rx_frames $(sed -n 's/.*"rx_frames": \([0-9]*\).*/\1/p' "$WORK/stats.json" | head -1)"
`
	res := env.Run(t, harness.Scenario{Name: "lifecycle", HostScript: host, GuestFiles: map[string]string{"/life.sh": lifeGuest},
		Timeout: 8 * time.Minute, Network: true})
	r := res[0]
	v := r.Values
	assert.False(t, r.TimedOut)
	assert.Equal(t, "5", v["before"])
	assert.Equal(t, "1", v["tap-cycled"])
	assert.Equal(t, "5", v["after-tap-down"], "traffic resumes after the tap went down and up")
	assert.Equal(t, "ok", v["reload"])
	assert.Equal(t, "5", v["after-reset"], "traffic resumes after a device reset mid-transfer")
	assert.Equal(t, "143", v["vmm-exit"], "SIGTERM: exit status 128+15")
	assert.Equal(t, "0", v["tap-left"], "the tap govmm created is removed")
	assert.Greater(t, atoi(v["stats-rx_frames"]), 100, "the stats file is written at exit")
	assert.Contains(t, r.Output, "guest stopped by signal terminated")
}
