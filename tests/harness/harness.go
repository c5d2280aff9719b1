// Package harness runs govmm end-to-end scenarios either natively (this machine's /dev/kvm boots a stock
// kernel) or inside a nested test host: Debian's kernel under QEMU TCG with -cpu max, where kvm_amd gives
// a real KVM. The nested mode exists because PVM-backed /dev/kvm cannot boot a stock Linux guest.
//
// A Scenario is a POSIX sh host script plus files for the guest; Run executes scenarios in order (in one
// test-host boot when nested) and returns their console output, exit code, duration and RESULT: values.
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode says where scenarios run.
type Mode string

const (
	Native Mode = "native" // host scripts run on this machine against its /dev/kvm
	Nested Mode = "nested" // host scripts run inside the QEMU/TCG test host with its own KVM
)

// Env describes where scenarios run and the artefacts they use (paths on this machine).
type Env struct {
	Mode       Mode
	ModeReason string
	Repo       string
	Cache      string // $GOVMM_CACHE, default <repo>/.cache
	Govmm      string // static govmm binary; empty while cmd/govmm has no Go code
	Kernel     string // L2 guest bzImage
	Initrd     string // L2 guest base initramfs
	// Nested mode only.
	HostKernel string // L1 bzImage
	HostBase   string // L1 base initramfs; Run appends a per-run overlay
	HostQEMU   string // the QEMU that runs the test host (see pickHostQEMU)
	// HostNICPair gives the test host two virtio-net NICs (eth0, eth1)
	// joined by one hub in the outer QEMU, with the DMA API on (a NIC
	// whose driver can do AF_XDP zero-copy): a frame sent on one arrives
	// on the other, written by the outer QEMU straight into the buffers
	// the receiving driver posted. See WithTestHost.
	HostNICPair bool
	// GovmmEnv is exported into every scenario's host script in the
	// nested test host (K=V each). Setup pins govmm's vCPU threads there
	// (GOVMM_CPU_PIN=auto, scope all): in 11 of 12 traced triple faults
	// the vCPU thread had been scheduled out and back in within 3 ms
	// before, and QEMU's vCPU thread, never switched out, never met one;
	// pinned, govmm's own threads stop preempting it (README, Known
	// problems). Benchmarks clear it to measure the defaults.
	GovmmEnv []string

	boot func(t T, s []Scenario) []Result // tests: stands in for one test-host boot
}

// Scenario is one end-to-end step.
type Scenario struct {
	Name string // [A-Za-z0-9._-]+, unique within a Run
	// HostScript is a POSIX sh script (busybox sh and bash) run on the host side: natively here, or inside
	// the nested test host. Environment: GOVMM (binary), KERNEL, INITRD (guest base initramfs), OVERLAY
	// (cpio.gz with GuestFiles, for a second --initrd), WORK (scratch dir, also the working directory).
	HostScript string
	GuestFiles map[string]string // path in guest -> content; scripts ("#!" or *.sh) and ELF programs get mode 0755
	Timeout    time.Duration     // default 2 minutes
	// GuestMustFinish: the guest's run script must reach its end marker
	// (GuestRunEndMarker). For a VMM that says nothing when its guest dies:
	// QEMU with -no-reboot exits 0 on a guest triple fault or reset, so
	// nested, a guest that vanished mid-run is retried like one that
	// triple-faulted under govmm.
	GuestMustFinish bool
	// Reference marks a scenario run by the reference VMM (QEMU), not by
	// govmm. Its failure in a test-host boot excuses a govmm scenario's
	// failure in the same boot (the environment failed both), and it may
	// itself be retried without an excuse.
	Reference bool
	// ExpectCrash marks a scenario whose guest is meant to triple-fault:
	// the crash is its result, not a failure to retry.
	ExpectCrash bool
	// Network marks a scenario that creates interfaces and sends traffic.
	// Nested, the test host is already isolated (it has no NIC); natively
	// the script runs inside a fresh network namespace, so nothing it does
	// reaches this machine's own network.
	Network bool
}

