package tests

import (
	"fmt"
	"os"
	"slices"
	"strconv"
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
// where "--net-opts X" appends ",X" to the --net spec and "--env K=V"
// sets an environment variable (GOMAXPROCS=1, GODEBUG=...). QEMU vhost=off is
// added as the anchor. Not part of `make test`.
func TestExperiment(t *testing.T) {
	spec := os.Getenv("GOVMM_EXPERIMENT")
	if spec == "" {
		t.Skip("set GOVMM_EXPERIMENT (make experiment)")
	}
	rounds := 1
	if v := os.Getenv("GOVMM_EXPERIMENT_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 9 {
			t.Fatalf("GOVMM_EXPERIMENT_ROUNDS=%q: want 1..9", v)
		}
		rounds = n
	}
	trace := ""
	if os.Getenv("GOVMM_EXPERIMENT_TRACE") == "1" {
		trace = "TRACEWIN=1\n" // see exitTraceScript
	}
	env := harness.Setup(t).Defaults() // govmm as a user runs it: no pinning
	files := map[string]string{"/profile.sh": profileGuest}
	cmdline := `"console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/profile.sh"`
	var variants []harness.Scenario
	for _, v := range parseVariants(spec) {
		if v.xdp {
			t.Fatalf("variant %s: --xdp is for make bench (BENCH_EXTRA); make experiment runs on the tap", v.name)
		}
		vmm := v.env + `"$GOVMM" run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M ` +
			`--net tap=tap0,mac=` + guestMAC + v.netOpts + ` ` + v.args + ` --cmdline ` + cmdline
		variants = append(variants, harness.Scenario{Name: v.name, HostScript: trace + profileHost(vmm)})
	}
	if env.Mode == harness.Nested {
		variants = append(variants, harness.Scenario{Name: "qemu-vhost-off", HostScript: trace + profileHost(qemuCmd(cmdline, ",vhost=off", "virtio-net-pci")), Reference: true})
	}
	// Rounds interleave the variants (a, b, q, a, b, q, ...), so a drift
	// of the test host over the boot touches each of them alike.
	var sc []harness.Scenario
	for k := range rounds {
		for _, v := range variants {
			sc = append(sc, harness.Scenario{Name: fmt.Sprintf("%s-r%d", v.Name, k+1), HostScript: v.HostScript, GuestFiles: files, Timeout: 3 * time.Minute, Network: true, GuestMustFinish: true, Reference: v.Reference})
		}
	}
	// samples[variant/dir] holds one row per round: Mbit/s, then the
	// counters per second.
	samples := map[string][][]float64{}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-16s %-4s %8s  per second: %s\n", "variant", "dir", "Mbit/s", strings.Join(kvmStats, " "))
	for _, r := range env.Run(t, sc...) {
		if v := r.Values["idle"]; v != "" {
			fmt.Fprintf(&tb, "%-16s idle %s\n", r.Name, v)
		}
		for _, line := range strings.Split(r.Output, "\n") {
			if _, rest, ok := strings.Cut(line, "XTRACE "); ok {
				fmt.Fprintf(&tb, "%-16s %s\n", r.Name, strings.TrimSpace(rest))
			}
		}
		for _, dir := range []string{"rx", "tx"} {
			row, ok := experimentRow(r, dir)
			if !ok {
				fmt.Fprintf(&tb, "%-16s %-4s %8s  (no counters)\n", r.Name, dir, r.Values["tcp-"+dir])
				continue
			}
			variant := r.Name[:strings.LastIndex(r.Name, "-r")]
			samples[variant+"/"+dir] = append(samples[variant+"/"+dir], row)
			writeExperimentRow(&tb, r.Name, dir, row)
		}
	}
	if rounds > 1 {
		fmt.Fprintf(&tb, "\nmedians of %d rounds\n", rounds)
		for _, v := range variants {
			for _, dir := range []string{"rx", "tx"} {
				if rows := samples[v.Name+"/"+dir]; len(rows) > 0 {
					writeExperimentRow(&tb, v.Name, dir, medianRow(rows))
				}
			}
		}
	}
	fmt.Print(tb.String())
	t.Log("\n" + tb.String())
}

