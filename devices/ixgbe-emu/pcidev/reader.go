// Receive: the goroutine that reads frames from the port into rx queue 0,
// or, with RSS on, into the queue the model's hash picks.

package pcidev

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	ixgbeemu "github.com/govmm/govmm/devices/ixgbe-emu"
	"github.com/govmm/govmm/vmm/pci"
)

const (
	rxQueue   = 0
	spillSize = 65536 + 64 // larger than any tap frame (64 KiB MTU)
	maxBatch  = 64         // frames read per wake-up before re-polling
)

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// signal wakes whoever polls eventfd fd.
func signal(fd int) { _, _ = unix.Write(fd, one) }

// rxNotify is the model's RxNotify hook: wake the reader if it waits for
// descriptors of our queue.
func (d *Device) rxNotify(queue int) {
	if (queue == rxQueue || queue < 0) && d.waitRoom.CompareAndSwap(true, false) {
		signal(d.kickFD)
	}
}

// rxMode is what the reader does with the next frame.
type rxMode int

const (
	rxZeroCopy rxMode = iota // RxTarget + readv + RxComplete
	rxWait                   // no free descriptors: leave frames queued
	rxModel                  // read into scratch, model.Receive (copy or counted drop)
	rxDiscard                // bus mastering off: read and drop
	rxSteer                  // RSS on: read into scratch, the model picks the queue, model.Receive
)

func (d *Device) rxMode() rxMode {
	if d.cs.Command()&pci.CommandBusMaster == 0 {
		return rxDiscard
	}
	if d.nic.RSSSpreads() {
		// The queue depends on the frame's hash, known only once it is
		// read: no reading in place, and no waiting for one queue's room
		// (a queue without descriptors drops, as on the real NIC).
		return rxSteer
	}
	switch d.nic.RxState(rxQueue) {
	case ixgbeemu.RxReady:
		return rxZeroCopy
	case ixgbeemu.RxNoRoom:
		return rxWait
	}
	return rxModel
}

func (d *Device) reader() {
	defer close(d.done)
	fds := []unix.PollFd{
		{Fd: int32(d.fd)},
		{Fd: int32(d.stopFD), Events: unix.POLLIN},
		{Fd: int32(d.kickFD), Events: unix.POLLIN},
	}
	var drain [8]byte
	portDead := false
	for {
		// Publish "waiting" before sampling the state, so an RDT write
		// after the sample always kicks.
		d.waitRoom.Store(true)
		mode := d.rxMode()
		if mode != rxWait {
			d.waitRoom.Store(false)
		}
		fds[0].Events = 0
		if mode != rxWait && !portDead {
			fds[0].Events = unix.POLLIN
		}
		_, err := unix.Poll(fds, -1)
		d.waitRoom.Store(false)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			d.log.Error("ixgbe: poll failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[2].Revents != 0 {
			_, _ = unix.Read(d.kickFD, drain[:])
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			d.log.Error("ixgbe: port closed, receive stopped", "revents", fds[0].Revents)
			portDead = true
			continue
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		for i := 0; i < maxBatch && d.receiveOne(); i++ {
		}
	}
}

// receiveOne moves one frame from the port into the guest and reports
// whether the reader should try another before polling again.
func (d *Device) receiveOne() bool {
	mode := d.rxMode()
	if mode == rxWait {
		return false
	}
	if mode == rxZeroCopy {
		if bufs, ok := d.nic.RxTarget(rxQueue); ok {
			room := 0
			d.iov = append(d.iov[:0], d.rxHdr)
			for _, b := range bufs {
				d.iov = append(d.iov, b)
				room += len(b)
			}
			// A spill buffer behind the guest's buffers tells an overlong
			// frame from one that fills them exactly.
			d.iov = append(d.iov, d.scratch)
			n, err := unix.Readv(d.fd, d.iov)
			n -= d.vnet
			switch {
			case err != nil:
				d.nic.RxAbort(rxQueue)
				return d.readFailed(err)
			case n <= 0:
				d.nic.RxAbort(rxQueue)
			case n > room:
				d.nic.RxAbort(rxQueue)
				d.rxOversize.Add(1)
			default:
				// Drops (filtered, stale reservation) are counted by the model.
				_ = d.nic.RxComplete(rxQueue, n)
			}
			return true
		}
	}
	d.iov = append(d.iov[:0], d.rxHdr, d.scratch)
	n, err := unix.Readv(d.fd, d.iov)
	if err != nil {
		return d.readFailed(err)
	}
	n -= d.vnet
	if mode == rxDiscard {
		d.rxDiscarded.Add(1)
		return true
	}
	if n > 0 {
		q := rxQueue
		if mode == rxSteer {
			q, _ = d.nic.RxSteer(d.scratch[:n])
		}
		_ = d.nic.Receive(q, d.scratch[:n]) // counted by the model
	}
	return true
}

func (d *Device) readFailed(err error) bool {
	switch {
	case errors.Is(err, unix.EAGAIN):
		return false
	case errors.Is(err, unix.EINTR):
		return true
	}
	if d.rxErrs.Add(1) == 1 {
		d.log.Error("ixgbe: reading the port", "err", err)
	}
	time.Sleep(time.Millisecond) // do not spin on a persistent error
	return false
}