// Result is the outcome of one Scenario.
type Result struct {
	Name     string
	Output   string // host script output (stdout+stderr, including the guest console if the script shows it)
	ExitCode int    // host script exit status; -1 if it never finished
	Duration time.Duration
	TimedOut bool
	Values   map[string]string // "RESULT: key value..." lines: key -> rest of line
	Retried  bool              // the first attempt failed in a way the environment excused (see Run)
	// GuestFaults are the scenario's kernel fault lines (panic, oops, BUG,
	// lockup, RCU stall, hung task) from its guest console; HostFaults the
	// test host kernel's while it ran (nested only). See scanFaults.
	GuestFaults, HostFaults []string
	hostHung                bool // the whole test host hung before this scenario ended
}

const defaultTimeout = 2 * time.Minute

var (
	setupMu  sync.Mutex
	setupEnv *Env
	setupErr error
	setupLog []string
)

// T is the part of testing.TB the harness uses. *testing.T satisfies it;
// cmd/govmm-demo supplies its own so the demo runs the same scenarios
// outside `go test`.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Name() string
	TempDir() string
}

// Setup builds (cached) the static govmm binary and guest images, decides the mode and, when nested, builds
// the test host. The work is done once per test binary; later calls return the same Env. It skips the test
// when neither mode is possible (no usable /dev/kvm and no qemu-system-x86_64), and fails instead under CI=true.
func Setup(t T) *Env {
	t.Helper()
	setupMu.Lock()
	defer setupMu.Unlock()
	if setupEnv == nil && setupErr == nil {
		start := time.Now()
		setupEnv, setupErr = setup(t)
		if setupErr == nil {
			t.Logf("harness: setup done in %s: mode %s (%s)", time.Since(start).Round(time.Millisecond),
				setupEnv.Mode, setupEnv.ModeReason)
		}
	}
	var skip *skipError
	switch {
	case errors.As(setupErr, &skip) && os.Getenv("CI") != "true":
		t.Skipf("harness: %v", setupErr)
	case setupErr != nil:
		t.Fatalf("harness: %v", setupErr)
	}
	return setupEnv
}

type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func setup(t T) (*Env, error) {
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	env := &Env{Repo: repo, Cache: os.Getenv("GOVMM_CACHE")}
	if env.Cache == "" {
		env.Cache = filepath.Join(repo, ".cache")
	}
	env.Kernel = filepath.Join(env.Cache, "guest", "bzImage")
	env.Initrd = filepath.Join(env.Cache, "guest", "initramfs.cpio.gz")

	kvmErr := openKVM()
	_, qemuErr := exec.LookPath("qemu-system-x86_64")
	forced := Mode(os.Getenv("GOVMM_E2E_MODE"))
	switch {
	case forced != "" && forced != Native && forced != Nested:
		return nil, fmt.Errorf("GOVMM_E2E_MODE=%q: want native or nested", forced)
	case kvmErr != nil && qemuErr != nil:
		return nil, &skipError{fmt.Sprintf("no end-to-end mode possible: %v; qemu-system-x86_64: %v", kvmErr, qemuErr)}
	}

	if err := buildGovmm(t, env); err != nil {
		return nil, err
	}
	if err := runLogged(t, "guest-images", 10*time.Minute, filepath.Join(repo, "guest-images", "build")); err != nil {
		return nil, fmt.Errorf("guest-images/build: %w", err)
	}

	env.Mode, env.ModeReason = decideMode(t, env, forced, kvmErr)
	t.Logf("harness: mode %s: %s", env.Mode, env.ModeReason)
	if env.Mode == Nested {
		if qemuErr != nil {
			return nil, fmt.Errorf("nested mode needs qemu-system-x86_64: %w", qemuErr)
		}
		if err := runLogged(t, "testhost", 15*time.Minute, filepath.Join(repo, "guest-images", "build-testhost")); err != nil {
			return nil, fmt.Errorf("guest-images/build-testhost: %w", err)
		}
		// GOVMM_TESTHOST_KERNEL=linux-image-VER: that L1 kernel, built by
		// build-testhost into its own directory (the stability study).
		dir := "testhost"
		if k := os.Getenv("GOVMM_TESTHOST_KERNEL"); k != "" {
			dir += "-" + strings.TrimPrefix(k, "linux-image-")
		}
		env.HostKernel = filepath.Join(env.Cache, dir, "bzImage")
		env.HostBase = filepath.Join(env.Cache, dir, "base.cpio.gz")
		env.GovmmEnv = []string{"GOVMM_CPU_PIN=auto", "GOVMM_CPU_PIN_SCOPE=all", "GOVMM_SCHED_BATCH=1"}
		var why string
		env.HostQEMU, why = env.pickHostQEMU(t)
		t.Logf("harness: test host QEMU: %s (%s)", env.HostQEMU, why)
	}
	return env, nil
}

