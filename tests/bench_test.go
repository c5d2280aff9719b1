package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/tests/harness"
)

// benchGuest measures from inside the guest: ping RTT avg and p99 over 100,
// iperf3 TCP both ways (3 runs each, the host prints the median), UDP
// 64-byte packets per second received by the host.
const benchGuest = `#!/bin/sh
H=` + hostIP + `
i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done
ping -c 100 -i 0.05 -W 2 $H >/tmp/p
echo "RESULT: ping-avg-ms $(sed -n 's/.*min\/avg\/max = [0-9.]*\/\([0-9.]*\)\/.*/\1/p' /tmp/p)"
echo "RESULT: ping-p99-ms $(sed -n 's/.*time=\([0-9.]*\).*/\1/p' /tmp/p | sort -n | sed -n '99p')"
# KVM-MARK lines make the host read KVM's exit counters (benchHost).
tcp() { echo "KVM-MARK $1-a"; v=$(iperf3 -c $H -t 5 -f m $2 | awk '/receiver/{print $(NF-2)}'); echo "KVM-MARK $1-b"
	echo "RESULT: $1 $v"; sleep 1; }
for r in 1 2 3; do
	tcp tcp-tx$r
	tcp tcp-rx$r -R
done
echo "RESULT: udp64 $(iperf3 -c $H -u -l 64 -b 200M -t 5 | awk '/receiver/{split($(NF-2), a, "/"); print int((a[2]-a[1])/5)}')"
`

// benchHost boots one VMM, timing VMM start → guest init, and samples the
// VMM's resident memory while the guest runs.
func benchHost(proc, cmd string) string {
	return benchHostWith(`/sbin/ip tuntap add dev tap0 mode tap 2>/dev/null
/sbin/ip addr add `+hostIP+`/24 dev tap0 2>/dev/null
/sbin/ip link set tap0 up
pidof iperf3 >/dev/null || iperf3 -s -D >/dev/null
`, proc, cmd)
}

// benchHostWith is benchHost with the far end (hostIP and an iperf3
// server) made by link.
func benchHostWith(link, proc, cmd string) string {
	return link + `# VmRSS, and VmRSS minus the resident part of the largest mapping (guest
# RAM): the memory the VMM itself uses beyond the guest's.
( while sleep 1; do p=$(pidof ` + proc + `) && awk '/VmRSS/{print $2}' /proc/$p/status >>"$WORK/rss" &&
	awk '/^Size:/{s=$2} /^Rss:/{if (s>ms) {ms=s; mr=$2}; t+=$2} END{print t-mr}' /proc/$p/smaps >>"$WORK/over"; done ) &
sampler=$!
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
` + timedBoot("vmm", cmd, `*"KVM-MARK "*)
		m=${line#*KVM-MARK }; m=${m%%[!A-Za-z0-9-]*}; echo "RESULT: kvm-$m $(for k in `+strings.Join(kvmStats, " ")+`; do printf '%s ' "$(cat /sys/kernel/debug/kvm/$k 2>/dev/null || echo 0)"; done)" ;;`) + `
kill $sampler
echo "RESULT: rss-max-kb $(sort -n "$WORK/rss" | tail -1)"
echo "RESULT: overhead-max-kb $(sort -n "$WORK/over" | tail -1)"
`
}

// qemuCmd boots the guest under QEMU with the same kernel, initramfs and
// memory as govmm, its NIC on tap0: netdev adds -netdev options (",vhost=on"),
// dev is the -device model.
func qemuCmd(cmdline, netdev, dev string) string {
	return `cat "$INITRD" "$OVERLAY" >"$WORK/initrd"; qemu-system-x86_64 -enable-kvm -cpu host -m 512 -smp 1 -nographic -no-reboot -nodefaults -serial stdio ` +
		`-kernel "$KERNEL" -initrd "$WORK/initrd" -append ` + cmdline + ` -netdev tap,id=n0,ifname=tap0,script=no,downscript=no` + netdev +
		` -device ` + dev + `,netdev=n0,mac=` + guestMAC + `,romfile=`
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}

