package tests

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/tests/harness"
)

// timedBoot returns a host script fragment that runs cmd (a VMM command line
// booting the test guest), prints its console, reports the wall time from
// VMM start to the guest's init marker as "RESULT: <key>-init-secs S", and
// the VMM's exit status as "RESULT: <key>-exit N". cases are more arms of
// the shell case statement that sees each console line.
func timedBoot(key, cmd string, cases ...string) string {
	return fmt.Sprintf(`start=$(cut -d' ' -f1 /proc/uptime)
( %[2]s; echo $? >"$WORK/%[1]s.rc" ) 2>&1 | while IFS= read -r line; do
	printf '%%s\n' "$line"
	case $line in
	*"GOVMM-GUEST: init"*)
		now=$(cut -d' ' -f1 /proc/uptime)
		echo "RESULT: %[1]s-init-secs $(awk -v a="$start" -v b="$now" 'BEGIN{printf "%%.2f", b-a}')" ;;
	*"GOVMM-GUEST: end"*)
		# Guests in the nested host occasionally hang in their own
		# shutdown after heavy traffic; do not let that eat the timeout.
		p=$(pidof govmm qemu-system-x86_64)
		( sleep 30; kill $p 2>/dev/null && echo "RESULT: %[1]s-killed-after-end 1" ) & ;;
	%[3]s
	esac
done
echo "RESULT: %[1]s-exit $(cat "$WORK/%[1]s.rc")"
`, key, cmd, strings.Join(cases, "\n\t"))
}

const guestFacts = `#!/bin/sh
echo "RESULT: cpus $(grep -c ^processor /proc/cpuinfo)"
echo "RESULT: memtotal-kb $(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
echo "RESULT: clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "RESULT: acpi $([ -d /sys/firmware/acpi/tables ] && echo yes || echo no)"
`

// TestBoot boots the stock Debian kernel under govmm: the guest reaches init
// with the CPUs and memory asked for, and `poweroff -f` (and `reboot -f`
// under --no-reboot) end govmm with exit status 0; TestReboot covers a
// guest that reboots. QEMU boots the same kernel and initramfs in
// the same test host, for the boot-time comparison.
func TestBoot(t *testing.T) {
	env := harness.Setup(t)
	govmm := `"$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY"`
	scenarios := []harness.Scenario{
		{
			Name:       "poweroff-smp",
			HostScript: timedBoot("govmm", govmm+` --cpus 2 --mem 256M --cmdline "console=ttyS0 panic=-1 quiet govmm.run=/facts.sh"`),
			GuestFiles: map[string]string{"/facts.sh": guestFacts},
			Timeout:    2 * time.Minute,
		},
		{
			Name:       "reboot",
			HostScript: timedBoot("govmm", govmm+` --mem 128M --cmdline "console=ttyS0 panic=-1 quiet govmm.end=reboot"`),
			Timeout:    2 * time.Minute,
		},
	}
	if env.Mode == harness.Nested {
		scenarios = append(scenarios, harness.Scenario{
			Name: "qemu-baseline",
			HostScript: `cat "$INITRD" "$OVERLAY" >"$WORK/initrd"
` + timedBoot("qemu", `qemu-system-x86_64 -enable-kvm -cpu host -m 256 -smp 2 -nographic -no-reboot -nodefaults -serial stdio -kernel "$KERNEL" -initrd "$WORK/initrd" -append "console=ttyS0 panic=-1 quiet govmm.end=poweroff"`),
			Timeout:   2 * time.Minute,
			Reference: true,
		})
	}
	res := env.Run(t, scenarios...)

	boot := res[0]
	require.False(t, boot.TimedOut, "guest did not power off in time")
	assert.Equal(t, "0", boot.Values["govmm-exit"], "poweroff -f must end govmm with status 0")
	assert.Contains(t, boot.Output, "GOVMM-GUEST: init")
	assert.Contains(t, boot.Output, "GOVMM-GUEST: end poweroff")
	assert.Equal(t, "2", boot.Values["cpus"], "--cpus 2 must bring 2 CPUs online")
	memKB, err := strconv.Atoi(boot.Values["memtotal-kb"])
	require.NoError(t, err, "guest did not report MemTotal")
	// MemTotal excludes the kernel image and reserved areas: expect 200-256 MiB.
	assert.Greater(t, memKB, 200*1024)
	assert.LessOrEqual(t, memKB, 256*1024)
	assert.Equal(t, "kvm-clock", boot.Values["clocksource"])
	assert.Equal(t, "yes", boot.Values["acpi"])

	rb := res[1]
	require.False(t, rb.TimedOut, "guest did not reboot in time")
	assert.Contains(t, rb.Output, "GOVMM-GUEST: end reboot")
	assert.Equal(t, "0", rb.Values["govmm-exit"], "with --no-reboot, reboot -f must end govmm with status 0")

	t.Logf("boot to init: govmm %ss (2 vCPUs, 256M)", boot.Values["govmm-init-secs"])
	if len(res) > 2 {
		t.Logf("boot to init: qemu %ss (same kernel, initramfs, vCPUs and memory, same test host)", res[2].Values["qemu-init-secs"])
	}
}
