// PCI config space: BAR 0 and the virtio capabilities that locate its structures.

package pcitransport

import (
	"encoding/binary"
	"fmt"

	"github.com/govmm/govmm/vmm/pci"
)

// Vendor-specific capability cfg_type values (§4.1.4).
const (
	CapCommonCfg = 1
	CapNotifyCfg = 2
	CapISRCfg    = 3
	CapDeviceCfg = 4
	CapPCICfg    = 5
)

// BAR layout. All structures live in BAR 0.
const (
	BARIndex         = 0
	CommonCfgOffset  = 0x0000
	CommonCfgLength  = 0x38 // through queue_device; no notify_data / queue_reset
	ISROffset        = 0x1000
	ISRLength        = 4
	DeviceCfgOffset  = 0x2000
	DeviceCfgLength  = 0x1000
	NotifyOffset     = 0x3000
	NotifyMultiplier = 4 // notify_off_multiplier; queue_notify_off = queue index
	pageSize         = 0x1000
)

// buildConfigSpace sets BAR 0 and adds the MSI-X and virtio capabilities.
func (t *Transport) buildConfigSpace() error {
	if err := t.cs.SetBAR(BARIndex, pci.BAR{Kind: pci.BARMem64, Size: t.barSize, Handler: barHandler{t}, OnMove: t.barMoved}); err != nil {
		return fmt.Errorf("pcitransport: %w", err)
	}
	if _, err := t.msix.AddCapability(t.cs); err != nil {
		return fmt.Errorf("pcitransport: %w", err)
	}
	caps := []struct {
		typ         byte
		off, length uint32
	}{
		{CapCommonCfg, CommonCfgOffset, CommonCfgLength},
		{CapISRCfg, ISROffset, ISRLength},
		{CapDeviceCfg, DeviceCfgOffset, DeviceCfgLength},
		{CapNotifyCfg, NotifyOffset, uint32(len(t.queues)) * NotifyMultiplier},
	}
	for _, c := range caps {
		if _, err := t.cs.AddCapability(pci.CapIDVendor, virtioCap(c.typ, c.off, c.length)); err != nil {
			return fmt.Errorf("pcitransport: virtio capability type %d: %w", c.typ, err)
		}
	}
	return nil
}

// virtioCap returns the body (after cap_vndr and cap_next) of a struct
// virtio_pci_cap (§4.1.4), or of struct virtio_pci_notify_cap for
// CapNotifyCfg (§4.1.4.4).
func virtioCap(typ byte, off, length uint32) []byte {
	n := 16
	if typ == CapNotifyCfg {
		n = 20
	}
	b := make([]byte, n-2)
	b[0] = byte(n) // cap_len
	b[1] = typ     // cfg_type
	b[2] = BARIndex
	// b[3] id = 0, b[4:6] padding
	binary.LittleEndian.PutUint32(b[6:], off)
	binary.LittleEndian.PutUint32(b[10:], length)
	if typ == CapNotifyCfg {
		binary.LittleEndian.PutUint32(b[14:], NotifyMultiplier)
	}
	return b
}

func defaultClass(typ uint16) uint32 {
	switch typ {
	case 1:
		return 0x020000 // network controller, ethernet
	case 2:
		return 0x018000 // mass storage, other
	case 3:
		return 0x078000 // communication controller, other
	}
	return 0xFF0000 // device does not fit any defined class
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func nextPow2(v uint64) uint64 {
	p := uint64(1)
	for p < v {
		p <<= 1
	}
	return p
}
