package zerocopy

import (
	"fmt"

	"github.com/govmm/govmm/vmm/guestmem"
)

// NewSpace builds the address space the NIC model bus-masters into: guest
// RAM at its own GPAs (so a descriptor's packet address is a guest buffer's
// GPA, untranslated) plus a VMM-private region of privSize bytes at
// PrivateBase holding the descriptor rings the VMM programs. The guest
// cannot name the private region: it is not in its memory map, and Decide
// refuses any guest address at or above PrivateBase. The result is a
// *guestmem.Memory, whose Slice is the ixgbeemu.DMA interface.
func NewSpace(ram *guestmem.Memory, privSize int) (space *guestmem.Memory, priv []byte, err error) {
	if ram == nil || ram.End() > PrivateBase {
		return nil, nil, fmt.Errorf("zerocopy: guest RAM must end below %#x", PrivateBase)
	}
	if privSize <= 0 {
		return nil, nil, fmt.Errorf("zerocopy: private region size %d", privSize)
	}
	priv = make([]byte, privSize)
	regions := append(append([]guestmem.Region(nil), ram.Regions()...), guestmem.Region{GPA: PrivateBase, Host: priv})
	space, err = guestmem.FromRegions(regions...)
	if err != nil {
		return nil, nil, fmt.Errorf("zerocopy: DMA space: %w", err)
	}
	return space, priv, nil
}

// PrivateBase is the bus address of the VMM-private region.
const PrivateBase = privBase