// Defaults returns a copy of e that runs govmm as a user would, without
// GovmmEnv: for measurements of govmm's default configuration.
func (e *Env) Defaults() *Env {
	c := *e
	c.GovmmEnv = nil
	return &c
}

// TestHostOptions pick a test host other than the default one.
type TestHostOptions struct {
	// Kernel is the L1 kernel's Debian package (linux-image-VER, e.g. 6.12
	// from bookworm-backports), built by build-testhost into its own
	// directory.
	Kernel  string
	NICPair bool // Env.HostNICPair
}

// WithTestHost returns a copy of e whose test host is built to o, or an
// error that says why it cannot be (then the caller skips: such a host is
// an option, not a requirement). Nested mode only.
func (e *Env) WithTestHost(t T, o TestHostOptions) (*Env, error) {
	t.Helper()
	if e.Mode != Nested {
		return nil, fmt.Errorf("a test host of its own needs nested mode (this run is %s)", e.Mode)
	}
	c := *e
	c.HostNICPair = o.NICPair
	if o.Kernel != "" {
		cmd := exec.Command(filepath.Join(e.Repo, "guest-images", "build-testhost"))
		cmd.Env = append(os.Environ(), "GOVMM_TESTHOST_KERNEL="+o.Kernel, "GOVMM_CACHE="+e.Cache)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build-testhost with %s: %w\n%s", o.Kernel, err, out)
		}
		dir := filepath.Join(e.Cache, "testhost-"+strings.TrimPrefix(o.Kernel, "linux-image-"))
		c.HostKernel = filepath.Join(dir, "bzImage")
		c.HostBase = filepath.Join(dir, "base.cpio.gz")
		t.Logf("harness: test host kernel %s", o.Kernel)
	}
	return &c, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "guest-images", "build")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no repository root (with guest-images/build) above %s", dir)
		}
	}
}

func openKVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	return f.Close()
}

// buildGovmm builds a static binary: the nested test host's initramfs has no libc. GOVMM_BIN names a
// prebuilt binary to use instead (a release build, or to run harness tests while cmd/govmm does not build).
func buildGovmm(t T, env *Env) error {
	if bin := os.Getenv("GOVMM_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("GOVMM_BIN: %w", err)
		}
		env.Govmm, _ = filepath.Abs(bin)
		t.Logf("harness: using GOVMM_BIN=%s", env.Govmm)
		return nil
	}
	srcs, _ := filepath.Glob(filepath.Join(env.Repo, "cmd", "govmm", "*.go"))
	if len(srcs) == 0 {
		t.Logf("harness: cmd/govmm has no Go files yet; GOVMM is unset")
		return nil
	}
	bin := filepath.Join(env.Cache, "bin", "govmm")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/govmm")
	cmd.Dir = env.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/govmm: %w\n%s", err, out)
	}
	env.Govmm = bin
	return nil
}

// decideMode picks native only when this machine's KVM demonstrably boots a stock kernel: PVM's /dev/kvm
// opens fine but hangs such guests, so "/dev/kvm exists" is not enough.
func decideMode(t T, env *Env, forced Mode, kvmErr error) (Mode, string) {
	switch {
	case forced != "":
		return forced, "GOVMM_E2E_MODE=" + string(forced)
	case kvmErr != nil:
		return Nested, kvmErr.Error()
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return Nested, "/dev/kvm is PVM (kvm_pvm loaded), which cannot boot a stock kernel"
	}
	if env.Govmm == "" {
		return Native, "/dev/kvm opens and is not PVM (no govmm binary to probe with)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.Govmm, "run", "--kernel", env.Kernel, "--initrd", env.Initrd,
		"--cmdline", "console=ttyS0 earlyprintk=serial,ttyS0,115200 govmm.end=poweroff")
	killGroupOnCancel(cmd)
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "Linux version") {
		return Native, "probe guest printed \"Linux version\" under this /dev/kvm"
	}
	return Nested, "probe guest printed no \"Linux version\" within 5s under this /dev/kvm"
}

// killGroupOnCancel runs cmd in its own process group and kills the whole group when its context ends, so
// children a script started (a VMM in the background) do not outlive a timeout.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}

