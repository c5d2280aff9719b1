// Command govmm-demo is `make demo`: it builds the guest images and govmm,
// boots a guest with one NIC on the zero-copy path, pings the host through
// it and prints the NIC statistics. The guest runs under govmm natively when
// this machine's KVM can boot Linux, otherwise inside the nested test host,
// and its console is streamed.
// It runs the same harness the end-to-end tests use, so what the demo shows
// is what CI checks.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/govmm/govmm/tests/harness"
)

// demoGuest runs inside the guest: it shows a real, working Linux and
// pings the host through the zero-copy path (the default --net).
const demoGuest = `#!/bin/sh
echo "demo: kernel  $(uname -r)"
echo "demo: cpus    $(grep -c ^processor /proc/cpuinfo)"
echo "demo: memory  $(awk '/^MemTotal:/{print $2" kB"}' /proc/meminfo)"
echo "demo: clock   $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "demo: pci     $(ls /sys/bus/pci/devices | tr '\n' ' ')"
echo "demo: eth0    $(cat /sys/class/net/eth0/address) driver $(ethtool -i eth0 | sed -n 's/^driver: //p')"
i=0; while ! ping -c1 -W1 10.77.0.1 >/dev/null 2>&1 && [ $i -lt 20 ]; do i=$((i+1)); done
ping -c 10 -i 0.2 10.77.0.1 | tail -2 | sed 's/^/demo: /'
`

func main() {
	d := &demoT{name: "demo"}
	env := harness.Setup(d)
	fmt.Printf("govmm-demo: running %s (%s)\n", env.Mode, env.ModeReason)
	res := env.Run(d, harness.Scenario{
		Name: "demo",
		HostScript: `/sbin/ip tuntap add dev tap0 mode tap 2>/dev/null || ip tuntap add dev tap0 mode tap
ip=/sbin/ip; [ -x $ip ] || ip=ip
$ip addr add 10.77.0.1/24 dev tap0 && $ip link set tap0 up
"$GOVMM" --log-level info run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" \
	--cpus 2 --mem 512M --net tap=tap0 --stats "$WORK/stats.json" \
	--cmdline "console=ttyS0 panic=-1 quiet govmm.ip=10.77.0.2/24 govmm.run=/demo.sh"
echo "RESULT: govmm-exit $?"
echo "zero-copy path statistics (--stats):"
grep -E '"(model|rx_frames|rx_zerocopy_frames|rx_copied_bytes|tx_frames|pinned_bytes_peak|pin_limit_bytes)"' "$WORK/stats.json"`,
		Network:    true,
		GuestFiles: map[string]string{"/demo.sh": demoGuest},
		Timeout:    3 * time.Minute,
	})
	r := res[0]
	if r.TimedOut || r.Values["govmm-exit"] != "0" || !strings.Contains(r.Output, " 0% packet loss") {
		fmt.Fprintf(os.Stderr, "govmm-demo: the guest did not complete its run and pings (exit %q, timed out %v); log in %s/logs\n",
			r.Values["govmm-exit"], r.TimedOut, env.Cache)
		os.Exit(1)
	}
	fmt.Printf("govmm-demo: guest booted, pinged the host through the zero-copy path and powered off in %s (%s mode)\n", r.Duration.Round(time.Second), env.Mode)
}

// demoT adapts the harness to a plain program: logs go to stdout, failures
// end the program with one line.
type demoT struct{ name string }

func (d *demoT) Helper()                   {}
func (d *demoT) Logf(f string, a ...any)   { fmt.Printf(f+"\n", a...) }
func (d *demoT) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, "govmm-demo: "+f+"\n", a...) }
func (d *demoT) Fatalf(f string, a ...any) { d.Errorf(f, a...); os.Exit(1) }
func (d *demoT) Skipf(f string, a ...any)  { d.Fatalf(f, a...) }
func (d *demoT) Name() string              { return d.name }
func (d *demoT) TempDir() string {
	dir, err := os.MkdirTemp("", "govmm-demo-")
	if err != nil {
		d.Fatalf("%v", err)
	}
	return dir
}
