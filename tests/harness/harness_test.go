package harness

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCPIOHeaderFormat(t *testing.T) {
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	require.NoError(t, w.WriteFile("/a", 0o755, []byte("xyz")))
	require.NoError(t, w.Close())
	b := buf.Bytes()

	// Header (110 bytes) + "a\0" padded to 112, 3 data bytes padded to 4.
	require.Equal(t, "070701", string(b[:6]))
	assert.Equal(t, "000081ED", string(b[14:22]), "mode: regular file 0755")
	assert.Equal(t, "00000003", string(b[54:62]), "filesize")
	assert.Equal(t, "00000002", string(b[94:102]), "namesize includes the NUL")
	assert.Equal(t, "a\x00", string(b[110:112]))
	assert.Equal(t, "xyz\x00", string(b[112:116]))
	assert.Equal(t, "070701", string(b[116:122]), "trailer follows, 4-byte aligned")
	assert.Contains(t, string(b[116:]), "TRAILER!!!\x00")
	assert.Zero(t, len(b)%4)
}

// TestCPIORoundTrip extracts an archive with the system cpio, which is what the kernel format follows.
func TestCPIORoundTrip(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio on this machine")
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "x.cpio.gz")
	big := bytes.Repeat([]byte("0123456789"), 10007) // not a multiple of 4
	require.NoError(t, WriteCPIOGz(archive, []File{
		{Path: "/usr/bin/tool", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		{Path: "etc/conf", Mode: 0o644, Data: []byte("k=v")},
		{Path: "/usr/share/big", Mode: 0o600, Data: big},
		{Path: "/empty", Mode: 0o644},
	}))

	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)

	list := exec.Command("cpio", "-t", "--quiet")
	list.Stdin = bytes.NewReader(raw)
	out, err := list.Output()
	require.NoError(t, err)
	assert.Equal(t, []string{"empty", "etc", "etc/conf", "usr", "usr/bin", "usr/bin/tool", "usr/share", "usr/share/big"},
		strings.Fields(string(out)), "parents precede their files, in sorted order")

	dst := filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(dst, 0o755))
	extract := exec.Command("cpio", "-i", "--quiet", "--no-absolute-filenames")
	extract.Dir, extract.Stdin = dst, bytes.NewReader(raw)
	require.NoError(t, extract.Run())

	got, err := os.ReadFile(filepath.Join(dst, "usr/share/big"))
	require.NoError(t, err)
	assert.Equal(t, big, got)
	st, err := os.Stat(filepath.Join(dst, "usr/bin/tool"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(dst, "empty"))
	require.NoError(t, err)
	assert.Zero(t, st.Size())
}

func TestGuestFilesModes(t *testing.T) {
	files := guestFiles(map[string]string{"/run.sh": "echo", "/bin/x": "#!/bin/sh\n", "/etc/data": "1", "/bin/prog": "\x7fELF\x02\x01"})
	modes := map[string]os.FileMode{}
	for _, f := range files {
		modes[f.Path] = f.Mode
	}
	assert.Equal(t, map[string]os.FileMode{"/run.sh": 0o755, "/bin/x": 0o755, "/etc/data": 0o644, "/bin/prog": 0o755}, modes)
}

func TestParseValues(t *testing.T) {
	out := "noise\nRESULT: rx 1234 Mbit/s\r\nL1[x] RESULT: tx  99 \nRESULT:\nRESULT: rx 5\nRESULT: flag\n"
	assert.Equal(t, map[string]string{"rx": "5", "tx": "99", "flag": ""}, ParseValues(out))
}

func TestSplitScenarios(t *testing.T) {
	out := strings.Join([]string{
		"TESTHOST: ready 4.2",
		"SCENARIO-BEGIN a",
		"line 1\r",
		"RESULT: k v",
		"SCENARIO-END a rc=0 secs=1.50",
		"between",
		"SCENARIO-BEGIN b",
		"no newline at the endSCENARIO-END b rc=3 secs=0.10",
		"SCENARIO-BEGIN c",
		"SCENARIO-TIMEOUT c",
		"SCENARIO-END c rc=137 secs=10.00",
		"SCENARIO-BEGIN d",
		"started, then the host hung",
	}, "\n")
	segs := splitScenarios(out)
	require.Len(t, segs, 4)

	assert.Equal(t, &segment{Output: "line 1\nRESULT: k v", RC: 0, Secs: 1.5, Ended: true}, segs["a"])
	assert.Equal(t, &segment{Output: "no newline at the end", RC: 3, Secs: 0.1, Ended: true}, segs["b"])
	assert.True(t, segs["c"].TimedOut)
	assert.Equal(t, 137, segs["c"].RC)
	assert.False(t, segs["d"].Ended)
	assert.Contains(t, segs["d"].Output, "host hung")
}

