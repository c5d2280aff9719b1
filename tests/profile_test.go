package tests

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/tests/harness"
)

// profileGuest serves two iperf3 runs, then the guest powers off.
const profileGuest = `#!/bin/sh
iperf3 -s -1 >/dev/null
iperf3 -s -1 >/dev/null
# The host reads KVM's counters after the last run: a VM already torn
# down would have taken its share of them away.
sleep 3
`

// kvmStats are KVM's VM-wide counters (debugfs) that say what a VMM's
// device model costs the guest: every exit is a round trip through the
// host kernel (and, nested, through L0).
var kvmStats = []string{"exits", "io_exits", "mmio_exits", "halt_exits", "irq_injections", "irq_exits", "irq_window_exits", "insn_emulation"}

// sysStats are profileHost's sysnap columns.
var sysStats = []string{"host_timer", "host_resched_ipi", "host_call_ipi", "host_ctxsw"}

// profileHost boots a VMM in the background, then drives iperf3 from the
// host side, one direction at a time, reading KVM's exit counters around
// each run.
func profileHost(vmm string) string {
	return `/sbin/ip tuntap add dev tap0 mode tap
/sbin/ip addr add ` + hostIP + `/24 dev tap0
/sbin/ip link set tap0 up
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
K=/sys/kernel/debug/kvm
snap() { for k in ` + strings.Join(kvmStats, " ") + `; do printf '%s ' "$(cat $K/$k 2>/dev/null || echo 0)"; done; }
# The host's own interrupts (timer, rescheduling and function-call IPIs,
# summed over its CPUs) and context switches: where the guest's
# external-interrupt exits come from.
sysnap() { awk '$1=="LOC:"||$1=="RES:"||$1=="CAL:"{s=0; for(i=2;i<=NF&&$i~/^[0-9]+$/;i++) s+=$i; printf "%s ", s}' /proc/interrupts; awk '$1=="ctxt"{printf "%s ", $2}' /proc/stat; }
( ` + vmm + `; echo $? >"$WORK/rc" ) &
i=0; while ! ping -c1 -W1 ` + guestIP + ` >/dev/null 2>&1 && [ $i -lt 60 ]; do i=$((i+1)); done
sleep 1
# What the VMM costs while the guest idles (its iperf3 server waiting): its
# threads' context switches (wake-ups) and the guest's exits, per second of 5.
wakes() { cat /proc/$(pidof govmm qemu-system-x86_64 | cut -d' ' -f1)/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END{print s+0}'; }
w0=$(wakes); e0=$(cat $K/exits 2>/dev/null || echo 0); sleep 5; w1=$(wakes); e1=$(cat $K/exits 2>/dev/null || echo 0)
echo "RESULT: idle wakeups/s $(( (w1 - w0) / 5 )) exits/s $(( (e1 - e0) / 5 ))"
` + exitTraceScript + `
# The guest starts its second server only after the first run ended.
run() { d=$1; shift; [ "$TRACEWIN" = 1 ] && (sleep 3; tracewin $d >"$WORK/xtrace-$d" 2>&1) &
	for try in 1 2 3 4 5 6 7 8 9 10; do out=$(iperf3 -c ` + guestIP + ` -t 8 -f m "$@" 2>&1) && break; sleep 0.5; done
	wait; echo "$out" | awk '/receiver/{print $(NF-2)}'; }
# govmm's state dump (SIGUSR1) after each run counts the interrupts it sent per queue.
s0=$(snap); y0=$(sysnap)
echo "RESULT: tcp-rx $(run rx)"
s1=$(snap); y1=$(sysnap)
killall -USR1 govmm 2>/dev/null; sleep 0.5
echo "RESULT: tcp-tx $(run tx -R)"
s2=$(snap); y2=$(sysnap)
killall -USR1 govmm 2>/dev/null; sleep 0.5
echo "RESULT: kvm-rx $s0 / $s1"
echo "RESULT: kvm-tx $s1 / $s2"
echo "RESULT: sys-rx $y0 / $y1"
echo "RESULT: sys-tx $y1 / $y2"
i=0; while [ ! -f "$WORK/rc" ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
cat "$WORK"/xtrace-* 2>/dev/null
echo "RESULT: vmm-exit $(cat "$WORK/rc" 2>/dev/null)"
if [ -f "$WORK/cpu.pprof" ]; then echo PPROF-BEGIN; base64 "$WORK/cpu.pprof"; echo PPROF-END; fi
`
}

