package legacy

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gateWriter takes bytes only while its gate is open, like a terminal or
// pipe whose reader has stopped.
type gateWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	open chan struct{}
	fail error
}

func newGateWriter() *gateWriter { return &gateWriter{open: make(chan struct{})} }

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return 0, g.fail
	}
	return g.buf.Write(p)
}

func (g *gateWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

// A stalled reader must not stall the UART while the ring has room, and
// every byte arrives, in order, once it reads again.
func TestConsoleBufferStalledReaderDoesNotBlockGuest(t *testing.T) {
	g := newGateWriter()
	c := NewConsoleBuffer(g, 4096)
	s := NewSerial(c, nil)
	msg := []byte("[    1.234567] Oops: general protection fault\n")
	wrote := make(chan struct{})
	go func() {
		for range 40 { // 40 × 47 B < 4096: fits the ring
			for _, b := range msg {
				wr(s, regRBR, b)
			}
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's console writes waited for a stalled reader")
	}
	close(g.open)
	require.NoError(t, c.Close(10*time.Second))
	require.Equal(t, string(bytes.Repeat(msg, 40)), g.String())
}

// A full ring waits for room (no byte dropped), and Close flushes the rest.
func TestConsoleBufferFullRingWaitsAndLosesNothing(t *testing.T) {
	g := newGateWriter()
	c := NewConsoleBuffer(g, 64)
	var want bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&want, "line %03d\n", i)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(want.Bytes())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a write of %d bytes into a 64-byte ring returned (%v) while nothing drained", want.Len(), err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	require.NoError(t, <-done)
	require.NoError(t, c.Close(10*time.Second))
	require.Equal(t, want.String(), g.String())
}

// Concurrent writers (two vCPUs) each keep their bytes in order; -race
// checks the ring's locking.
func TestConsoleBufferConcurrentWriters(t *testing.T) {
	var out lockedBuffer
	c := NewConsoleBuffer(&out, 128)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				_, err := c.Write([]byte{byte('a' + w), byte('0' + i%10)})
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, c.Close(10*time.Second))
	got := out.String()
	require.Len(t, got, 4000)
	for w := range 2 {
		var seq []byte
		for i := 0; i < len(got); i += 2 {
			if got[i] == byte('a'+w) {
				seq = append(seq, got[i+1])
			}
		}
		require.Len(t, seq, 1000)
		for i, d := range seq {
			require.Equal(t, byte('0'+i%10), d, "writer %d byte %d out of order", w, i)
		}
	}
}

// A writer that fails ends the output with its error instead of blocking
// the guest for good; Close reports it.
func TestConsoleBufferWriterError(t *testing.T) {
	g := newGateWriter()
	g.fail = errors.New("EPIPE")
	close(g.open)
	c := NewConsoleBuffer(g, 16)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write([]byte("0123456789"))
	}
	require.ErrorContains(t, err, "EPIPE")
	require.ErrorContains(t, c.Close(10*time.Second), "EPIPE")
}

func TestConsoleBufferClose(t *testing.T) {
	g := newGateWriter() // never opens: Close gives up after its timeout
	c := NewConsoleBuffer(g, 16)
	_, err := c.Write([]byte("stuck"))
	require.NoError(t, err)
	require.ErrorContains(t, c.Close(20*time.Millisecond), "not flushed")
	_, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, ErrConsoleClosed)
	close(g.open)
}

// The UART hands bytes on without allocating: it runs on the vCPU thread.
func TestSerialTransmitDoesNotAllocate(t *testing.T) {
	c := NewConsoleBuffer(&lockedBuffer{}, 0)
	defer c.Close(time.Second)
	s := NewSerial(c, nil)
	allocs := testing.AllocsPerRun(1000, func() { s.Write(regRBR, []byte{'x'}) })
	require.Zero(t, allocs)
}

// recWriter records each Write as one piece.
type recWriter struct {
	mu     sync.Mutex
	pieces []string
}

func (r *recWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pieces = append(r.pieces, string(p))
	return len(p), nil
}

func (r *recWriter) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.pieces...)
}

// The console writes whole lines, so a log line written to the same pipe
// never lands inside a guest line; an unfinished line goes out after
// PartialLineWait, and Close writes everything at once.
func TestConsoleBufferWritesWholeLines(t *testing.T) {
	w := &recWriter{}
	c := NewConsoleBuffer(w, 64)
	for _, b := range []byte("RESULT: status 0xf") {
		_, _ = c.Write([]byte{b}) // a UART: one byte at a time, slowly
		time.Sleep(PartialLineWait / 8)
	}
	_, _ = c.Write([]byte("\nnext"))
	require.Eventually(t, func() bool { return len(w.got()) == 2 }, time.Second, time.Millisecond)
	require.Equal(t, []string{"RESULT: status 0xf\n", "next"}, w.got(), "the line whole, then the unfinished one after its wait")

	// A ring that wraps: the line is still written in one piece.
	for i := range 5 {
		_, _ = c.Write([]byte(fmt.Sprintf("line %02d of the wrap test\n", i)))
	}
	_, _ = c.Write([]byte("tail"))
	require.NoError(t, c.Close(time.Second))
	var all string
	for _, p := range w.got() {
		if p != "next" && p != "tail" && p[len(p)-1] != '\n' {
			t.Errorf("a piece that is not whole lines: %q", p)
		}
		all += p
	}
	require.Equal(t, "RESULT: status 0xf\nnext"+
		"line 00 of the wrap test\nline 01 of the wrap test\nline 02 of the wrap test\nline 03 of the wrap test\nline 04 of the wrap test\ntail", all)
}