// TestBenchmarkTable is `make bench`: in ONE test-host boot (or natively),
// the same guest under govmm zero-copy, govmm path=copy, govmm on AF_XDP
// (a veth pair), and QEMU
// virtio-net vhost=off / vhost=on / e1000e. It prints a table with ratios
// to QEMU vhost=off and writes .cache/bench.json. Not part of `make test`.
func TestBenchmarkTable(t *testing.T) {
	if os.Getenv("GOVMM_BENCH") != "1" {
		t.Skip("set GOVMM_BENCH=1 (make bench)")
	}
	env := harness.Setup(t).Defaults() // govmm as a user runs it: no pinning
	files := map[string]string{"/bench.sh": benchGuest}
	cmdline := `"console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/bench.sh"`
	govmm := `"$GOVMM" run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --net tap=tap0,mac=` + guestMAC
	qemu := func(netdev, dev string) string { return qemuCmd(cmdline, netdev, dev) }
	type row struct{ name, proc, cmd, link string } // link: the far end, if not benchHost's tap
	// AF_XDP on a veth pair (copy mode: veth has no zero-copy), the far
	// end in its own namespace (see TestAFXDP).
	govmmXDP := `"$GOVMM" run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M --net xdp=xv0,mac=` + guestMAC
	xdpFar := xdpLink + "/sbin/ip netns exec far iperf3 -s -D >/dev/null\n"
	rows := []row{
		{name: "govmm-zerocopy", proc: "govmm", cmd: govmm + ` --cmdline ` + cmdline},
		{name: "govmm-copy", proc: "govmm", cmd: govmm + `,path=copy --cmdline ` + cmdline},
		{name: "govmm-afxdp", proc: "govmm", cmd: govmmXDP + ` --cmdline ` + cmdline, link: xdpFar},
	}
	if env.Mode == harness.Nested {
		rows = append(rows,
			row{name: "qemu-vhost-off", proc: "qemu-system-x86_64", cmd: qemu(",vhost=off", "virtio-net-pci")},
			row{name: "qemu-vhost-on", proc: "qemu-system-x86_64", cmd: qemu(",vhost=on", "virtio-net-pci")},
			row{name: "qemu-e1000e", proc: "qemu-system-x86_64", cmd: qemu("", "e1000e")})
	}
	// GOVMM_BENCH_EXTRA adds govmm rows (name=args;..., as make
	// experiment's variants); GOVMM_BENCH_ROWS keeps only the named rows
	// (comma-separated), so that an A/B of govmm options gets the whole
	// table in one boot.
	for _, v := range parseVariants(os.Getenv("GOVMM_BENCH_EXTRA")) {
		if v.xdp {
			rows = append(rows, row{name: v.name, proc: "govmm", cmd: v.env + govmmXDP + v.netOpts + " " + v.args + ` --cmdline ` + cmdline, link: xdpFar})
			continue
		}
		rows = append(rows, row{name: v.name, proc: "govmm", cmd: v.env + govmm + v.netOpts + " " + v.args + ` --cmdline ` + cmdline})
	}
	if keep := os.Getenv("GOVMM_BENCH_ROWS"); keep != "" {
		rows = slices.DeleteFunc(rows, func(r row) bool { return !slices.Contains(strings.Split(keep, ","), r.name) })
	}
	var sc []harness.Scenario
	for _, r := range rows {
		host := benchHost(r.proc, r.cmd)
		if r.link != "" {
			host = benchHostWith(r.link, r.proc, r.cmd)
		}
		sc = append(sc, harness.Scenario{Name: r.name, HostScript: host, GuestFiles: files, Timeout: 4 * time.Minute, Network: true, GuestMustFinish: true, Reference: r.proc != "govmm"})
	}
	res := env.Run(t, sc...)

	type result struct {
		Name      string  `json:"name"`
		BootSecs  float64 `json:"boot_to_init_s"`
		PingAvgMs float64 `json:"ping_avg_ms"`
		PingP99Ms float64 `json:"ping_p99_ms"`
		TCPTxMbps float64 `json:"tcp_guest_to_host_mbps_median"`
		TCPRxMbps float64 `json:"tcp_host_to_guest_mbps_median"`
		UDP64pps  float64 `json:"udp64_pps"`
		RSSMaxKB  float64 `json:"vmm_rss_max_kb"`
		// OverKB is VmRSS minus the resident guest RAM: the VMM's own memory.
		OverKB    float64 `json:"vmm_overhead_max_kb"`
		Completed bool    `json:"completed"`
		// Per direction, over the three TCP runs: KVM's counters.
		Tx exitCost `json:"tcp_guest_to_host_kvm"`
		Rx exitCost `json:"tcp_host_to_guest_kvm"`
	}
	median := func(v map[string]string, k string) float64 {
		xs := []float64{num(v[k+"1"]), num(v[k+"2"]), num(v[k+"3"])}
		sort.Float64s(xs)
		return xs[1]
	}
	var out []result
	for _, r := range res {
		v := r.Values
		out = append(out, result{Name: r.Name, BootSecs: num(v["vmm-init-secs"]), PingAvgMs: num(v["ping-avg-ms"]), PingP99Ms: num(v["ping-p99-ms"]),
			TCPTxMbps: median(v, "tcp-tx"), TCPRxMbps: median(v, "tcp-rx"), UDP64pps: num(v["udp64"]), RSSMaxKB: num(v["rss-max-kb"]), OverKB: num(v["overhead-max-kb"]),
			Completed: !r.TimedOut && v["udp64"] != "", Tx: tcpExitCost(v, "tcp-tx"), Rx: tcpExitCost(v, "tcp-rx")})
	}
	base := out[0]
	for _, r := range out {
		if r.Name == "qemu-vhost-off" {
			base = r
		}
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "  -  "
		}
		return fmt.Sprintf("%5.2f", a/b)
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-16s %8s %9s %9s %10s %10s %10s %9s %9s   ratios to %s (boot, ping, tx, rx, udp)\n",
		"vmm", "boot s", "ping ms", "p99 ms", "tx Mbit/s", "rx Mbit/s", "udp64 pps", "RSS MB", "own MB", base.Name)
	for _, r := range out {
		fmt.Fprintf(&tb, "%-16s %8.2f %9.3f %9.3f %10.1f %10.1f %10.0f %9.1f %9.1f   %s %s %s %s %s\n", r.Name, r.BootSecs, r.PingAvgMs, r.PingP99Ms,
			r.TCPTxMbps, r.TCPRxMbps, r.UDP64pps, r.RSSMaxKB/1024, r.OverKB/1024,
			ratio(r.BootSecs, base.BootSecs), ratio(r.PingAvgMs, base.PingAvgMs), ratio(r.TCPTxMbps, base.TCPTxMbps), ratio(r.TCPRxMbps, base.TCPRxMbps), ratio(r.UDP64pps, base.UDP64pps))
	}
	fmt.Fprintf(&tb, "\nper second of TCP (KVM's counters, VM-wide; tx = guest to host)\n%-16s %-3s %8s %9s %9s %10s %9s\n",
		"vmm", "dir", "exits", "KB/exit", "irq inj", "irq exits", "halts")
	for _, r := range out {
		for _, d := range []struct {
			dir string
			c   exitCost
		}{{"tx", r.Tx}, {"rx", r.Rx}} {
			if d.c.ExitsPerSec == 0 {
				fmt.Fprintf(&tb, "%-16s %-3s %8s\n", r.Name, d.dir, "-")
				continue
			}
			fmt.Fprintf(&tb, "%-16s %-3s %8.0f %9.1f %9.0f %10.0f %9.0f\n", r.Name, d.dir, d.c.ExitsPerSec, d.c.KBPerExit, d.c.IRQInjPerSec, d.c.IRQExitsPerSec, d.c.HaltsPerSec)
		}
	}
	fmt.Print(tb.String())
	t.Log("\n" + tb.String())
	b, _ := json.MarshalIndent(map[string]any{"mode": env.Mode, "time": time.Now().UTC(), "results": out}, "", "  ")
	path := filepath.Join(env.Cache, "bench.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// exitCost is what a TCP direction cost in VM exits: bytes per exit is
// the number that decides throughput in the nested host, where both VMMs
// get about the same exits per second.
type exitCost struct {
	ExitsPerSec    float64 `json:"exits_per_s"`
	KBPerExit      float64 `json:"kb_per_exit"`
	IRQInjPerSec   float64 `json:"irq_injections_per_s"`
	IRQExitsPerSec float64 `json:"irq_exits_per_s"`
	HaltsPerSec    float64 `json:"halt_exits_per_s"`
}

// tcpExitCost sums the counters the host read at the guest's KVM-MARK
// lines around the three 5 s runs of key (tcp-tx or tcp-rx); zero when
// the host has no KVM debugfs.
func tcpExitCost(v map[string]string, key string) exitCost {
	idx := map[string]int{}
	for i, k := range kvmStats {
		idx[k] = i
	}
	delta := make([]float64, len(kvmStats))
	var kbytes float64
	for r := 1; r <= 3; r++ {
		a := strings.Fields(v[fmt.Sprintf("kvm-%s%d-a", key, r)])
		b := strings.Fields(v[fmt.Sprintf("kvm-%s%d-b", key, r)])
		if len(a) != len(kvmStats) || len(b) != len(kvmStats) {
			return exitCost{}
		}
		for i := range kvmStats {
			delta[i] += num(b[i]) - num(a[i])
		}
		kbytes += num(v[fmt.Sprintf("%s%d", key, r)]) * 5 * 1e6 / 8 / 1024
	}
	const secs = 15 // three 5 s runs
	exits := delta[idx["exits"]]
	if exits <= 0 {
		return exitCost{}
	}
	return exitCost{ExitsPerSec: exits / secs, KBPerExit: kbytes / exits, IRQInjPerSec: delta[idx["irq_injections"]] / secs,
		IRQExitsPerSec: delta[idx["irq_exits"]] / secs, HaltsPerSec: delta[idx["halt_exits"]] / secs}
}
