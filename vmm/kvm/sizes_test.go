package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// The ioctl numbers encode these sizes; they must match the kernel's structs.
func TestUAPIStructSizes(t *testing.T) {
	require.Equal(t, uintptr(32), unsafe.Sizeof(struct {
		fd, gsi, flags, resamplefd uint32
		_                          [16]byte
	}{}), "struct kvm_irqfd")
	require.Equal(t, uintptr(64), unsafe.Sizeof(struct {
		datamatch, addr uint64
		len             uint32
		fd              int32
		flags           uint32
		_               [36]byte
	}{}), "struct kvm_ioeventfd")
}

func TestDefaultRoutes(t *testing.T) {
	r := DefaultRoutes()
	require.Len(t, r, 16*2+8)
	pins := map[uint32]bool{}
	for _, e := range r {
		if e.Chip == ChipIOAPIC {
			require.Equal(t, e.GSI, e.Pin)
			pins[e.Pin] = true
		}
	}
	require.Len(t, pins, 24)
}
