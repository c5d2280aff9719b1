// Interrupt delivery: MSI-X, or the ISR status and a legacy INTx line.

package pcitransport

import (
	"fmt"
	"sync/atomic"
)

// Line is a legacy level-triggered interrupt line; *irq.Line implements it.
type Line interface {
	SetLevel(high bool) error
}

// SetLegacyIRQ gives the transport an INTx line, used while the guest
// keeps MSI-X disabled (§4.1.5.3). Call it after pci.Bridge.Add with
// the GSI from Config().IRQ().
func (t *Transport) SetLegacyIRQ(l Line) {
	if l == nil {
		t.intx.Store(nil)
		return
	}
	t.intx.Store(&l)
}

// queueInterrupt raises one queue's interrupt (§4.1.5.2 / §4.1.4.5).
type queueInterrupt struct {
	t *Transport
	q *vq
}

func (i *queueInterrupt) Trigger() error {
	return i.t.raise(ISRQueue, &i.q.vector)
}

type configInterrupt struct{ t *Transport }

func (i configInterrupt) Trigger() error {
	return i.t.raise(ISRConfig, &i.t.configVector)
}

// raise sets an ISR bit and delivers through MSI-X when enabled
// (nothing for NoVector), or INTx otherwise.
func (t *Transport) raise(isr uint32, vector *atomic.Uint32) error {
	if t.msix.Enabled() {
		t.isr.Or(isr)
		v := vector.Load()
		if v == NoVector {
			return nil
		}
		if err := t.msix.Trigger(int(v)); err != nil {
			return fmt.Errorf("pcitransport: %w", err)
		}
		return nil
	}
	l := t.intx.Load()
	if l == nil {
		t.isr.Or(isr)
		return nil
	}
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	t.isr.Or(isr)
	if err := (*l).SetLevel(true); err != nil {
		return fmt.Errorf("pcitransport: raising INTx: %w", err)
	}
	return nil
}

// readISR implements the read-to-clear ISR status (§4.1.4.5.1), lowering
// INTx.
func (t *Transport) readISR() uint8 {
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	v := t.isr.Swap(0)
	if l := t.intx.Load(); l != nil {
		if err := (*l).SetLevel(false); err != nil {
			t.log.Error("pcitransport: lowering INTx", "err", err)
		}
	}
	return uint8(v)
}
