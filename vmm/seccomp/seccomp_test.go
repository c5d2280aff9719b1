package seccomp

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFilterChild runs inside a child process started by the tests below:
// it installs the filter, does what a running VMM does (goroutines,
// timers, files, eventfd, the stats file's write-and-rename), and then,
// when asked, a call the filter refuses.
func TestFilterChild(t *testing.T) {
	what := os.Getenv("SECCOMP_CHILD")
	if what == "" {
		t.Skip("run by TestFilterAllowsTheVMMAndStopsTheRest")
	}
	mode, err := ParseMode(os.Getenv("SECCOMP_MODE"))
	require.NoError(t, err)
	require.NoError(t, Install(mode))
	done := make(chan struct{})
	go func() { time.Sleep(10 * time.Millisecond); close(done) }()
	<-done
	dir := os.Getenv("SECCOMP_DIR")
	tmp, err := os.CreateTemp(dir, ".stats-*")
	require.NoError(t, err)
	_, err = tmp.WriteString("{}\n")
	require.NoError(t, err)
	require.NoError(t, tmp.Close())
	require.NoError(t, os.Rename(tmp.Name(), filepath.Join(dir, "stats.json")))
	os.Stdout.WriteString("CHILD: allowed work done\n")
	if what == "exec" {
		_ = exec.Command("/bin/true").Run() // execve (after clone): refused
		os.Stdout.WriteString("CHILD: exec returned\n")
	}
}

func child(t *testing.T, mode, what string) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestFilterChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SECCOMP_CHILD="+what, "SECCOMP_MODE="+mode, "SECCOMP_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestFilterAllowsTheVMMAndStopsTheRest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	out, err := child(t, "on", "work")
	require.NoError(t, err, out)
	require.Contains(t, out, "CHILD: allowed work done")

	out, err = child(t, "on", "exec")
	require.Error(t, err, "a refused call must stop the process")
	require.Contains(t, out, "CHILD: allowed work done")
	require.Contains(t, out, "SIGSYS: bad system call", "the failure names itself")
	require.NotContains(t, out, "CHILD: exec returned")

	out, err = child(t, "log", "exec")
	require.NoError(t, err, out)
	require.Contains(t, out, "CHILD: exec returned", "log mode allows, the kernel logs")

	out, err = child(t, "off", "exec")
	require.NoError(t, err, out)
	require.True(t, strings.Contains(out, "CHILD: exec returned"))
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
