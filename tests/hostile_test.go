package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/govmm/govmm/tests/harness"
)

// hostileGuestLib is the shared part of the hostile guests: with its driver
// unbound, the guest programs the NIC through /dev/mem with values no
// driver writes, while the host keeps sending it frames; then it binds the
// driver again and the network must work. busybox devmem reaches the BAR
// (MMIO; the kernel refuses /dev/mem access to RAM, so ring contents stay
// the unit tests' and fuzzers' business). "HOSTILE:" lines cue the host,
// which measures govmm's memory around the attack.
const hostileGuestLib = `H=10.77.2.1
waitping() { i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done; }
waitping
echo "RESULT: before $(ping -c 3 -i 0.2 -W 2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
dev=
for d in /sys/bus/pci/devices/*; do
	case "$(cat $d/vendor):$(cat $d/device)" in $ID) dev=$d ;; esac
done
slot=${dev##*/}
drv=$(basename "$(readlink $dev/driver)")
echo "RESULT: driver $drv"
B=$(( $(head -1 $dev/resource | cut -d' ' -f1) ))
a() { printf 0x%x $((B + $1)); }
w() { devmem $(a $1) $2 $3; }
r() { devmem $(a $1) $2; }
# storm OFF WIDTH N: N writes of 0 to one register, back to back.
storm() { /storm writes $(a $1) $2 $3; }
echo $slot >/sys/bus/pci/drivers/$drv/unbind
echo "HOSTILE: begin"
sleep 3
attack
echo "HOSTILE: end"
sleep 3
echo $slot >/sys/bus/pci/drivers/$drv/bind
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip addr add 10.77.2.2/24 dev eth0; ip link set eth0 up
waitping
echo "RESULT: after $(ping -c 5 -i 0.2 -W 2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
`

// hostileVirtio attacks the virtio-net common configuration (virtio 1.2
// §4.1.4.3): doorbells before DRIVER_OK, a queue size that is not a power
// of two, rings that wrap past 2^64, sit on the IOAPIC or lie past RAM, a
// doorbell storm on them, and resets in between.
const hostileVirtio = `#!/bin/sh
ID=0x1af4:0x1041
attack() {
	storm 0x3000 16 500 # doorbells with no driver
	w 0x14 8 3          # ACKNOWLEDGE | DRIVER
	w 0x08 32 1; w 0x0c 32 1 # VERSION_1
	w 0x08 32 0; w 0x0c 32 0xffffffff # every low feature bit, offered or not
	w 0x14 8 0xb        # FEATURES_OK
	echo "RESULT: features-ok-status $(r 0x14 8)"
	w 0x14 8 0
	w 0x14 8 3; w 0x08 32 1; w 0x0c 32 1; w 0x08 32 0; w 0x0c 32 0x20; w 0x14 8 0xb
	w 0x16 16 0; w 0x18 16 0x7fff # queue 0: size not a power of two
	echo "RESULT: queue-size-readback $(r 0x18 16)"
	w 0x18 16 256
	w 0x20 32 0xfffff000; w 0x24 32 0xffffffff # descriptors wrap past 2^64
	w 0x28 32 0xfec00000; w 0x2c 32 0          # avail ring on the IOAPIC
	w 0x30 32 0; w 0x34 32 0x400               # used ring at 4 TiB, past RAM
	w 0x1c 16 1
	w 0x16 16 1; w 0x18 16 256; w 0x20 32 0; w 0x24 32 0x10000; w 0x1c 16 1 # queue 1 past RAM
	w 0x14 8 0xf        # DRIVER_OK
	storm 0x3000 16 500
	storm 0x3004 16 500
	echo "RESULT: status-after-storm $(r 0x14 8)"
	w 0x14 8 0          # reset in the middle of it
	echo "RESULT: status-after-reset $(r 0x14 8)"
	storm 0x3000 16 200
}
` + hostileGuestLib