func TestCleanLine(t *testing.T) {
	assert.Equal(t, "SeaBIOS", cleanLine("\x1bc\x1b[?7l\x1b[2JSeaBIOS\r"))
}

func TestLineLogger(t *testing.T) {
	var got []string
	l := &lineLogger{logf: func(s string) { got = append(got, s) }}
	_, _ = l.Write([]byte("a\nb"))
	_, _ = l.Write([]byte("c\r\nd"))
	l.Flush()
	assert.Equal(t, []string{"a", "bc", "d"}, got)
}

// TestDriver runs driver.sh under busybox sh, as the test host does: markers, exit codes, the environment,
// and a timeout that must also kill what the scenario left in the background.
func TestDriver(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on this machine")
	}
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755))
	}
	write("run.sh", string(driverScript))
	write("list", "ok 5\nslow 1\n")
	write("ok.sh", `echo "RESULT: govmm $GOVMM"; echo "RESULT: work $WORK"; exit 4`)
	pidFile := filepath.Join(dir, "bg.pid")
	write("slow.sh", "sleep 30 & echo $! >"+pidFile+"\nsleep 30\n")

	cmd := exec.Command(bb, "sh", filepath.Join(dir, "run.sh"))
	cmd.Env = append(os.Environ(), "SCENARIO_DIR="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Less(t, time.Since(start), 10*time.Second, "the watchdog must end the slow scenario")

	segs := splitScenarios(string(out))
	require.Contains(t, segs, "ok", string(out))
	require.Contains(t, segs, "slow", string(out))
	assert.Equal(t, 4, segs["ok"].RC)
	assert.Equal(t, filepath.Join(dir, "govmm"), ParseValues(segs["ok"].Output)["govmm"])
	assert.Equal(t, "/tmp/work/ok", ParseValues(segs["ok"].Output)["work"])
	assert.True(t, segs["slow"].TimedOut, string(out))
	assert.NotEqual(t, 0, segs["slow"].RC)

	pid, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return !alive(strings.TrimSpace(string(pid))) }, 2*time.Second,
		50*time.Millisecond, "background child of a timed-out scenario must be killed")
}

// alive reports whether pid runs; a zombie counts as dead since its reaper (init or a subreaper) may be slow.
func alive(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

func TestFailureReasonAndSummary(t *testing.T) {
	must := Scenario{Name: "q", GuestMustFinish: true}
	assert.Equal(t, "", failureReason(Scenario{}, Result{Output: "fine"}))
	assert.Equal(t, "", failureReason(must, Result{Output: GuestRunEndMarker + " rc=0"}))
	assert.Equal(t, "the guest triple-faulted", failureReason(Scenario{}, Result{Output: "x " + GuestCrashMarker}))
	assert.Equal(t, "the whole test host hung", failureReason(Scenario{}, Result{TimedOut: true, hostHung: true}))
	assert.Equal(t, "the guest hung (timed out)", failureReason(Scenario{}, Result{TimedOut: true}))
	assert.Equal(t, "the guest vanished before its run ended", failureReason(must, Result{Output: "no end"}))
	assert.Equal(t, "the guest kernel reported a fault", failureReason(Scenario{}, Result{GuestFaults: []string{"Oops"}}))

	var l RetryLedger
	l.ran(3)
	assert.Equal(t, "retries: 0 of 3 scenarios", l.Summary())
	l.ran(2)
	l.add("govmm-mrg", "the guest hung (timed out)")
	assert.Equal(t, "retries: 1 of 5 scenarios\n  retry: govmm-mrg: the guest hung (timed out)", l.Summary())
	l.refused("zerocopy-mrg", "the guest hung (timed out)")
	l.hostFault("lifecycle", HostKmsgPrefix+"[12.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!")
	assert.Equal(t, "retries: 1 of 5 scenarios; 1 failed without an environment excuse (not retried)"+
		"\n  retry: govmm-mrg: the guest hung (timed out)"+
		"\n  failed, not retried: zerocopy-mrg: the guest hung (timed out)"+
		"\n  test host kernel: lifecycle: [12.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!", l.Summary())

	var d RetryLedger
	d.ran(2)
	out := "SCENARIO-BEGIN a\nx " + GuestCrashMarker + "\nSCENARIO-END a rc=1 secs=3.00\nSCENARIO-BEGIN b\nHEARTBEAT rx_packets 1 tx_packets 1"
	d.hostDied("TestZeroCopy", diedBootFailures([]Scenario{{Name: "a"}, {Name: "b"}, {Name: "c"}}, out))
	assert.Equal(t, "retries: 0 of 2 scenarios; 1 test-host boots died and ran again"+
		"\n  test host died: TestZeroCopy (in that boot: a: the guest triple-faulted; b: running when the host died)", d.Summary())
}

func TestScanFaults(t *testing.T) {
	out := strings.Join([]string{
		"GOVMM-GUEST: eth0 up",
		"HEARTBEAT rx_packets 12 tx_packets 9",
		"[    7.123456] BUG: kernel NULL pointer dereference, address: 0000000000000008",
		"[    7.123999] Oops: 0000 [#1] PREEMPT SMP NOPTI",
		"iperf3: the transfer stalled", // not a kernel report
		HostKmsgPrefix + "[120.000001] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [qemu-system-x86:311]",
		"[   30.5] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
		"[   40.1] INFO: task sh:77 blocked for more than 120 seconds.",
		"[   50.0] Kernel panic - not syncing: Fatal exception",
	}, "\n")
	guest, host := scanFaults(out)
	assert.Equal(t, []string{
		"[    7.123456] BUG: kernel NULL pointer dereference, address: 0000000000000008",
		"[    7.123999] Oops: 0000 [#1] PREEMPT SMP NOPTI",
		"[   30.5] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
		"[   40.1] INFO: task sh:77 blocked for more than 120 seconds.",
		"[   50.0] Kernel panic - not syncing: Fatal exception",
	}, guest)
	assert.Equal(t, []string{HostKmsgPrefix + "[120.000001] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [qemu-system-x86:311]"}, host)

	log := filepath.Join(t.TempDir(), "k.log")
	require.NoError(t, os.WriteFile(log, []byte("[  1.0] ok\r\n[ 99.0] rcu: INFO: rcu_sched self-detected stall on CPU\r\n"), 0o644))
	assert.Equal(t, []string{HostKmsgPrefix + "[ 99.0] rcu: INFO: rcu_sched self-detected stall on CPU"}, hostKernelFaults(log))
	assert.Nil(t, hostKernelFaults(filepath.Join(t.TempDir(), "missing")))
}

// recT is a harness.T that records failures instead of failing.
type recT struct {
	testing.TB
	errs []string
}

func (r *recT) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recT) Logf(string, ...any)       {}

