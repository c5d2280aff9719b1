// BAR 0 accesses that reach the VMM, dispatched to the structures in it.

package pcitransport

import "fmt"

// barHandler is the bus.Device of BAR0.
type barHandler struct{ t *Transport }

// within reports whether [off, off+n) lies in [base, base+length).
func within(off uint64, n int, base, length uint64) bool {
	return n > 0 && off >= base && off-base < length && uint64(n) <= length-(off-base)
}

func (h barHandler) Read(off uint64, data []byte) {
	t := h.t
	clear(data)
	switch {
	case within(off, len(data), CommonCfgOffset, CommonCfgLength):
		t.readCommon(off-CommonCfgOffset, data)
	case within(off, len(data), ISROffset, ISRLength):
		if off == ISROffset {
			data[0] = t.readISR()
		}
	case within(off, len(data), DeviceCfgOffset, DeviceCfgLength):
		t.dev.ReadConfig(off-DeviceCfgOffset, data)
	case t.msix.Claims(off, len(data)):
		t.msix.Read(off, data)
	}
}

func (h barHandler) Write(off uint64, data []byte) {
	t := h.t
	switch {
	case within(off, len(data), CommonCfgOffset, CommonCfgLength):
		t.writeCommon(off-CommonCfgOffset, data)
	case within(off, len(data), NotifyOffset, uint64(len(t.queues))*NotifyMultiplier):
		// Any write within a queue's 4-byte doorbell counts, as an
		// any-length ioeventfd at its base would catch.
		t.notify(int((off - NotifyOffset) / NotifyMultiplier))
	case within(off, len(data), DeviceCfgOffset, DeviceCfgLength):
		t.dev.WriteConfig(off-DeviceCfgOffset, data)
	case t.msix.Claims(off, len(data)):
		t.msix.Write(off, data)
	default:
		t.log.Debug("pcitransport: write to unimplemented BAR offset", "offset", fmt.Sprintf("%#x", off), "len", len(data))
	}
}