// hostileIxgbe attacks the guest-visible 82599's registers: a read-only
// register written, receive and transmit rings on MMIO and past the end of
// the address space, tails beyond the ring, a device reset in the middle
// of receive traffic.
const hostileIxgbe = `#!/bin/sh
ID=0x8086:0x10f7
attack() {
	s=$(r 0x8 32); w 0x8 32 0xffffffff # STATUS is read-only
	echo "RESULT: status-unchanged $([ "$(r 0x8 32)" = "$s" ] && echo 1 || echo 0)"
	w 0x1000 32 0xfec00000; w 0x1004 32 0 # RDBAL/RDBAH: the IOAPIC
	w 0x1008 32 0x1000; w 0x1014 32 0x02000002 # RDLEN 256, SRRCTL advanced 2 KiB
	w 0x1028 32 0x02000000 # RXDCTL.ENABLE
	w 0x1018 32 0xffff     # RDT far beyond RDLEN
	w 0x3000 32 1          # RXCTRL.RXEN: frames from the host now meet this ring
	sleep 2
	w 0x1004 32 0xffffffff; w 0x1018 32 200 # the ring at the top of the address space
	sleep 2
	w 0x6000 32 0xfffff000; w 0x6004 32 0xffffffff; w 0x6008 32 0x1000 # TDBA wraps past 2^64
	w 0x6028 32 0x02000000; w 0x4a80 32 1 # TXDCTL.ENABLE, DMATXCTL.TE
	w 0x6018 32 100        # TDT: go
	storm 0x6018 32 300
	w 0x0 32 0x04000000    # CTRL.RST with receive traffic arriving
	sleep 1
	storm 0x808 32 300     # EICS: interrupt causes with no driver
}
` + hostileGuestLib

// hostileVirtioRing brings virtio-net up on rings in a guest program's own
// memory with the driver unbound, then breaks the transmit ring (an avail
// idx far ahead of it): the device must set DEVICE_NEEDS_RESET, and the
// driver, bound again (which resets the device), must work.
const hostileVirtioRing = `#!/bin/sh
ID=0x1af4:0x1041
attack() {
	/storm breakring $(printf 0x%x $B) -
}
` + hostileGuestLib

// stormVirtio rings virtio-net's transmit doorbell, then masks and
// unmasks an MSI-X vector, each in a tight loop for 5 s, with the driver
// bound (tests/guestprog/storm, through /dev/mem: iomem=relaxed lets it
// map a BAR a driver holds). "HOSTILE: storm-*" lines cue the host to
// sample govmm's CPU time.
const stormVirtio = `#!/bin/sh
H=10.77.2.1
waitping() { i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done; }
waitping
echo "RESULT: before $(ping -c 3 -i 0.2 -W 2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor):$(cat $d/device)" = 0x1af4:0x1041 ] && dev=$d
done
B=$(( $(head -1 $dev/resource | cut -d' ' -f1) ))
echo "HOSTILE: storm-begin doorbell"
/storm doorbell $(printf 0x%x $((B + 0x3004))) 5
echo "HOSTILE: storm-end doorbell"
echo "HOSTILE: storm-begin msix"
/storm msix ${dev##*/} 5
echo "HOSTILE: storm-end msix"
waitping
echo "RESULT: after $(ping -c 5 -i 0.2 -W 2 $H | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')"
`

// stormHost boots govmm and measures, over each storm, the CPU time of
// govmm's device threads (every thread but the vcpuN ones) and of its
// vCPU thread, as a share of one core (/proc/PID/task/*/stat).
const stormHost = `( "$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tapx,mac=` + guestMAC + ` --stats "$WORK/stats.json" --cmdline "console=ttyS0 panic=-1 quiet iomem=relaxed govmm.ip=10.77.2.2/24 govmm.run=/storm.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	# ticks vcpu|device: CPU time (1/100 s) of govmm's vCPU or other threads.
	ticks() { cat /proc/$(pidof govmm)/task/*/stat 2>/dev/null | awk -v want=$1 '{ v = ($2 ~ /^\(vcpu/); if ((want == "vcpu") == v) s += $14 + $15 } END { print s + 0 }'; }
	case $line in
	*"GOVMM-GUEST: init"*)
		/sbin/ip addr add 10.77.2.1/24 dev tapx 2>/dev/null; /sbin/ip link set tapx up ;;
	*"HOSTILE: storm-begin "*)
		s=$(printf '%s' "${line##* }" | tr -d '\r')
		echo "$(ticks device) $(ticks vcpu) $(cut -d' ' -f1 /proc/uptime)" >"$WORK/storm-$s" ;;
	*"HOSTILE: storm-end "*)
		s=$(printf '%s' "${line##* }" | tr -d '\r')
		echo "$(cat "$WORK/storm-$s") $(ticks device) $(ticks vcpu) $(cut -d' ' -f1 /proc/uptime)" |
			awk -v s=$s '{ t = $6 - $3; printf "RESULT: storm-%s-device-pct %.1f\nRESULT: storm-%s-vcpu-pct %.1f\n", s, ($4 - $1) / t, s, ($5 - $2) / t }' ;;
	esac
done
echo "RESULT: vmm-exit $(cat "$WORK/rc")"
for k in spurious_kicks kick_throttles; do
	echo "RESULT: stats-$k $(sed -n "s/.*\"$k\": \([0-9]*\).*/\1/p" "$WORK/stats.json" | head -1)"
done
`

