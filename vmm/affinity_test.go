package vmm

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParsePlacement(t *testing.T) {
	for _, s := range []string{"", "off"} {
		p, err := ParsePlacement(s, 2)
		require.NoError(t, err)
		require.Empty(t, p.VCPUs, s)
	}
	p, err := ParsePlacement("3,5", 2)
	require.NoError(t, err)
	require.Equal(t, []int{3, 5}, p.VCPUs)
	for _, bad := range []string{"3", "3,5,7", "x", "-1", "1024", "3,,5"} {
		_, err := ParsePlacement(bad, 2)
		require.Error(t, err, bad)
	}
}

// auto takes the last CPUs the process may use, one per vCPU; device
// threads are moved off them only when a CPU is left for them.
func TestParsePlacementAuto(t *testing.T) {
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	p, err := ParsePlacement("auto", 1)
	require.NoError(t, err)
	if len(cpus) < 2 {
		require.Empty(t, p.VCPUs)
	} else {
		require.Equal(t, cpus[len(cpus)-1:], p.VCPUs)
		d, ok, err := p.deviceSet()
		require.NoError(t, err)
		require.True(t, ok)
		require.False(t, d.IsSet(cpus[len(cpus)-1]), "the vCPU's CPU is not a device CPU")
		require.Equal(t, len(cpus)-1, d.Count())
	}
	p, err = ParsePlacement("auto", len(cpus))
	require.NoError(t, err)
	require.Equal(t, cpus, p.VCPUs, "as many vCPUs as CPUs: one each")
	_, ok, err := p.deviceSet()
	require.NoError(t, err)
	require.False(t, ok, "no CPU left: device threads are not moved")
	require.Nil(t, p.DeviceThread())
	p, err = ParsePlacement("auto", len(cpus)+1)
	require.NoError(t, err)
	require.Empty(t, p.VCPUs, "more vCPUs than CPUs: not pinned")
}

func TestParseScope(t *testing.T) {
	for s, want := range map[string]Scope{"": ScopePollers, "pollers": ScopePollers, "all": ScopeAll, "vcpus": ScopeVCPUs} {
		got, err := ParseScope(s)
		require.NoError(t, err)
		require.Equal(t, want, got, s)
	}
	_, err := ParseScope("some")
	require.Error(t, err)
}

func TestDeviceThreadFollowsScope(t *testing.T) {
	require.Nil(t, Placement{}.DeviceThread(), "unpinned: device threads stay put")
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &set))
	if set.Count() < 2 {
		t.Skip("needs two CPUs")
	}
	p, err := ParsePlacement("auto", 1)
	require.NoError(t, err)
	require.NotNil(t, p.DeviceThread())
	p.Scope = ScopeVCPUs
	require.Nil(t, p.DeviceThread())
}

// BatchDevices: every thread becomes SCHED_BATCH, and a vCPU thread takes
// SCHED_NORMAL back for itself.
func TestBatchDevices(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := Placement{BatchDevices: true}
	require.NoError(t, p.batchAll())
	defer func() { // the rest of the test binary runs as before
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				_ = setPolicy(tid, unix.SCHED_NORMAL)
			}
		}
	}()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err == unix.ESRCH {
			continue
		}
		require.NoError(t, err)
		require.Equal(t, uint32(unix.SCHED_BATCH), a.Policy, "thread %d", tid)
	}
	require.NoError(t, p.vcpuNormal())
	a, err := unix.SchedGetAttr(0, 0)
	require.NoError(t, err)
	require.Equal(t, uint32(unix.SCHED_NORMAL), a.Policy, "the vCPU thread is SCHED_NORMAL again")
	require.NoError(t, Placement{}.batchAll(), "off: nothing to do")
}