// TestProfile is `make profile`: in one test-host boot, govmm (both
// receive paths, with --cpuprofile) and QEMU virtio-net vhost=off under
// iperf3 load each way. It prints KVM exits and interrupt injections per
// MB moved, side by side, and writes govmm's CPU profiles to
// .cache/profile-<path>.pprof (back through the console, base64). Not
// part of `make test`.
func TestProfile(t *testing.T) {
	if os.Getenv("GOVMM_PROFILE") != "1" {
		t.Skip("set GOVMM_PROFILE=1 (make profile)")
	}
	env := harness.Setup(t).Defaults() // govmm as a user runs it: no pinning
	files := map[string]string{"/profile.sh": profileGuest}
	cmdline := `"console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/profile.sh"`
	var sc []harness.Scenario
	for _, path := range []string{"zerocopy", "copy"} {
		vmm := `"$GOVMM" run --no-reboot --cpuprofile "$WORK/cpu.pprof" --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M ` +
			`--net tap=tap0,mac=` + guestMAC + `,path=` + path + ` --cmdline ` + cmdline
		sc = append(sc, harness.Scenario{Name: "profile-" + path, HostScript: profileHost(vmm), GuestFiles: files, Timeout: 3 * time.Minute, Network: true, GuestMustFinish: true})
	}
	if env.Mode == harness.Nested {
		qemu := qemuCmd(cmdline, ",vhost=off", "virtio-net-pci")
		sc = append(sc, harness.Scenario{Name: "qemu-vhost-off", HostScript: profileHost(qemu), GuestFiles: files, Timeout: 3 * time.Minute, Network: true, GuestMustFinish: true, Reference: true})
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-18s %-4s %9s   per MB moved: %s\n", "vmm", "dir", "Mbit/s", strings.Join(kvmStats, " "))
	for _, r := range env.Run(t, sc...) {
		assert.False(t, r.TimedOut, r.Name)
		for _, dir := range []string{"rx", "tx"} {
			mbps := r.Values["tcp-"+dir]
			fmt.Fprintf(&tb, "%-18s %-4s %9s  ", r.Name, dir, mbps)
			mb := num(mbps) // 8 s at N Mbit/s moves N MB
			before, after, ok := strings.Cut(r.Values["kvm-"+dir], "/")
			b, a := strings.Fields(before), strings.Fields(after)
			if !ok || len(b) != len(kvmStats) || len(a) != len(kvmStats) || mb == 0 {
				fmt.Fprintf(&tb, " (no counters)\n")
				continue
			}
			for i := range kvmStats {
				fmt.Fprintf(&tb, " %s=%.0f", kvmStats[i], (num(a[i])-num(b[i]))/mb)
			}
			tb.WriteString("\n")
		}
		_, body, ok := strings.Cut(r.Output, "PPROF-BEGIN")
		if !ok {
			continue
		}
		body, _, ok = strings.Cut(body, "PPROF-END")
		require.True(t, ok, "%s: truncated profile", r.Name)
		prof, err := base64.StdEncoding.DecodeString(strings.Map(func(c rune) rune {
			if strings.ContainsRune(" \r\n\t", c) {
				return -1
			}
			return c
		}, body))
		require.NoError(t, err, r.Name)
		out := filepath.Join(env.Cache, r.Name+".pprof")
		require.NoError(t, os.WriteFile(out, prof, 0o644))
		t.Logf("wrote %s (%d bytes): go tool pprof -top %s", out, len(prof), out)
	}
	fmt.Print(tb.String())
	t.Log("\n" + tb.String())
}