// stormBinary builds tests/guestprog/storm for the guest.
func stormBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "storm")
	cmd := exec.Command("go", "build", "-o", out, "./guestprog/storm")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the storm program: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostileHost boots govmm with vmmOpts on a tap it creates, pings the
// guest throughout (frames for the rings the guest broke), and samples
// govmm's VmRSS every half second: at the start and end of the attack and
// at its peak.
func hostileHost(vmmOpts string) string {
	return `( "$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tapx,mac=` + guestMAC + vmmOpts + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=10.77.2.2/24 govmm.run=/hostile.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	rss() { awk '/VmRSS/{print $2}' /proc/$(pidof govmm)/status; }
	case $line in
	*"GOVMM-GUEST: init"*) # govmm made the tap by now
		/sbin/ip addr add 10.77.2.1/24 dev tapx 2>/dev/null; /sbin/ip link set tapx up ;;
	*"HOSTILE: begin"*)
		ping -i 0.1 10.77.2.2 >/dev/null 2>&1 &
		echo $! >"$WORK/ping"
		( while sleep 0.5; do rss >>"$WORK/rss"; done ) &
		echo $! >"$WORK/sampler"
		echo "RESULT: rss-begin-kb $(rss)" ;;
	*"HOSTILE: end"*)
		echo "RESULT: rss-end-kb $(rss)"
		kill $(cat "$WORK/sampler")
		echo "RESULT: rss-peak-kb $(sort -n "$WORK/rss" | tail -1)" ;;
	*"RESULT: after"*)
		kill $(cat "$WORK/ping") ;;
	esac