// The retry policy: a govmm scenario is retried only with an environment
// excuse; otherwise it fails at once, and a guest kernel fault always
// fails.
func TestRunRetryPolicy(t *testing.T) {
	type attempt map[string]Result // scenario name -> result of that boot
	cases := []struct {
		name     string
		sc       []Scenario
		boots    []attempt
		wantRuns int
		wantErr  string // substring of the one failure, "" for none
		retries  int
	}{
		{
			name: "govmm hang alone fails without retry",
			sc:   []Scenario{{Name: "g"}},
			boots: []attempt{
				{"g": {TimedOut: true, Output: "last words"}},
			},
			wantRuns: 1, wantErr: "g: the guest hung (timed out), and nothing in the environment failed",
		},
		{
			name: "govmm hang with the reference failing in the same boot is retried",
			sc:   []Scenario{{Name: "g"}, {Name: "q", Reference: true, GuestMustFinish: true}},
			boots: []attempt{
				{"g": {TimedOut: true}, "q": {Output: "no end marker"}},
				{"g": {}, "q": {Output: GuestRunEndMarker}},
			},
			wantRuns: 2, retries: 2,
		},
		{
			name: "an L1 soft lockup excuses a retry",
			sc:   []Scenario{{Name: "g"}},
			boots: []attempt{
				{"g": {TimedOut: true, Output: HostKmsgPrefix + "[5.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!"}},
				{"g": {}},
			},
			wantRuns: 2, retries: 1,
		},
		{
			name: "a whole-host hang excuses a retry, twice at most",
			sc:   []Scenario{{Name: "g"}},
			boots: []attempt{
				{"g": {TimedOut: true, hostHung: true}},
				{"g": {TimedOut: true, hostHung: true}},
				{"g": {TimedOut: true, hostHung: true}},
			},
			wantRuns: 3, retries: 2,
		},
		{
			name: "a govmm triple fault alone is retried, counted apart",
			sc:   []Scenario{{Name: "g"}},
			boots: []attempt{
				{"g": {Output: "x " + GuestCrashMarker}},
				{"g": {}},
			},
			wantRuns: 2, retries: 1,
		},
		{
			name: "a guest oops fails and is quoted",
			sc:   []Scenario{{Name: "g"}},
			boots: []attempt{
				{"g": {Output: "[ 3.1] Oops: 0002 [#1] SMP"}},
			},
			wantRuns: 1, wantErr: "[ 3.1] Oops: 0002 [#1] SMP",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			Retries = RetryLedger{}
			runs := 0
			e := &Env{Mode: Nested, boot: func(_ T, s []Scenario) []Result {
				require.Less(t, runs, len(c.boots), "more test-host boots than expected")
				var out []Result
				for _, sc := range s {
					r := c.boots[runs][sc.Name]
					r.Name = sc.Name
					out = append(out, r)
				}
				runs++
				return out
			}}
			rt := &recT{TB: t}
			e.Run(rt, c.sc...)
			assert.Equal(t, c.wantRuns, runs, "test-host boots")
			assert.Len(t, Retries.retries, c.retries, Retries.Summary())
			if strings.HasPrefix(c.name, "a govmm triple fault") {
				assert.Contains(t, Retries.Summary(), "(1 of them govmm triple faults with no environment excuse)")
			}
			if c.wantErr == "" {
				assert.Empty(t, rt.errs)
			} else {
				require.NotEmpty(t, rt.errs)
				assert.Contains(t, strings.Join(rt.errs, "\n"), c.wantErr)
			}
		})
	}
	Retries = RetryLedger{}
}