// runLogged runs a build script, streaming its output to the test log.
func runLogged(t T, prefix string, timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	killGroupOnCancel(cmd)
	lw := &lineLogger{logf: func(s string) { t.Logf("%s| %s", prefix, s) }}
	cmd.Stdout, cmd.Stderr = lw, lw
	err := cmd.Run()
	lw.Flush()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		return fmt.Errorf("%w: %s", err, strings.Join(lw.tail, "\n"))
	}
	return nil
}

// lineLogger is an io.Writer that hands complete lines to logf and keeps the last few for error messages.
type lineLogger struct {
	mu   sync.Mutex
	logf func(string)
	part []byte
	tail []string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := strings.IndexByte(string(l.part), '\n')
		if i < 0 {
			return len(p), nil
		}
		l.emit(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
}

func (l *lineLogger) emit(s string) {
	s = cleanLine(s)
	l.logf(s)
	if l.tail = append(l.tail, s); len(l.tail) > 20 {
		l.tail = l.tail[1:]
	}
}

// Flush logs a final unterminated line.
func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.part) > 0 {
		l.emit(string(l.part))
		l.part = nil
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Run runs the scenarios in order and returns one Result per scenario, in the same order. In nested mode all
// of them share one test-host boot. Infrastructure failures (a hung test host, QEMU failing) fail the test;
// a scenario's own exit code and timeout are left to the caller to assert.
func (e *Env) Run(t T, scenarios ...Scenario) []Result {
	t.Helper()
	seen := map[string]bool{}
	for i := range scenarios {
		s := &scenarios[i]
		if !nameRE.MatchString(s.Name) || seen[s.Name] {
			t.Fatalf("harness: scenario name %q must match %s and be unique", s.Name, nameRE)
		}
		seen[s.Name] = true
	}
	Retries.ran(len(scenarios))
	results := e.run(t, scenarios)
	// A scenario that fails in the nested test host is retried, each time
	// in a fresh test-host boot, up to nestedRetries times, but only with
	// an excuse: the environment shows it failed (the whole test host hung,
	// its kernel reported a lockup or fault, or a reference VMM's scenario
	// failed in the same boot; see README "Known problems"). A govmm
	// scenario without one fails now: retrying it would hide a lost
	// interrupt or a stalled ring behind a green run.
	boot := make([]int, len(results)) // which test-host boot produced results[i]
	for attempt := 1; ; attempt++ {
		var again []Scenario
		var at []int
		for i, r := range results {
			why := failureReason(scenarios[i], r)
			if why == "" || boot[i] != attempt-1 {
				continue
			}
			if v := StallVerdict(r.Output); r.TimedOut && v != "" {
				t.Logf("harness: scenario %s: stall verdict: %s", r.Name, v)
				why += " [" + strings.SplitN(v, ";", 2)[0] + "]"
			}
			excuse := excuse(scenarios, results, boot, i)
			switch {
			case e.Mode != Nested || attempt > nestedRetries:
				continue // failed for good: the caller's checks and the fault check below report it
			case excuse == "" && !scenarios[i].Reference && strings.Contains(r.Output, GuestCrashMarker):
				// The one unexcused class still retried: a triple fault is a
				// CPU-state failure, not a lost interrupt or a stalled ring,
				// and its cause in the nested host is open (README "Known
				// problems"). Counted apart, so it is never silent.
				excuse = tripleFaultExcuse
			case excuse == "" && !scenarios[i].Reference:
				t.Errorf("harness: scenario %s: %s, and nothing in the environment failed with it "+
					"(no test host hang or kernel fault, no reference VMM failing in the same boot): "+
					"a govmm failure, not retried%s", r.Name, why, quote(append(r.GuestFaults, tail(r.Output, 5)...)))
				Retries.refused(r.Name, why)
				continue
			case excuse == "":
				excuse = "a reference VMM's own failure"
			}
			t.Logf("harness: WARNING: scenario %s: %s (%s); retry %d of %d in a fresh test-host boot",
				r.Name, why, excuse, attempt, nestedRetries)
			Retries.add(r.Name, why+"; "+excuse)
			again, at = append(again, scenarios[i]), append(at, i)
		}
		if len(again) == 0 {
			break
		}
		for j, r := range e.run(t, again) {
			r.Retried = true
			results[at[j]], boot[at[j]] = r, attempt
		}
	}
	for _, r := range results {
		t.Logf("harness: scenario %s: rc=%d timedOut=%v retried=%v in %s", r.Name, r.ExitCode, r.TimedOut,
			r.Retried, r.Duration.Round(10*time.Millisecond))
		if len(r.GuestFaults) > 0 {
			t.Errorf("harness: scenario %s: the guest kernel reported a fault:%s", r.Name, quote(r.GuestFaults))
		}
		if len(r.HostFaults) > 0 {
			t.Logf("harness: WARNING: scenario %s: the test host kernel reported:%s", r.Name, quote(r.HostFaults))
			Retries.hostFault(r.Name, r.HostFaults[0])
		}
	}
	return results
}

// RunOnce runs the scenarios once, in one test-host boot when nested,
// with no retry and no verdict: for studies of the environment itself
// (TestHostStability), which count what Run would retry or fail.
func (e *Env) RunOnce(t T, scenarios ...Scenario) []Result {
	t.Helper()
	return e.run(t, scenarios)
}

// Outcome classifies a result for a study: "ok", or the failure Run would
// have retried or failed.
func Outcome(s Scenario, r Result) string {
	if why := failureReason(s, r); why != "" {
		return why
	}
	if r.ExitCode != 0 {
		return fmt.Sprintf("exit status %d", r.ExitCode)
	}
	return "ok"
}

// failureReason says how a result failed in a way a retry might cure, or
// "" when it passed or failed on its own terms (exit status, checks).
func failureReason(s Scenario, r Result) string {
	switch {
	case strings.Contains(r.Output, GuestCrashMarker) && !s.ExpectCrash:
		return "the guest triple-faulted"
	case r.hostHung:
		return "the whole test host hung"
	case len(r.GuestFaults) > 0:
		return "the guest kernel reported a fault"
	case r.TimedOut:
		return "the guest hung (timed out)"
	case s.GuestMustFinish && !strings.Contains(r.Output, GuestRunEndMarker):
		return "the guest vanished before its run ended"
	}
	return ""
}

// excuse names the environment's failure behind results[i]'s, or "".
func excuse(scenarios []Scenario, results []Result, boot []int, i int) string {
	r := results[i]
	switch {
	case r.hostHung:
		return "environment: the test host stopped making progress"
	case len(r.HostFaults) > 0:
		return "environment: the test host kernel reported " + strings.TrimPrefix(r.HostFaults[0], HostKmsgPrefix)
	}
	for j, o := range results {
		if j != i && boot[j] == boot[i] && scenarios[j].Reference && failureReason(scenarios[j], o) != "" {
			return "environment: reference scenario " + o.Name + " failed in the same test-host boot"
		}
	}
	return ""
}

// tail returns the last n non-empty lines of s.
func tail(s string, n int) []string {
	var out []string
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for _, l := range lines[max(0, len(lines)-n):] {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, "| "+l)
		}
	}
	return out
}

