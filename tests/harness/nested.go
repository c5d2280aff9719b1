package harness

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

//go:embed driver.sh
var driverScript []byte

// hostBootSlack covers the test host's boot, power-off and slow starts on a loaded machine; it is added to
// the scenarios' own timeouts for the outer QEMU timeout.
const hostBootSlack = 120 * time.Second

// TestHostQEMUArgs is the test host's machine: TCG with -cpu max exposes AMD SVM, so kvm_amd loads inside.
var TestHostQEMUArgs = []string{
	"-accel", "tcg,thread=multi", "-cpu", "max", "-m", "3072", "-smp", "2",
	"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
}

// pickHostQEMU chooses the QEMU that boots the test host: $GOVMM_TESTHOST_QEMU
// if set ("system": qemu-system-x86_64 from PATH), else QEMU 10 from Debian
// bookworm-backports, extracted into the cache by
// guest-images/fetch-qemu-backports (the steadier test host measured; see
// README "Known problems"), else the machine's own QEMU as the fallback.
func (e *Env) pickHostQEMU(t T) (path, why string) {
	switch q := os.Getenv("GOVMM_TESTHOST_QEMU"); q {
	case "system":
		return "qemu-system-x86_64", "GOVMM_TESTHOST_QEMU=system"
	case "":
	default:
		return q, "GOVMM_TESTHOST_QEMU"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.Repo, "guest-images", "fetch-qemu-backports"))
	killGroupOnCancel(cmd)
	out, err := cmd.Output()
	if p := strings.TrimSpace(string(out)); err == nil && p != "" {
		return p, "QEMU from bookworm-backports"
	}
	t.Logf("harness: WARNING: QEMU from bookworm-backports unavailable (%v); the test host runs on this machine's qemu-system-x86_64", err)
	return "qemu-system-x86_64", "fallback: this machine's QEMU"
}

func (e *Env) runNested(t T, scenarios []Scenario) []Result {
	t.Helper()
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	if err := e.nestedInitrd(dir, initrd, scenarios); err != nil {
		t.Fatalf("harness: %v", err)
	}

	timeout := hostBootSlack
	for _, s := range scenarios {
		timeout += s.Timeout
	}
	logPath := filepath.Join(e.Cache, "logs", sanitize(t.Name())+".log")
	output, hung, err := e.bootTestHost(t, initrd, timeout, logPath)
	if err != nil && hung == "" && !strings.Contains(output, "TESTHOST: done") {
		// The L1 host runs nested KVM under TCG, which on these machines
		// occasionally resets the whole test host (no panic, QEMU just
		// exits). That is the environment, not the scenario: boot once
		// more, and say so. A second death is reported as a failure.
		t.Logf("harness: WARNING: test host died without finishing (%v); retrying the whole boot once (first log kept as %s.1)", err, logPath)
		Retries.hostDied(t.Name(), diedBootFailures(scenarios, output))
		_ = os.Rename(logPath, logPath+".1")
		_ = os.Rename(hostKernelLog(logPath), hostKernelLog(logPath)+".1")
		output, hung, err = e.bootTestHost(t, initrd, timeout, logPath)
	}
	if err != nil {
		t.Errorf("harness: test host: %v (serial log: %s)", err, logPath)
	}
	if hung != "" {
		// The whole test host stopped making progress (an L1 hang, not a
		// guest's: the L1 init enforces each scenario's own timeout). The
		// unfinished scenarios count as timed out, so Run retries them in
		// a fresh boot, and fails them if they hang again.
		t.Logf("harness: WARNING: test host killed after %s while running scenario %q (serial log: %s)", timeout, hung, logPath)
	}
	if !strings.Contains(output, "TESTHOST: kvm yes") {
		t.Logf("harness: warning: test host reported no /dev/kvm")
	}

	var hungFaults []string
	if hung != "" {
		hungFaults = hostKernelFaults(hostKernelLog(logPath))
	}
	segs := splitScenarios(output)
	results := make([]Result, 0, len(scenarios))
	for _, s := range scenarios {
		r := Result{Name: s.Name, ExitCode: -1}
		seg := segs[s.Name]
		switch {
		case seg == nil && hung != "":
			r.TimedOut, r.hostHung = true, true // behind the hung one: retried by Run
		case seg == nil:
			t.Errorf("harness: scenario %s never started in the test host (serial log: %s)", s.Name, logPath)
		case !seg.Ended:
			r.TimedOut, r.hostHung = true, hung != ""
			r.Output = seg.Output
		default:
			r.Output, r.ExitCode, r.TimedOut = seg.Output, seg.RC, seg.TimedOut
			r.Duration = time.Duration(seg.Secs * float64(time.Second))
		}
		r.Values = ParseValues(r.Output)
		if s.Name == hung {
			r.HostFaults = hungFaults // the rest: scanned by run
		}
		results = append(results, r)
	}
	return results
}

