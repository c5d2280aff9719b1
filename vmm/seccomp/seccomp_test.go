package seccomp

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildChild builds testdata/child as govmm itself is built: static, and
// without the race detector even under go test -race.
func buildChild(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the child")
	}
	bin := filepath.Join(t.TempDir(), "child")
	cmd := exec.Command(goBin, "build", "-o", bin, "./testdata/child")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func TestFilterAllowsTheVMMAndStopsTheRest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts child processes")
	}
	bin := buildChild(t)
	run := func(mode, what string) (string, error) {
		out, err := exec.Command(bin, mode, what, t.TempDir()).CombinedOutput()
		return string(out), err
	}
	out, err := run("on", "work")
	require.NoError(t, err, out)
	require.Contains(t, out, "CHILD: allowed work done")

	out, err = run("on", "exec")
	require.Error(t, err, "a refused call must stop the process")
	require.Contains(t, out, "CHILD: allowed work done")
	require.Contains(t, out, "SIGSYS: bad system call", "the failure names itself")
	require.NotContains(t, out, "CHILD: exec returned")

	out, err = run("log", "exec")
	require.NoError(t, err, out)
	require.Contains(t, out, "CHILD: exec returned", "log mode allows, the kernel logs")

	out, err = run("off", "exec")
	require.NoError(t, err, out)
	require.Contains(t, out, "CHILD: exec returned")

	// The AF_XDP feature allows AF_XDP sockets, and only those.
	out, err = run("on", "xdp")
	require.Error(t, err, out)
	require.Contains(t, out, "CHILD: AF_XDP socket opened")
	require.Contains(t, out, "SIGSYS: bad system call")
	require.NotContains(t, out, "CHILD: AF_INET socket returned")
}

func TestParseMode(t *testing.T) {
	for s, m := range map[string]Mode{"on": On, "log": Log, "off": Off} {
		got, err := ParseMode(s)
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := ParseMode("strict")
	require.ErrorContains(t, err, "want on, log or off")
}
