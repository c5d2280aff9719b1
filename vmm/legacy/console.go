package legacy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ConsoleBufferSize is the default ring size of a ConsoleBuffer: a kernel
// oops trace or a boot log fits without the guest ever waiting.
const ConsoleBufferSize = 256 << 10

// ErrConsoleClosed is returned by Write after Close.
var ErrConsoleClosed = errors.New("console: closed")

// ConsoleBuffer takes the guest console's host writer off the vCPU thread,
// as QEMU's chardev layer does: Write copies into a fixed ring and returns
// at once; one goroutine drains the ring to the writer. A full ring makes
// Write wait for room (flow control, as a UART's THRE would) rather than
// drop a byte, so output is lost only if the process is killed. Host
// memory is the ring (and the drainer's copy of it), whatever the guest
// prints.
//
// The drainer writes whole lines: an unfinished line waits for its end
// while the guest keeps printing (a UART byte is an exit: a line takes
// milliseconds, nested tens of them), and goes out once the guest has
// printed nothing for PartialLineWait (a prompt) or after MaxLineWait.
// govmm's own log lines go to the same terminal or pipe as the console,
// and a guest line written in two pieces would have a log line land in its
// middle.
type ConsoleBuffer struct {
	mu      sync.Mutex
	room    sync.Cond // signalled when the drainer frees ring space
	data    sync.Cond // signalled when Write adds bytes or Close is called
	ring    []byte
	r, n    int // ring[r:] then ring[:...] holds n unwritten bytes
	closed  bool
	err     error // the writer's first failure: output is dropped from then on
	w       io.Writer
	drained chan struct{}
	lin     []byte // the drainer's linear copy of the ring's bytes
}

// PartialLineWait is how long an unfinished line waits after the guest's
// last byte before it is written (a shell prompt); MaxLineWait bounds the
// wait of a line the guest never ends.
const (
	PartialLineWait = 20 * time.Millisecond
	MaxLineWait     = time.Second
)

// pipeAtomic is PIPE_BUF on Linux.
const pipeAtomic = 4096

// NewConsoleBuffer starts draining into w through a ring of size bytes
// (ConsoleBufferSize if size <= 0). Close flushes and stops it.
func NewConsoleBuffer(w io.Writer, size int) *ConsoleBuffer {
	if size <= 0 {
		size = ConsoleBufferSize
	}
	c := &ConsoleBuffer{ring: make([]byte, size), lin: make([]byte, size), w: w, drained: make(chan struct{})}
	c.room.L, c.data.L = &c.mu, &c.mu
	go c.drain()
	return c
}

// Write implements io.Writer. It blocks only while the ring is full. After
// the writer failed it reports that error and drops p; after Close it
// returns ErrConsoleClosed.
func (c *ConsoleBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := 0
	for done < len(p) {
		for c.n == len(c.ring) && !c.closed && c.err == nil {
			c.room.Wait()
		}
		switch {
		case c.closed:
			return done, ErrConsoleClosed
		case c.err != nil:
			return done, c.err
		}
		w := (c.r + c.n) % len(c.ring)
		k := copy(c.ring[w:min(len(c.ring), w+len(c.ring)-c.n)], p[done:])
		c.n += k
		done += k
		c.data.Signal()
	}
	return done, nil
}

// drain writes the ring out up to its last newline, outside the lock so a
// slow writer never holds Write up while the ring has room. An unfinished
// line is written once it has waited PartialLineWait, or at once when the
// ring is full or the console closing.
func (c *ConsoleBuffer) drain() {
	defer close(c.drained)
	c.mu.Lock()
	defer c.mu.Unlock()
	var partial, grew time.Time // an unfinished line at the front: first seen, last grown
	seen := 0                   // c.n when last looked at
	for {
		for c.n == 0 && !c.closed {
			c.data.Wait()
		}
		if c.n == 0 {
			return // closed and flushed
		}
		first := c.ring[c.r:min(len(c.ring), c.r+c.n)]
		k := copy(c.lin, first)
		k += copy(c.lin[k:c.n], c.ring[:c.n-k])
		out := c.lin[:k]
		if len(out) > pipeAtomic {
			// A pipe write is atomic only up to PIPE_BUF: past it another
			// writer's line may land inside ours. Cut at a line end.
			if i := bytes.LastIndexByte(out[:pipeAtomic], '\n'); i >= 0 {
				out = out[:i+1]
			}
		}
		if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
			out, partial = out[:i+1], time.Time{}
		} else if !c.closed && c.n < len(c.ring) {
			now := time.Now()
			if partial.IsZero() {
				partial = now
			}
			if c.n != seen {
				seen, grew = c.n, now
			}
			if now.Sub(grew) < PartialLineWait && now.Sub(partial) < MaxLineWait {
				c.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				c.mu.Lock()
				continue
			}
			partial = time.Time{}
		}
		c.mu.Unlock()
		_, err := c.w.Write(out) // the bytes stay ours: n still counts them
		c.mu.Lock()
		c.r = (c.r + len(out)) % len(c.ring)
		c.n -= len(out)
		if err != nil && c.err == nil {
			c.err = fmt.Errorf("console: %w", err)
			c.r, c.n = 0, 0 // the rest cannot be written either
		}
		c.room.Broadcast()
	}
}

// Close flushes what is buffered and stops the drainer. It waits up to
// timeout (forever if <= 0) for a writer that does not take the bytes, and
// returns the writer's error, if any.
func (c *ConsoleBuffer) Close(timeout time.Duration) error {
	c.mu.Lock()
	c.closed = true
	c.data.Signal()
	c.room.Broadcast()
	c.mu.Unlock()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-c.drained:
	case <-expired:
		return fmt.Errorf("console: output not flushed within %s", timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
