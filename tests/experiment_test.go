package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/tests/harness"
)

// TestExperiment is `make experiment`: A/B runs of govmm options in ONE
// test-host boot, under the same iperf3 load as make profile, with KVM's
// exit counters per MB and per second. GOVMM_EXPERIMENT lists the
// variants as name=extra-govmm-args separated by ';', e.g.
//
//	GOVMM_EXPERIMENT='poll0=--net-opts tx-poll=0;pin=--cpu-pin auto'
//
// where "--net-opts X" appends ",X" to the --net spec. QEMU vhost=off is
// added as the anchor. Not part of `make test`.
func TestExperiment(t *testing.T) {
	spec := os.Getenv("GOVMM_EXPERIMENT")
	if spec == "" {
		t.Skip("set GOVMM_EXPERIMENT (make experiment)")
	}
	env := harness.Setup(t)
	files := map[string]string{"/profile.sh": profileGuest}
	cmdline := `"console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/profile.sh"`
	var sc []harness.Scenario
	for _, v := range strings.Split(spec, ";") {
		name, args, _ := strings.Cut(v, "=")
		net := ""
		if rest, ok := strings.CutPrefix(args, "--net-opts "); ok {
			opts, more, _ := strings.Cut(rest, " ")
			net, args = ","+opts, more
		}
		vmm := `"$GOVMM" run --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M ` +
			`--net tap=tap0,mac=` + guestMAC + net + ` ` + args + ` --cmdline ` + cmdline
		sc = append(sc, harness.Scenario{Name: name, HostScript: profileHost(vmm), GuestFiles: files, Timeout: 3 * time.Minute, Network: true, GuestMustFinish: true})
	}
	if env.Mode == harness.Nested {
		sc = append(sc, harness.Scenario{Name: "qemu-vhost-off", HostScript: profileHost(qemuCmd(cmdline, ",vhost=off", "virtio-net-pci")), GuestFiles: files, Timeout: 3 * time.Minute, Network: true, GuestMustFinish: true})
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-16s %-4s %8s  per second: %s\n", "variant", "dir", "Mbit/s", strings.Join(kvmStats, " "))
	for _, r := range env.Run(t, sc...) {
		for _, dir := range []string{"rx", "tx"} {
			mbps := r.Values["tcp-"+dir]
			fmt.Fprintf(&tb, "%-16s %-4s %8s ", r.Name, dir, mbps)
			before, after, ok := strings.Cut(r.Values["kvm-"+dir], "/")
			b, a := strings.Fields(before), strings.Fields(after)
			if !ok || len(b) != len(kvmStats) || len(a) != len(kvmStats) || r.TimedOut {
				fmt.Fprintf(&tb, " (no counters)\n")
				continue
			}
			for i := range kvmStats {
				fmt.Fprintf(&tb, " %s=%.0f", kvmStats[i], (num(a[i])-num(b[i]))/8) // 8 s runs
			}
			if ex := num(a[0]) - num(b[0]); ex > 0 {
				fmt.Fprintf(&tb, " KB/exit=%.1f", num(mbps)*1e6/8*8/1024/ex)
			}
			tb.WriteString("\n")
		}
	}
	fmt.Print(tb.String())
	t.Log("\n" + tb.String())
}
