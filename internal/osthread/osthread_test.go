package osthread

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOwnNamesTheThreadAndReservesAP(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		release := Own("osthread-test")
		defer release()
		b, err := os.ReadFile("/proc/thread-self/comm")
		assert.NoError(t, err)
		assert.Equal(t, "osthread-test\n", string(b))
		assert.GreaterOrEqual(t, runtime.GOMAXPROCS(0), runtime.NumCPU()+2)
	}()
	<-done
}

func TestWait(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)
	fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}

	// The runtime's preemption signal may end a wait early (EINTR).
	var w Waiter
	wait := func(d time.Duration) (int, error) {
		for {
			n, err := w.Wait(fds, d)
			if !errors.Is(err, unix.EINTR) {
				return n, err
			}
		}
	}
	start := time.Now()
	n, err := wait(20 * time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "nothing signalled: a timeout")
	assert.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)

	_, err = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	n, err = wait(-1)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.NotZero(t, fds[0].Revents&unix.POLLIN)

	// No timeout still returns within maxWait.
	fds[0].Revents = 0
	_, _ = unix.Read(efd, make([]byte, 8))
	start = time.Now()
	w.quiet = false
	n, err = w.Wait(fds, -1)
	if err != nil {
		assert.True(t, errors.Is(err, unix.EINTR), "only a preemption signal may end it early: %v", err)
	} else {
		assert.Equal(t, 0, n)
	}
	assert.Less(t, time.Since(start), maxWait+time.Second)
}

// A goroutine blocked in Wait must not hold up the garbage collector's
// stop-the-world: the runtime's preemption signal ends the wait.
func TestWaitDoesNotBlockGC(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		release := Own("osthread-gc")
		defer release()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var w Waiter
			_, _ = w.Wait(nil, 20*time.Millisecond)
		}
	}()
	start := time.Now()
	for range 5 {
		runtime.GC()
	}
	assert.Less(t, time.Since(start), 2*time.Second)
	close(stop)
	<-done
}

func TestSignalDrainReadvWritev(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)
	require.NoError(t, Signal(efd))
	require.NoError(t, Signal(efd))
	var b [8]byte
	n, err := unix.Read(efd, b[:])
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	assert.Equal(t, byte(2), b[0], "two signals counted")
	require.NoError(t, Signal(efd))
	Drain(efd)
	_, err = unix.Read(efd, b[:])
	assert.ErrorIs(t, err, unix.EAGAIN, "drained")

	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var iov IOV
	n, err = iov.Writev(fds[1], [][]byte{[]byte("hello, "), nil, []byte("world")})
	require.NoError(t, err)
	assert.Equal(t, 12, n)
	a, c := make([]byte, 5), make([]byte, 16)
	n, err = iov.Readv(fds[0], [][]byte{a, c})
	require.NoError(t, err)
	assert.Equal(t, 12, n)
	assert.Equal(t, "hello", string(a))
	assert.Equal(t, ", world", string(c[:7]))
	_, err = iov.Readv(fds[0], [][]byte{a})
	assert.ErrorIs(t, err, unix.EAGAIN)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, _ = iov.Writev(fds[1], [][]byte{a})
		_, _ = iov.Readv(fds[0], [][]byte{c})
	}))
}

// A thread that waited QuietAfter or more is idle: its next wait goes
// through the runtime's hooks; one that returns sooner is busy again.
func TestWaiterGoesQuietWhenIdle(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)
	fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	var w Waiter
	_, err = w.Wait(fds, 2*QuietAfter)
	if err == nil {
		assert.True(t, w.quiet, "a wait of 2×QuietAfter makes the thread idle")
	}
	require.NoError(t, Signal(efd))
	n, err := w.Wait(fds, -1) // hooked: a ready fd returns at once
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.False(t, w.quiet, "a wait that ended at once makes it busy again")
}
