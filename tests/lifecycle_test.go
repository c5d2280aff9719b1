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
# The host deletes the tap under govmm: govmm reports it and runs on.
echo "LIFE: tap-delete"
sleep 3
ping -c 3 -W 1 $H >/dev/null 2>&1 # sent into a tap that is gone: dropped
echo "RESULT: alive-after-tap-deleted 1"
echo "LIFE: sigterm"
sleep 600
`

// TestLifecycle: the host side going down under load, a device reset in
// the middle of traffic, the tap deleted under govmm, and SIGTERM, on the
// default zero-copy path. (TestReboot checks that a tap govmm created is
// removed at exit.)
func TestLifecycle(t *testing.T) {
	env := harness.Setup(t)
	host := `iperf3 -s -D >/dev/null
( "$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --stats "$WORK/stats.json" \
	--net tap=tapl,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/life.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	*"virtio-net active"*)
		/sbin/ip addr add ` + hostIP + `/24 dev tapl 2>/dev/null; /sbin/ip link set tapl up ;;
	*"LIFE: tap-down"*)
		/sbin/ip link set tapl down; sleep 3; /sbin/ip link set tapl up; echo "RESULT: tap-cycled 1" ;;
	*"LIFE: tap-delete"*)
		/sbin/ip link del tapl; echo "RESULT: tap-deleted $?" ;;
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
	assert.Equal(t, "0", v["tap-deleted"], "ip link del of the tap govmm holds")
	assert.Equal(t, "1", v["alive-after-tap-deleted"], "the guest runs on after its tap was deleted")
	assert.Contains(t, r.Output, "receive stopped", "govmm reports the tap is gone")
	assert.Equal(t, "143", v["vmm-exit"], "SIGTERM: exit status 128+15")
	assert.Equal(t, "0", v["tap-left"], "no tap is left behind")
	assert.Greater(t, atoi(v["stats-rx_frames"]), 100, "the stats file is written at exit")
	assert.Contains(t, r.Output, "guest stopped by signal terminated")
}

// rebootGuest: the first boot starts a guest→host iperf3 and resets the
// machine (an emergency restart) in the middle of it; the second boot must find a
// working network. The host tells the guest which boot it is (port 5005).
const rebootGuest = `#!/bin/sh
H=10.77.1.1
i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done
n=$(nc $H 5005)
echo "RESULT: boot$n 1"
if [ "$n" = 1 ]; then
	# Guest→host: with host→guest traffic pouring into the tap at the
	# moment of the reset, the nested test host's own kernel soft-locked in
	# 2 of 5 runs (README "Known problems").
	iperf3 -c $H -p 5211 -t 60 >/dev/null 2>&1 &
	sleep 5
	echo "RESULT: tx-packets-before-reboot $(cat /sys/class/net/eth0/statistics/tx_packets)"
	# An emergency restart (sysrq b), not reboot -f: the device is not shut
	# down by its driver first, so govmm alone must reset it with frames in
	# flight. reboot -f would run device_shutdown, which breaks the virtqueues
	# under a sending iperf3; the guest kernel (Debian 6.1) then spins forever
	# in virtio_net's transmit path when the device had completed more buffers
	# than the driver reclaimed (fixed upstream by 0d0eff39ceb3, "virtio_ring:
	# fix infinite loop in virtnet_poll_cleantx when device is broken"). That
	# soft lockup failed the CI run of e4c8576.
	echo b >/proc/sysrq-trigger
	sleep 60
fi
echo "RESULT: after-reboot $(ping -c 5 -i 0.2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
# One short transfer: TestVirtioNet and TestZeroCopy load the network; every
# extra load phase here is one more chance for the nested host's flakiness.
echo "RESULT: after-reboot-rx-mbps $(iperf3 -c $H -p 5212 -t 3 -R -f m | awk '/receiver/{print $(NF-2)}')"
`

// rebootHost runs rebootGuest on the default zero-copy path with a tap
// govmm creates: the tap, with the address the host gave it, must survive
// the reboot and go when govmm exits. A SIGUSR1 state dump is taken on the
// second boot.
const rebootHost = `iperf3 -s -D -p 5211 >/dev/null
iperf3 -s -D -p 5212 >/dev/null
( busybox nc -l -p 5005 -e echo 1; busybox nc -l -p 5005 -e echo 2 ) &
( "$GOVMM" --log-level info run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tapr,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=10.77.1.2/24 govmm.run=/reboot.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	*"virtio-net active"*)
		/sbin/ip addr add 10.77.1.1/24 dev tapr 2>/dev/null; /sbin/ip link set tapr up ;;
	*"guest reset"*"rebooting"*)
		echo "RESULT: tap-kept-addr $(/sbin/ip -4 addr show tapr 2>/dev/null | grep -c 10.77.1.1)" ;;
	*"RESULT: boot2 1"*)
		kill -USR1 $(pidof govmm) ;;
	esac
done
echo "RESULT: vmm-exit $(cat "$WORK/rc")"
/sbin/ip link show tapr >/dev/null 2>&1 && echo "RESULT: tap-left 1" || echo "RESULT: tap-left 0"
`