done
echo "RESULT: vmm-exit $(cat "$WORK/rc")"
`
}

// TestHostileGuest: a guest that unbinds its NIC driver and programs the
// device with hostile values through /dev/mem, while frames keep arriving,
// for virtio-net (on the default zero-copy path) and the guest-visible
// 82599. govmm must keep running with its memory flat, and the network
// must work again once the driver is bound.
func TestHostileGuest(t *testing.T) {
	env := harness.Setup(t)
	storm := stormBinary(t)
	res := env.Run(t,
		harness.Scenario{Name: "hostile-virtio", HostScript: hostileHost(""), GuestFiles: map[string]string{"/hostile.sh": hostileVirtio, "/storm": storm},
			Timeout: 6 * time.Minute, Network: true},
		harness.Scenario{Name: "hostile-ixgbe", HostScript: hostileHost(",model=ixgbe"), GuestFiles: map[string]string{"/hostile.sh": hostileIxgbe, "/storm": storm},
			Timeout: 6 * time.Minute, Network: true},
		harness.Scenario{Name: "storm-virtio", HostScript: stormHost, GuestFiles: map[string]string{"/storm.sh": stormVirtio, "/storm": storm},
			Timeout: 6 * time.Minute, Network: true},
		harness.Scenario{Name: "hostile-virtio-ring", HostScript: hostileHost(""), GuestFiles: map[string]string{"/hostile.sh": hostileVirtioRing, "/storm": storm},
			Timeout: 6 * time.Minute, Network: true},
	)
	checkStorms(t, res[2])
	checkBrokenRing(t, res[3])
	res = res[:2]
	for _, r := range res {
		v := r.Values
		assert.False(t, r.TimedOut, r.Name)
		assert.Equal(t, "3", v["before"], "%s: network before the attack", r.Name)
		assert.Positive(t, atoi(v["rss-begin-kb"]), "%s: govmm's RSS was sampled", r.Name)
		// Flat: the attack may not make govmm grow by more than a little
		// (Go heap noise, a first touch of scratch buffers).
		assert.Less(t, atoi(v["rss-peak-kb"])-atoi(v["rss-begin-kb"]), 8<<10, "%s: govmm's memory during the attack", r.Name)
		assert.Equal(t, "5", v["after"], "%s: network after the driver is bound again", r.Name)
		assert.Equal(t, "0", v["vmm-exit"], "%s: govmm ran to the guest's poweroff", r.Name)
		assert.NotContains(t, r.Output, "panic:", r.Name)
		t.Logf("%s: govmm VmRSS %s kB at the start of the attack, %s kB at its end, %s kB peak", r.Name, v["rss-begin-kb"], v["rss-end-kb"], v["rss-peak-kb"])
	}
	virtio := res[0].Values
	assert.Equal(t, "virtio-pci", virtio["driver"])
	assert.Equal(t, "0x03", virtio["features-ok-status"], "FEATURES_OK refused for features the device did not offer")
	st, err := strconv.ParseUint(virtio["status-after-storm"], 0, 8)
	assert.NoError(t, err)
	assert.NotZero(t, st&0x40, "rings outside RAM: DEVICE_NEEDS_RESET (status %s)", virtio["status-after-storm"])
	assert.Equal(t, "0x00", virtio["status-after-reset"], "a reset clears everything, DEVICE_NEEDS_RESET included")
	t.Logf("virtio: FEATURES_OK with unoffered features -> status %s; queue_size 0x7fff reads back %s; status after the storm %s",
		virtio["features-ok-status"], virtio["queue-size-readback"], virtio["status-after-storm"])
	ixgbe := res[1].Values
	assert.Equal(t, "ixgbe", ixgbe["driver"])
	assert.Equal(t, "1", ixgbe["status-unchanged"], "STATUS is read-only")
}

// stormDeviceBound is the most of one core govmm's device threads may
// spend while a guest storms one register.
const stormDeviceBound = 50.0

// checkStorms: during each storm govmm's device threads stay under
// stormDeviceBound percent of a core (the guest's own vCPU thread is the
// guest's time, reported), and the network works afterwards.
func checkStorms(t *testing.T, r harness.Result) {
	t.Helper()
	v := r.Values
	assert.False(t, r.TimedOut, r.Name)
	assert.Equal(t, "3", v["before"], "%s: network before the storms", r.Name)
	for _, s := range []string{"doorbell", "msix"} {
		dev, err := strconv.ParseFloat(v["storm-"+s+"-device-pct"], 64)
		if assert.NoError(t, err, "%s: storm-%s-device-pct %q", r.Name, s, v["storm-"+s+"-device-pct"]) {
			assert.LessOrEqual(t, dev, stormDeviceBound, "%s: govmm's device threads during the %s storm (%% of a core)", r.Name, s)
		}
		assert.Positive(t, atoi(v["storm-"+s+"-writes"]), "%s: the %s storm ran", r.Name, s)
		t.Logf("%s: %s storm: %s writes in 5 s; govmm device threads %s%% of a core, vCPU thread %s%%",
			r.Name, s, v["storm-"+s+"-writes"], v["storm-"+s+"-device-pct"], v["storm-"+s+"-vcpu-pct"])
	}
	t.Logf("%s: spurious kicks %s, doorbell throttles %s", r.Name, v["stats-spurious_kicks"], v["stats-kick_throttles"])
	assert.Equal(t, "5", v["after"], "%s: network after the storms", r.Name)
	assert.Equal(t, "0", v["vmm-exit"], "%s: govmm ran to the guest's poweroff", r.Name)
}

// checkBrokenRing: the ring the guest broke sets DEVICE_NEEDS_RESET (one
// log line, not one per frame), and rebinding the driver recovers.
func checkBrokenRing(t *testing.T, r harness.Result) {
	t.Helper()
	v := r.Values
	assert.False(t, r.TimedOut, r.Name)
	assert.Equal(t, "0xf", v["breakring-up-status"], "%s: the device came up on the program's rings", r.Name)
	st, err := strconv.ParseUint(v["breakring-status"], 0, 8)
	if assert.NoError(t, err, "%s: breakring-status %q", r.Name, v["breakring-status"]) {
		assert.NotZero(t, st&0x40, "%s: DEVICE_NEEDS_RESET after the broken ring (status %s)", r.Name, v["breakring-status"])
	}
	assert.Equal(t, 1, strings.Count(r.Output, "transmit queue broken by the driver; device needs reset"), "%s: logged once", r.Name)
	assert.Equal(t, "5", v["after"], "%s: network after the driver is bound again", r.Name)
	assert.Equal(t, "0", v["vmm-exit"], "%s: govmm ran to the guest's poweroff", r.Name)
	t.Logf("%s: status %s after DRIVER_OK, %s after the broken ring; network after rebinding: %s of 5", r.Name, v["breakring-up-status"], v["breakring-status"], v["after"])
}