// diedBootFailures lists what had already failed in a test-host boot that
// died, so the ledger keeps it even though the whole boot runs again.
func diedBootFailures(scenarios []Scenario, output string) []string {
	segs := splitScenarios(output)
	var out []string
	for _, s := range scenarios {
		seg := segs[s.Name]
		if seg == nil {
			continue
		}
		r := Result{Output: seg.Output, TimedOut: seg.TimedOut}
		r.GuestFaults, _ = scanFaults(seg.Output)
		if !seg.Ended {
			out = append(out, s.Name+": running when the host died")
		} else if why := failureReason(s, r); why != "" {
			out = append(out, s.Name+": "+why)
		}
	}
	return out
}

// hostKernelLog is where the test host's kernel console is written.
func hostKernelLog(serialLog string) string {
	return strings.TrimSuffix(serialLog, ".log") + ".kernel.log"
}

// hostQEMULog is where the outer QEMU logs the test host's CPU resets
// (-d cpu_reset): a test host that dies without a word from its kernel
// reset, and TCG says "Triple fault" first when that is why.
func hostQEMULog(serialLog string) string {
	return strings.TrimSuffix(serialLog, ".log") + ".qemu.log"
}

// hostQEMUTrace is what the outer QEMU logs: CPU resets, and with
// GOVMM_TESTHOST_TRACE=int every interrupt and exception of the test host
// and its guests too (gigabytes per boot: for studying triple faults, the
// exception chain before one; make stability keeps the logs of boots that
// went wrong).
func hostQEMUTrace() string {
	if os.Getenv("GOVMM_TESTHOST_TRACE") == "int" {
		return "cpu_reset,int"
	}
	return "cpu_reset"
}

// hostDeath reads the outer QEMU's log after a test host ended early and
// says why, if it knows: the L1 CPU triple-faulted (TCG logs it before the
// reset, which -no-reboot turns into an exit).
func hostDeath(serialLog string) string {
	b, err := os.ReadFile(hostQEMULog(serialLog))
	if err != nil {
		return ""
	}
	if strings.Contains(string(b), "Triple fault") {
		return "the test host's CPU triple-faulted (outer QEMU: \"Triple fault\", then a reset; " + hostQEMULog(serialLog) + ")"
	}
	return ""
}

// nestedInitrd writes base.cpio.gz followed by an overlay with the driver, govmm and the scenarios: QEMU
// takes a single -initrd, and the kernel unpacks concatenated archives in order.
func (e *Env) nestedInitrd(dir, dst string, scenarios []Scenario) error {
	files := []File{{Path: "scenario/run.sh", Mode: 0o755, Data: driverScript}}
	if e.Govmm != "" {
		bin, err := os.ReadFile(e.Govmm)
		if err != nil {
			return fmt.Errorf("read govmm: %w", err)
		}
		files = append(files, File{Path: "scenario/govmm", Mode: 0o755, Data: bin})
	}
	var list strings.Builder
	for _, s := range scenarios {
		fmt.Fprintf(&list, "%s %d\n", s.Name, int(math.Ceil(s.Timeout.Seconds())))
		guest := filepath.Join(dir, s.Name+".cpio.gz")
		if err := WriteCPIOGz(guest, guestFiles(s.GuestFiles)); err != nil {
			return fmt.Errorf("scenario %s guest overlay: %w", s.Name, err)
		}
		data, err := os.ReadFile(guest)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		files = append(files,
			File{Path: "scenario/" + s.Name + ".sh", Mode: 0o755, Data: []byte(e.scenarioScript(s))},
			File{Path: "scenario/" + s.Name + ".cpio.gz", Mode: 0o644, Data: data})
	}
	files = append(files, File{Path: "scenario/list", Mode: 0o644, Data: []byte(list.String())})
	overlay := filepath.Join(dir, "overlay.cpio.gz")
	if err := WriteCPIOGz(overlay, files); err != nil {
		return fmt.Errorf("test host overlay: %w", err)
	}

	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create initrd: %w", err)
	}
	for _, src := range []string{e.HostBase, overlay} {
		if err := copyFile(f, src); err != nil {
			f.Close()
			return fmt.Errorf("initrd: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close initrd: %w", err)
	}
	return nil
}