// RetryLedger counts the scenarios run and the retries taken, with their
// reasons, so a green run says how much it leaned on retries.
type RetryLedger struct {
	mu         sync.Mutex
	scenarios  int
	retries    []string
	unexcused  []string
	hostFaults []string
	hostDeaths []string
}

// tripleFaultExcuse is the retry reason of a govmm triple fault that
// nothing in the environment excused; Summary counts them from it.
const tripleFaultExcuse = "NOT excused: a govmm guest triple fault in the nested test host, cause open"

// Retries is the ledger of this test binary; TestMain prints its Summary.
var Retries RetryLedger

func (l *RetryLedger) ran(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scenarios += n
}

func (l *RetryLedger) add(name, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retries = append(l.retries, name+": "+why)
}

func (l *RetryLedger) refused(name, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unexcused = append(l.unexcused, name+": "+why)
}

// hostDied records a test-host boot that died (the L1 reset with no
// kernel message, QEMU exited) and was run again whole, with what had
// already failed in it.
func (l *RetryLedger) hostDied(test string, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := test
	if len(failed) > 0 {
		d += " (in that boot: " + strings.Join(failed, "; ") + ")"
	}
	l.hostDeaths = append(l.hostDeaths, d)
}

func (l *RetryLedger) hostFault(name, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hostFaults = append(l.hostFaults, name+": "+strings.TrimPrefix(line, HostKmsgPrefix))
}