// experimentRow reads one direction of a run: Mbit/s, then KVM's counters
// per second of the 8 s iperf3 run.
func experimentRow(r harness.Result, dir string) ([]float64, bool) {
	before, after, ok := strings.Cut(r.Values["kvm-"+dir], "/")
	b, a := strings.Fields(before), strings.Fields(after)
	if !ok || len(b) != len(kvmStats) || len(a) != len(kvmStats) || r.TimedOut || r.Values["tcp-"+dir] == "" {
		return nil, false
	}
	row := []float64{num(r.Values["tcp-"+dir])}
	for i := range kvmStats {
		row = append(row, (num(a[i])-num(b[i]))/8)
	}
	before, after, _ = strings.Cut(r.Values["sys-"+dir], "/")
	b, a = strings.Fields(before), strings.Fields(after)
	for i := range sysStats {
		if i < len(a) && i < len(b) {
			row = append(row, (num(a[i])-num(b[i]))/8)
		} else {
			row = append(row, 0)
		}
	}
	return row, true
}

func writeExperimentRow(w *strings.Builder, name, dir string, row []float64) {
	fmt.Fprintf(w, "%-16s %-4s %8.0f ", name, dir, row[0])
	for i, k := range kvmStats {
		fmt.Fprintf(w, " %s=%.0f", k, row[1+i])
	}
	for i, k := range sysStats {
		fmt.Fprintf(w, " %s=%.0f", k, row[1+len(kvmStats)+i])
	}
	if ex := row[1]; ex > 0 {
		fmt.Fprintf(w, " KB/exit=%.1f", row[0]*1e6/8/1024/ex) // Mbit/s over exits/s
	}
	w.WriteString("\n")
}

// medianRow takes each column's median (rows of one variant and direction).
func medianRow(rows [][]float64) []float64 {
	out := make([]float64, len(rows[0]))
	col := make([]float64, len(rows))
	for j := range out {
		for i, r := range rows {
			col[i] = r[j]
		}
		slices.Sort(col)
		if n := len(col); n%2 == 1 {
			out[j] = col[n/2]
		} else {
			out[j] = (col[n/2-1] + col[n/2]) / 2
		}
	}
	return out
}

// variant is one govmm configuration of make experiment or make bench.
type variant struct {
	name    string
	netOpts string // appended to the --net spec (",tx-poll=0")
	env     string // "K=V " prefixes
	args    string // further govmm run arguments
	xdp     bool   // make bench: on AF_XDP (the govmm-afxdp row's veth pair), not the tap
}

// variants parses "name=args;..." where args may start with any number of
// "--net-opts X" (appends ",X" to the --net spec), "--env K=V" (sets
// an environment variable) and "--xdp" (make bench: the NIC on AF_XDP), the
// rest going to govmm run as is.
func parseVariants(spec string) []variant {
	var out []variant
	for _, v := range strings.Split(spec, ";") {
		name, args, _ := strings.Cut(v, "=")
		if name == "" {
			continue
		}
		x := variant{name: name}
		for {
			if rest, ok := strings.CutPrefix(args, "--net-opts "); ok {
				opts, more, _ := strings.Cut(rest, " ")
				x.netOpts, args = x.netOpts+","+opts, more
			} else if rest, ok := strings.CutPrefix(args, "--xdp"); ok && (rest == "" || rest[0] == ' ') {
				x.xdp, args = true, strings.TrimPrefix(rest, " ")
			} else if rest, ok := strings.CutPrefix(args, "--env "); ok {
				kv, more, _ := strings.Cut(rest, " ")
				x.env, args = x.env+kv+" ", more
			} else {
				break
			}
		}
		x.args = args
		out = append(out, x)
	}
	return out
}
