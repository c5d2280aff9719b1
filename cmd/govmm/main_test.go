package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildGovmm compiles the command once per test binary.
func buildGovmm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "govmm")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// The user-facing contract for bad input: exactly one line on stderr, a
// non-zero exit, and never a Go panic or stack trace. None of these need KVM.
func TestBadInputIsOneClearLine(t *testing.T) {
	bin := buildGovmm(t)
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notKernel, []byte(strings.Repeat("hello\n", 200)), 0o644))
	kernel := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(kernel, fakeKernel(), 0o644))
	noAccess := filepath.Join(dir, "kvm")
	require.NoError(t, os.WriteFile(noAccess, nil, 0o000))

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing kernel", []string{"run", "--kernel", filepath.Join(dir, "nope")}, "--kernel"},
		{"not a bzImage", []string{"run", "--kernel", notKernel}, "not a Linux bzImage"},
		{"mem zero", []string{"run", "--kernel", kernel, "--mem", "0"}, "--mem"},
		{"mem too large", []string{"run", "--kernel", kernel, "--mem", "100000G"}, "more than this host"},
		{"mem garbage", []string{"run", "--kernel", kernel, "--mem", "lots"}, "--mem"},
		{"mem too small", []string{"run", "--kernel", kernel, "--mem", "1M", "--kvm", "/dev/null"}, "too small"},
		{"cpus zero", []string{"run", "--kernel", kernel, "--cpus", "0"}, "--cpus"},
		{"cpus too many", []string{"run", "--kernel", kernel, "--cpus", "99"}, "--cpus"},
		{"no kvm device", []string{"run", "--kernel", kernel, "--kvm", filepath.Join(dir, "absent")}, "absent"},
		{"kvm not a kvm", []string{"run", "--kernel", kernel, "--kvm", "/dev/null"}, "/dev/null"},
		{"unknown flag", []string{"run", "--bogus"}, "bogus"},
		{"no command", nil, ""},
	}
	if os.Geteuid() != 0 { // root ignores file modes
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"kvm permission denied", []string{"run", "--kernel", kernel, "--kvm", noAccess}, "permission denied"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Stdout = &bytes.Buffer{}
			err := cmd.Run()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "govmm must fail")
			require.NotZero(t, ee.ExitCode())
			msg := stderr.String()
			require.NotContains(t, msg, "panic")
			require.NotContains(t, msg, "goroutine ")
			if c.want != "" {
				require.Contains(t, msg, c.want)
				require.Equal(t, 1, strings.Count(strings.TrimRight(msg, "\n"), "\n")+1, "want one line, got:\n%s", msg)
			}
		})
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	bin := buildGovmm(t)
	out, err := exec.Command(bin, "run", "--help").CombinedOutput()
	require.NoError(t, err)
	for _, f := range []string{"--kernel", "--initrd", "--cmdline", "--mem", "--cpus", "--net", "--stats"} {
		require.Contains(t, string(out), f)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"256": 256 << 20, "256M": 256 << 20, "1G": 1 << 30, "1GiB": 1 << 30, "512k": 512 << 10, "2048MB": 2 << 30} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "M", "-1", "1T", "99999999999999999999G"} {
		_, err := ParseSize(in)
		require.Error(t, err, in)
	}
}

// fakeKernel is a minimal image with a valid bzImage 2.15 header, enough
// to get past argument validation.
func fakeKernel() []byte {
	img := make([]byte, 8192)
	img[0x1F1] = 4
	img[0x1FE], img[0x1FF] = 0x55, 0xAA
	img[0x201] = 0x6A
	copy(img[0x202:], "HdrS")
	img[0x206], img[0x207] = 0x0F, 0x02
	img[0x211] = 1
	img[0x236] = 1
	img[0x238] = 0xFF
	return img
}