// Summary is one line "retries: N of M scenarios" with the unexcused
// triple faults, refusals and test-host deaths among them, then one line
// per death, retry, failure refused a retry, and test-host kernel fault.
func (l *RetryLedger) Summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "retries: %d of %d scenarios", len(l.retries), l.scenarios)
	triples := 0
	for _, r := range l.retries {
		if strings.HasSuffix(r, tripleFaultExcuse) {
			triples++
		}
	}
	if triples > 0 {
		fmt.Fprintf(&b, " (%d of them govmm triple faults with no environment excuse)", triples)
	}
	if len(l.unexcused) > 0 {
		fmt.Fprintf(&b, "; %d failed without an environment excuse (not retried)", len(l.unexcused))
	}
	if len(l.hostDeaths) > 0 {
		fmt.Fprintf(&b, "; %d test-host boots died and ran again", len(l.hostDeaths))
	}
	for _, d := range l.hostDeaths {
		b.WriteString("\n  test host died: " + d)
	}
	for _, r := range l.retries {
		b.WriteString("\n  retry: " + r)
	}
	for _, r := range l.unexcused {
		b.WriteString("\n  failed, not retried: " + r)
	}
	for _, r := range l.hostFaults {
		b.WriteString("\n  test host kernel: " + r)
	}
	return b.String()
}

// nestedRetries bounds the retries of a scenario whose nested guest died.
const nestedRetries = 2

// GuestCrashMarker is what govmm prints when the guest triple-faults.
const GuestCrashMarker = "triple fault (KVM_EXIT_SHUTDOWN)"

// GuestRunEndMarker is what the guest init prints when its run script
// (govmm.run=) has finished.
const GuestRunEndMarker = "GOVMM-GUEST: run end"

// run runs scenarios once (in one test-host boot when nested) and finds
// the kernel fault lines in their output.
func (e *Env) run(t T, scenarios []Scenario) []Result {
	for i := range scenarios {
		if scenarios[i].Timeout <= 0 {
			scenarios[i].Timeout = defaultTimeout
		}
	}
	var results []Result
	switch {
	case e.boot != nil:
		results = e.boot(t, scenarios)
	case e.Mode == Nested:
		results = e.runNested(t, scenarios)
	default:
		results = e.runNative(t, scenarios)
	}
	for i := range results {
		r := &results[i]
		guest, host := scanFaults(r.Output)
		r.GuestFaults, r.HostFaults = guest, append(host, r.HostFaults...)
	}
	return results
}

func (e *Env) runNative(t T, scenarios []Scenario) []Result {
	results := make([]Result, 0, len(scenarios))
	for _, s := range scenarios {
		work := filepath.Join(t.TempDir(), s.Name)
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatalf("harness: %v", err)
		}
		overlay := filepath.Join(work, "overlay.cpio.gz")
		if err := WriteCPIOGz(overlay, guestFiles(s.GuestFiles)); err != nil {
			t.Fatalf("harness: scenario %s: %v", s.Name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
		args := []string{"sh", "-c", s.HostScript}
		if s.Network {
			ns := fmt.Sprintf("govmm-%d-%s", os.Getpid(), s.Name)
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				t.Fatalf("harness: scenario %s: ip netns add: %v: %s", s.Name, err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			args = append([]string{"ip", "netns", "exec", ns}, args...)
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		killGroupOnCancel(cmd)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOVMM="+e.Govmm, "KERNEL="+e.Kernel, "INITRD="+e.Initrd,
			"OVERLAY="+overlay, "WORK="+work)
		var out strings.Builder
		lw := &lineLogger{logf: func(l string) {
			t.Logf("%s| %s", s.Name, l)
			out.WriteString(l + "\n")
		}}
		cmd.Stdout, cmd.Stderr = lw, lw
		t.Logf("harness: scenario %s: start (native, timeout %s)", s.Name, s.Timeout)
		start := time.Now()
		err := cmd.Run()
		lw.Flush()
		r := Result{Name: s.Name, Duration: time.Since(start), TimedOut: ctx.Err() != nil}
		cancel()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exitErr) && !r.TimedOut:
			r.ExitCode = exitErr.ExitCode()
		default:
			r.ExitCode = -1
			if !r.TimedOut {
				t.Errorf("harness: scenario %s: %v", s.Name, err)
			}
		}
		r.Output = strings.TrimSuffix(out.String(), "\n")
		r.Values = ParseValues(r.Output)
		results = append(results, r)
	}
	return results
}

// copyFile appends src to w.
func copyFile(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, bufio.NewReader(f)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
