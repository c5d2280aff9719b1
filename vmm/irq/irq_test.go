package irq

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/kvm"
)

type fakeVM struct {
	routes [][]kvm.Route
	irqfds map[uint32]int
	lines  []bool
}

func (f *fakeVM) SetGSIRouting(r []kvm.Route) error {
	f.routes = append(f.routes, append([]kvm.Route(nil), r...))
	return nil
}
func (f *fakeVM) IRQFD(efd int, gsi uint32, _ int) error { f.irqfds[gsi] = efd; return nil }
func (f *fakeVM) IRQFDDeassign(_ int, gsi uint32) error  { delete(f.irqfds, gsi); return nil }
func (f *fakeVM) SetIRQLine(_ uint32, high bool) error   { f.lines = append(f.lines, high); return nil }

func lastMSI(f *fakeVM) []kvm.Route {
	var out []kvm.Route
	for _, r := range f.routes[len(f.routes)-1] {
		if r.IsMSI {
			out = append(out, r)
		}
	}
	return out
}

func TestMSIRoutesKeepLegacyTable(t *testing.T) {
	f := &fakeVM{irqfds: map[uint32]int{}}
	r, err := NewRouter(f)
	require.NoError(t, err)
	a, err := r.AllocMSI()
	require.NoError(t, err)
	b, err := r.AllocMSI()
	require.NoError(t, err)
	require.Equal(t, uint32(24), a.GSI())
	require.Equal(t, uint32(25), b.GSI())
	require.Contains(t, f.irqfds, uint32(24))
	require.Empty(t, lastMSI(f), "a vector has no route until the guest programs it")

	require.NoError(t, b.Update(0xFEE00000, 0x41, true))
	require.Equal(t, []kvm.Route{{GSI: 25, IsMSI: true, MSIAddr: 0xFEE00000, MSIData: 0x41}}, lastMSI(f))
	last := f.routes[len(f.routes)-1]
	require.Len(t, last, len(kvm.DefaultRoutes())+1, "every commit resubmits the legacy routes")

	n := len(f.routes)
	require.NoError(t, b.Update(0xFEE00000, 0x41, true))
	require.Len(t, f.routes, n, "an unchanged message must not cost an ioctl")

	require.NoError(t, b.Update(0xFEE00000, 0x41, false))
	require.Empty(t, lastMSI(f), "masked vectors have no route")

	require.NoError(t, a.Trigger())
	require.NoError(t, a.Close())
	require.NotContains(t, f.irqfds, uint32(24))
	require.NoError(t, b.Close())
}

func TestLegacyLine(t *testing.T) {
	f := &fakeVM{irqfds: map[uint32]int{}}
	r, err := NewRouter(f)
	require.NoError(t, err)
	_, err = r.LegacyLine(24)
	require.Error(t, err)
	l, err := r.LegacyLine(4)
	require.NoError(t, err)
	require.NoError(t, l.SetLevel(true))
	require.NoError(t, l.SetLevel(true))
	require.NoError(t, l.SetLevel(false))
	require.Equal(t, []bool{true, false}, f.lines)
}
