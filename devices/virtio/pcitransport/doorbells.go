// Queue notifications: doorbell eventfds, bound by KVM_IOEVENTFD into BAR 0.

package pcitransport

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/vmm/kvm"
	"github.com/govmm/govmm/vmm/pci"
)

// DoorbellRegistrar binds doorbell addresses to eventfds (KVM_IOEVENTFD).
// Register must make any guest write to addr (any length, any value)
// signal fd.
type DoorbellRegistrar interface {
	Register(addr uint64, fd int) error
	Unregister(addr uint64, fd int) error
}

// IOEventFDSetter is the part of *kvm.VM that KVMDoorbells needs.
type IOEventFDSetter interface {
	SetIOEventFD(e kvm.IOEventFD, deassign bool) error
}

// KVMDoorbells registers doorbells as any-length MMIO ioeventfds, which
// KVM serves from its fast MMIO path without decoding the instruction.
type KVMDoorbells struct{ VM IOEventFDSetter }

// Register implements DoorbellRegistrar.
func (k KVMDoorbells) Register(addr uint64, fd int) error {
	return k.VM.SetIOEventFD(kvm.IOEventFD{Addr: addr, FD: fd}, false)
}

// Unregister implements DoorbellRegistrar.
func (k KVMDoorbells) Unregister(addr uint64, fd int) error {
	return k.VM.SetIOEventFD(kvm.IOEventFD{Addr: addr, FD: fd}, true)
}

func (t *Transport) currentBellBase() uint64 {
	t.bellMu.Lock()
	defer t.bellMu.Unlock()
	return t.bellBase
}

// barMoved is BAR0's OnMove: it moves every doorbell's ioeventfd to the
// new notification addresses. A registration failure only costs speed:
// the MMIO handler signals the same eventfd.
func (t *Transport) barMoved(oldBase, newBase uint64) {
	if t.bells == nil {
		return
	}
	t.bellMu.Lock()
	defer t.bellMu.Unlock()
	if t.bellBase != pci.Unmapped {
		for i := range t.queues {
			addr := t.bellBase + notifyAddr(i)
			if err := t.bells.Unregister(addr, t.queues[i].doorbell); err != nil {
				t.log.Error("pcitransport: unregistering doorbell", "queue", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
			}
		}
	}
	t.bellBase = pci.Unmapped
	if newBase == pci.Unmapped {
		return
	}
	for i := range t.queues {
		addr := newBase + notifyAddr(i)
		if err := t.bells.Register(addr, t.queues[i].doorbell); err != nil {
			t.log.Warn("pcitransport: registering doorbell, notifications will exit to the VMM", "queue", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
		}
	}
	t.bellBase = newBase
}

func notifyAddr(queue int) uint64 { return NotifyOffset + uint64(queue)*NotifyMultiplier }

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// notify signals queue's doorbell eventfd for a notification that reached
// the MMIO handler.
func (t *Transport) notify(queue int) {
	if _, err := unix.Write(t.queues[queue].doorbell, one); err != nil && !errors.Is(err, unix.EAGAIN) {
		t.log.Error("pcitransport: signalling doorbell", "queue", queue, "err", err)
	}
}
