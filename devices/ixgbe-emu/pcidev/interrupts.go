// Interrupt delivery: MSI-X vectors, or the model's single level as MSI or INTx.

package pcidev

import (
	"encoding/binary"

	"github.com/govmm/govmm/vmm/pci"
	"github.com/govmm/govmm/vmm/pci/msix"
)

// msiState is the MSI capability as the guest last programmed it, and
// the vector behind it.
type msiState struct {
	enabled bool
	addr    uint64
	data    uint32
	vec     msix.Vector
	failed  bool
}

// SetLegacyIRQ sets (or, with nil, removes) the INTx line.
func (d *Device) SetLegacyIRQ(l Line) {
	if l == nil {
		d.intx.Store(nil)
		return
	}
	d.intx.Store(&l)
}

// irqSink is the model's IRQ. Its methods run with the model's interrupt
// lock held and do not call back into the model.
type irqSink struct{ d *Device }

func (s irqSink) Trigger(vector int) error { return s.d.msix.Trigger(vector) }

// SetINTx: the model's interrupt level in INTx/MSI mode (GPIE.MSIX_MODE
// clear). With MSI-X enabled the function must not use INTx or MSI (PCI
// 3.0 §6.8.2); with MSI enabled a rising edge is a message; otherwise the
// INTx line follows the level unless COMMAND.INTx_Disable is set.
func (s irqSink) SetINTx(asserted bool) {
	d := s.d
	if d.msix.Enabled() {
		return
	}
	d.irqMu.Lock()
	defer d.irqMu.Unlock()
	rising := asserted && !d.level
	d.level = asserted
	if d.msi.enabled {
		if rising && d.msi.vec != nil {
			if err := d.msi.vec.Trigger(); err != nil {
				d.log.Error("ixgbe: MSI", "err", err)
			}
		}
		return
	}
	d.setLine(asserted)
}

func (d *Device) setLine(asserted bool) {
	l := d.intx.Load()
	if l == nil {
		return
	}
	if d.cs.Command()&pci.CommandINTxDisable != 0 {
		asserted = false
	}
	if err := (*l).SetLevel(asserted); err != nil {
		d.log.Error("ixgbe: INTx", "err", err)
	}
}

// msiWritten is the MSI capability's write hook: it keeps the vector's
// route equal to the guest's message while MSI is enabled.
func (d *Device) msiWritten(int, []byte) {
	var c [msiCapSize]byte
	d.cs.Read(CapMSIOffset, c[:])
	le := binary.LittleEndian
	enabled := le.Uint16(c[msiCtl:])&msiEnable != 0
	addr := uint64(le.Uint32(c[msiAddrHi:]))<<32 | uint64(le.Uint32(c[msiAddrLo:]))
	data := uint32(le.Uint16(c[msiData:]))

	d.irqMu.Lock()
	defer d.irqMu.Unlock()
	m := &d.msi
	if enabled && m.vec == nil && !m.failed {
		v, err := d.allocFn()
		if err != nil {
			m.failed = true
			d.log.Error("ixgbe: allocating the MSI vector", "err", err)
		} else {
			m.vec = v
		}
	}
	if m.vec != nil && (enabled != m.enabled || addr != m.addr || data != m.data) {
		if err := m.vec.Update(addr, data, enabled); err != nil {
			d.log.Error("ixgbe: MSI route", "err", err)
		}
	}
	wasEnabled := m.enabled
	m.enabled, m.addr, m.data = enabled, addr, data
	if enabled && !wasEnabled {
		d.setLine(false) // the INTx line is not used with MSI
	}
}
