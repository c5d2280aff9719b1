package legacy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/layout"
)

func TestACPISleepPoweroff(t *testing.T) {
	var n int
	a := NewACPISleep(func() { n++ })

	// What ACPICA's acpi_hw_extended_sleep writes for S5: first WAK_STS
	// to the status register, then SLP_TYP<<2 | SLP_EN to control.
	a.Write(0, []byte{0x80})
	require.Zero(t, n)
	a.Write(0, []byte{layout.ACPIS5SlpTyp<<2 | 0x20})
	require.Equal(t, 1, n)
}

func TestACPISleepOnlyS5(t *testing.T) {
	var n int
	a := NewACPISleep(func() { n++ })
	s5 := byte(layout.ACPIS5SlpTyp<<2 | 0x20)
	for v := range 256 {
		if byte(v)&0x3C == s5 {
			continue // S5 with SLP_EN, whatever the unused bits
		}
		a.Write(0, []byte{byte(v)})
	}
	require.Zero(t, n)
	a.Write(0, []byte{layout.ACPIS5SlpTyp << 2}) // S5 without SLP_EN
	require.Zero(t, n)
}

func TestACPISleepReadAndHostile(t *testing.T) {
	a := NewACPISleep(func() { t.Fatal("hostile access powered off") })
	d := []byte{0xAA, 0xAA, 0xAA, 0xAA}
	a.Read(0, d)
	require.Equal(t, []byte{0, 0, 0, 0}, d)
	s5 := byte(layout.ACPIS5SlpTyp<<2 | 0x20)
	for _, off := range []uint64{1, 8, ^uint64(0)} {
		a.Write(off, []byte{s5})
		a.Read(off, d)
	}
	a.Write(0, nil)
	a.Read(0, nil)
	NewACPISleep(nil).Write(0, []byte{s5})
}
