// The control queue (virtio 1.2 §5.1.6.5): the driver's commands, of which
// the device honours the one it offers, the number of queue pairs in use.

package virtionet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/internal/osthread"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Command classes and the commands the device knows (§5.1.6.5).
const (
	ctrlClassMQ     = 4 // VIRTIO_NET_CTRL_MQ
	ctrlMQPairsSet  = 0 // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: le16 virtqueue_pairs
	ctrlAckOK       = 0 // VIRTIO_NET_OK
	ctrlAckErr      = 1 // VIRTIO_NET_ERR
	ctrlMaxReadable = 64
)

// ctrlState serves the control queue between DRIVER_OK and reset: one
// goroutine takes each command the driver queues, acts on it and writes
// the one-byte ack. Linux waits for the ack spinning (virtnet_send_command),
// so the worker answers as soon as the doorbell rings.
type ctrlState struct {
	n          *Net
	mem        *guestmem.Memory
	q          pcitransport.ActiveQueue
	features   uint64
	usable     int // pairs the driver may set: those running from the first on
	needsReset func()
	chain      queue.Chain
	buf        [ctrlMaxReadable]byte // the command, copied out of guest memory before it is read (TOCTOU)
	broken     atomic.Bool
	stopFD     int
	wg         sync.WaitGroup

	commands, refused atomic.Uint64 // for the state dump
}

func newCtrl(n *Net, mem *guestmem.Memory, q *pcitransport.ActiveQueue, features uint64, usable int, needsReset func()) (*ctrlState, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("virtionet: eventfd: %w", err)
	}
	q.Queue.SetMaxChainDescs(maxChainDescs)
	return &ctrlState{n: n, mem: mem, q: *q, features: features, usable: usable, needsReset: needsReset, stopFD: fd}, nil
}

func (c *ctrlState) start() {
	c.wg.Add(1)
	go c.run()
}

func (c *ctrlState) stop() {
	signalFD(c.stopFD)
	c.wg.Wait()
	unix.Close(c.stopFD)
}

func (c *ctrlState) run() {
	defer c.wg.Done()
	fds := []unix.PollFd{{Fd: int32(c.q.Doorbell), Events: unix.POLLIN}, {Fd: int32(c.stopFD), Events: unix.POLLIN}}
	for {
		c.process()
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			c.n.log.Error("virtio-net: control queue poll", "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 {
			osthread.Drain(c.q.Doorbell)
		}
	}
}

// process answers every queued command, and asks for the driver's next
// kick (with EVENT_IDX the driver kicks only when it passes avail_event:
// not moved on, it never would again).
func (c *ctrlState) process() {
	for !c.broken.Load() {
		c.drain()
		more, err := c.q.Queue.EnableNotification(c.mem)
		if err != nil {
			c.queueBroken(err)
			return
		}
		if !more {
			return
		}
	}
}

// drain answers the commands queued now.
func (c *ctrlState) drain() {
	q := c.q.Queue
	for {
		ok, err := q.PopInto(c.mem, &c.chain)
		if err != nil {
			if ce, isChain := errChain(err); isChain {
				c.refused.Add(1)
				c.put(ce.Head, 0)
				continue
			}
			c.queueBroken(err)
			return
		}
		if !ok {
			break
		}
		ack := c.command(&c.chain)
		written := uint32(0)
		if c.chain.WritableLen() > 0 {
			// The ack is the last writable byte (§5.1.6.5: the command,
			// its data, then u8 ack).
			if c.chain.WriteAt([]byte{ack}, c.chain.WritableLen()-1) == 1 {
				written = 1
			}
		}
		c.put(c.chain.Head, written)
	}
	if err := q.PublishUsed(c.mem); err != nil {
		c.queueBroken(err)
		return
	}
	if need, err := q.NeedsNotification(c.mem); err == nil && need {
		_ = c.q.Interrupt.Trigger()
	}
}

func (c *ctrlState) put(head uint16, written uint32) {
	if err := c.q.Queue.PutUsed(c.mem, head, written); err != nil {
		c.queueBroken(err)
	}
}

// command runs one command and returns its ack. A command the device did
// not offer, or one with bad data, gets VIRTIO_NET_ERR.
func (c *ctrlState) command(ch *queue.Chain) byte {
	c.commands.Add(1)
	n := ch.ReadAt(c.buf[:], 0)
	if n < 2 || ch.WritableLen() == 0 {
		c.refused.Add(1)
		return ctrlAckErr
	}
	class, cmd, data := c.buf[0], c.buf[1], c.buf[2:n]
	switch {
	case class == ctrlClassMQ && cmd == ctrlMQPairsSet && c.features&FeatMQ != 0:
		if len(data) < 2 {
			break
		}
		k := int(binary.LittleEndian.Uint16(data))
		if k < 1 || k > c.usable {
			break // §5.1.6.5.5: 1 to max_virtqueue_pairs, of which the driver enabled these
		}
		if err := c.n.setPairs(k); err != nil {
			c.n.log.Warn("virtio-net: queue pairs not switched", "pairs", k, "err", err)
			break
		}
		c.n.log.Info("virtio-net: queue pairs set by the driver", "pairs", k)
		return ctrlAckOK
	}
	c.refused.Add(1)
	return ctrlAckErr
}

// queueBroken: a ring-level violation on the control queue, as on the
// data queues (activeState.queueBroken): logged once, and the device asks
// for a reset.
func (c *ctrlState) queueBroken(err error) {
	if c.broken.Swap(true) {
		return
	}
	c.n.Stats.BrokenQueues.Add(1)
	c.n.log.Warn("virtio-net: control queue broken by the driver; device needs reset", "err", err)
	if c.needsReset != nil {
		c.needsReset()
	}
}

func (c *ctrlState) debugState() string {
	return fmt.Sprintf("control: %s; commands %d, refused %d", c.q.Queue.DriverView(c.mem), c.commands.Load(), c.refused.Load())
}
