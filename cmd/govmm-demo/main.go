// Command govmm-demo is `make demo`: it builds the guest images and govmm,
// boots a guest with govmm (natively when this machine's KVM can boot
// Linux, otherwise inside the nested test host) and streams its console.
// It runs the same harness the end-to-end tests use, so what the demo shows
// is what CI checks.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/govmm/govmm/tests/harness"
)

// demoGuest runs inside the guest and shows that it is a real, working Linux.
const demoGuest = `#!/bin/sh
echo "demo: kernel  $(uname -r)"
echo "demo: cpus    $(grep -c ^processor /proc/cpuinfo)"
echo "demo: memory  $(awk '/^MemTotal:/{print $2" kB"}' /proc/meminfo)"
echo "demo: clock   $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "demo: pci     $(ls /sys/bus/pci/devices | tr '\n' ' ')"
`

func main() {
	d := &demoT{name: "demo"}
	env := harness.Setup(d)
	fmt.Printf("govmm-demo: running %s (%s)\n", env.Mode, env.ModeReason)
	res := env.Run(d, harness.Scenario{
		Name: "demo",
		HostScript: `"$GOVMM" --log-level info run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" \
	--cpus 2 --mem 512M --cmdline "console=ttyS0 panic=-1 quiet govmm.run=/demo.sh"
echo "RESULT: govmm-exit $?"`,
		GuestFiles: map[string]string{"/demo.sh": demoGuest},
		Timeout:    3 * time.Minute,
	})
	r := res[0]
	if r.TimedOut || r.Values["govmm-exit"] != "0" {
		fmt.Fprintf(os.Stderr, "govmm-demo: the guest did not complete (exit %q, timed out %v); log in %s/logs\n",
			r.Values["govmm-exit"], r.TimedOut, env.Cache)
		os.Exit(1)
	}
	fmt.Printf("govmm-demo: guest booted and powered off cleanly in %s (%s mode)\n", r.Duration.Round(time.Second), env.Mode)
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