// TestReboot: a guest that reboots in the middle of an iperf3 transfer
// comes back up with a working network (a new machine on the same tap).
func TestReboot(t *testing.T) {
	env := harness.Setup(t)
	res := env.Run(t, harness.Scenario{Name: "reboot", HostScript: rebootHost, GuestFiles: map[string]string{"/reboot.sh": rebootGuest},
		Timeout: 6 * time.Minute, Network: true},
		harness.Scenario{Name: "reboot-ixgbe", HostScript: rebootIxgbeHost, GuestFiles: map[string]string{"/reboot.sh": rebootGuest},
			Timeout: 4 * time.Minute, Network: true})
	r := res[0]
	v := r.Values
	assert.False(t, r.TimedOut)
	assert.Equal(t, "1", v["boot1"], "first boot")
	assert.Greater(t, atoi(v["tx-packets-before-reboot"]), 100, "the reset came in the middle of a transfer")
	assert.Contains(t, r.Output, "rebooting, boot 2")
	assert.Equal(t, "1", v["tap-kept-addr"], "the tap govmm created survives the reboot with its address")
	assert.Equal(t, "1", v["boot2"], "second boot")
	assert.Equal(t, "5", v["after-reboot"], "ping after the reboot")
	assert.NotEmpty(t, v["after-reboot-rx-mbps"])
	assert.NotEqual(t, "0.00", v["after-reboot-rx-mbps"])
	assert.Contains(t, r.Output, "govmm: state dump (SIGUSR1)")
	assert.Contains(t, r.Output, "rx: next_avail=")
	assert.Regexp(t, `vcpu0: exits [1-9][0-9]*, last [a-z-]+; rip=0x[0-9a-f]+ rsp=`, r.Output, "the dump reads each vCPU's registers on its own thread")
	assert.Equal(t, "0", v["vmm-exit"])
	assert.Equal(t, "0", v["tap-left"], "the tap govmm created is removed at exit")
	t.Logf("after the reboot: iperf3 host→guest %s Mbit/s", v["after-reboot-rx-mbps"])

	// The guest-visible 82599: the machine reset reaches the model with
	// frames in flight in its rings; the driver of the second boot finds
	// a device that starts from its power-on state.
	r = res[1]
	v = r.Values
	assert.False(t, r.TimedOut)
	assert.Equal(t, "1", v["boot1"], "ixgbe: first boot")
	assert.Greater(t, atoi(v["tx-packets-before-reboot"]), 100, "ixgbe: the reset came in the middle of a transfer")
	assert.Contains(t, r.Output, "rebooting, boot 2")
	assert.Equal(t, "1", v["boot2"], "ixgbe: second boot")
	assert.Equal(t, "5", v["after-reboot"], "ixgbe: ping after the reboot")
	assert.NotEmpty(t, v["after-reboot-rx-mbps"])
	assert.NotEqual(t, "0.00", v["after-reboot-rx-mbps"])
	assert.Equal(t, "0", v["vmm-exit"])
	t.Logf("ixgbe, after the reboot: iperf3 host→guest %s Mbit/s", v["after-reboot-rx-mbps"])
}

// rebootIxgbeHost runs rebootGuest on the guest-visible 82599
// (model=ixgbe) over a tap made beforehand.
const rebootIxgbeHost = `/sbin/ip tuntap add dev tapri mode tap
/sbin/ip addr add 10.77.1.1/24 dev tapri
/sbin/ip link set tapri up
iperf3 -s -D -p 5211 >/dev/null
iperf3 -s -D -p 5212 >/dev/null
( busybox nc -l -p 5005 -e echo 1; busybox nc -l -p 5005 -e echo 2 ) &
"$GOVMM" --log-level info run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tapri,model=ixgbe,mac=` + guestMAC + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=10.77.1.2/24 govmm.run=/reboot.sh"
echo "RESULT: vmm-exit $?"
`