// bootTestHost boots the test host until it powers off, streaming its console to the test log and to
// logPath. On timeout it returns the scenario that was running (hung), if any.
func (e *Env) bootTestHost(t T, initrd string, timeout time.Duration, logPath string) (output, hung string, err error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return "", "", fmt.Errorf("log dir: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", "", fmt.Errorf("create log: %w", err)
	}
	defer logFile.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The L1 kernel console goes to a second serial port, a file, at full
	// verbosity: it never mixes with the scenarios' output, and holds the
	// last words of a hung test host, backtraces included (its init copies
	// errors into the stream too, see testhost-init).
	args := append(append([]string{}, TestHostQEMUArgs...),
		"-serial", "file:"+hostKernelLog(logPath), "-d", hostQEMUTrace(), "-D", hostQEMULog(logPath),
		"-kernel", e.HostKernel, "-initrd", initrd, "-append", "console=ttyS1 panic=-1 loglevel=7 edd=off")
	if e.HostNICPair {
		// Two NICs on one hub: what one sends, the other receives. The DMA
		// API (iommu_platform) is what Linux's virtio_net needs for AF_XDP
		// zero-copy; mergeable buffers, not big packets, for XDP at all.
		for i := range 2 {
			args = append(args, "-netdev", fmt.Sprintf("hubport,id=hp%d,hubid=7", i),
				"-device", fmt.Sprintf("virtio-net-pci,netdev=hp%d,mac=52:54:00:77:00:%02x,disable-legacy=on,iommu_platform=on,mrg_rxbuf=on,romfile=", i, i+1))
		}
	}
	qemu := e.HostQEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	killGroupOnCancel(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", fmt.Errorf("stdout pipe: %w", err)
	}
	cmd.Stderr = cmd.Stdout // after StdoutPipe: QEMU's own errors join the console stream
	t.Logf("harness: booting test host (timeout %s, serial log %s)", timeout, logPath)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("start qemu: %w", err)
	}

	var out strings.Builder
	current := ""
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := cleanLine(sc.Text())
		out.WriteString(line + "\n")
		fmt.Fprintf(logFile, "%8.2f %s\n", time.Since(start).Seconds(), line)
		t.Logf("L1 %6.1fs| %s", time.Since(start).Seconds(), line)
		if m := beginRE.FindStringSubmatch(line); m != nil {
			current = m[1]
		} else if endRE.MatchString(line) {
			current = ""
		}
	}
	waitErr := cmd.Wait()
	t.Logf("harness: test host exited after %s", time.Since(start).Round(10*time.Millisecond))
	if ctx.Err() != nil {
		if current == "" {
			current = "(none: boot or power-off)"
		}
		return out.String(), current, nil
	}
	if waitErr != nil {
		return out.String(), "", fmt.Errorf("qemu: %w", waitErr)
	}
	if !strings.Contains(out.String(), "TESTHOST: done") {
		if why := hostDeath(logPath); why != "" {
			return out.String(), "", fmt.Errorf("test host exited without finishing the scenarios: %s", why)
		}
		return out.String(), "", fmt.Errorf("test host exited without finishing the scenarios")
	}
	return out.String(), "", nil
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, name)
}

// scenarioScript is s's host script with Env.GovmmEnv exported first.
func (e *Env) scenarioScript(s Scenario) string {
	if len(e.GovmmEnv) == 0 {
		return s.HostScript
	}
	return "export " + strings.Join(e.GovmmEnv, " ") + "\n" + s.HostScript
}