func TestStallVerdict(t *testing.T) {
	hb := func(rx, tx, ri, ti int) string {
		return fmt.Sprintf("HEARTBEAT rx_packets %d tx_packets %d irqs virtio0-input.0 %d virtio0-output.0 %d", rx, tx, ri, ti)
	}
	dump := func(rxSent, txSent, txAvail, txUsed int) string {
		return fmt.Sprintf("govmm: state dump (SIGUSR1)\nnet0 (tap tap0, ixgbe-zerocopy):\n"+
			"  rx: next_avail=10 next_used=8 in_flight=2 size=256 avail.idx=300 used.idx=44 avail.flags=0 used.flags=0; interrupts sent %d; lent to the model 2\n"+
			"  tx: size=256 avail.idx=%d used.idx=%d avail.flags=1 used.flags=0; interrupts sent %d; completions not yet published 0", rxSent, txAvail, txUsed, txSent)
	}
	cases := []struct{ out, want string }{
		{"nothing here", ""},
		{dump(5, 5, 1, 1), "no guest heartbeat"},
		{hb(1, 1, 1, 1), "no govmm state dump"},
		{hb(1, 1, 1, 1) + "\n" + hb(9, 9, 4, 4) + "\n" + dump(4, 4, 9, 9), "still moved"},
		{hb(9, 9, 4, 4) + "\n" + hb(9, 9, 4, 4) + "\n" + dump(6, 4, 9, 9), "interrupt lost or still pending"},
		{hb(9, 9, 4, 4) + "\n" + hb(9, 9, 4, 4) + "\n" + dump(4, 4, 12, 9), "device stuck: 3 frames"},
		{hb(9, 9, 4, 4) + "\n" + hb(9, 9, 4, 4) + "\n" + dump(4, 4, 9, 9), "guest stuck"},
	}
	for _, c := range cases {
		v := StallVerdict(c.out)
		if c.want == "" {
			assert.Empty(t, v)
			continue
		}
		assert.Contains(t, v, c.want, c.out)
	}
	v := StallVerdict(hb(9, 9, 4, 4) + "\n" + hb(9, 9, 4, 4) + "\n" + dump(6, 4, 9, 9))
	assert.Contains(t, v, "govmm: sent rx/tx interrupts 6/4")
	assert.Contains(t, v, "guest: rx_packets 9 tx_packets 9, took rx/tx interrupts 4/4")

	// Where the guest was: its last progress line, and the vCPUs of the
	// last dump.
	out := "   18.96 GOVMM-GUEST: run start /hostile.sh\n   19.01 RESULT: before 3\n" + dump(5, 5, 1, 1) +
		"\nvcpu0: exits 10, last hlt; rip=0xffffffff81000000 rsp=0x1\nvcpu0: exits 12, last mmio; rip=0xffffffff8100abcd rsp=0x2\n" +
		"vcpu1: exits 3, last intr; no answer (its thread is busy outside KVM_RUN)"
	v = StallVerdict(out)
	assert.Contains(t, v, `the guest's last progress line: "RESULT: before 3"`)
	assert.Contains(t, v, "vcpu0 12 exits, last mmio at rip 0xffffffff8100abcd, vcpu1 3 exits, last intr")
}

// The images' init scripts run as PID 1, where a syntax error is a kernel
// panic at boot: parse them here first.
func TestImageScriptsParse(t *testing.T) {
	root, err := repoRoot()
	require.NoError(t, err)
	for _, f := range []string{"testhost-init", "guest-init", "lib.sh", "build", "build-testhost"} {
		path := filepath.Join(root, "guest-images", f)
		src, err := os.ReadFile(path)
		require.NoError(t, err)
		shell := "sh" // busybox sh in the images; dash here is as strict
		if strings.HasPrefix(string(src), "#!/bin/bash") || strings.HasPrefix(string(src), "#!/usr/bin/env bash") || f == "lib.sh" {
			shell = "bash"
		}
		out, err := exec.Command(shell, "-n", path).CombinedOutput()
		assert.NoError(t, err, "%s: %s", f, out)
	}
}
