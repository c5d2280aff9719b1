package legacy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/layout"
)

func newTestI8042(t *testing.T) (*bus.Bus, *int) {
	t.Helper()
	resets := new(int)
	k := NewI8042(func() { *resets++ })
	b := bus.New("pio")
	require.NoError(t, b.Insert(layout.PortI8042Data, 1, "i8042-data", k.DataPort()))
	require.NoError(t, b.Insert(layout.PortI8042Cmd, 1, "i8042-cmd", k.CommandPort()))
	return b, resets
}

func in(b *bus.Bus, port uint64) byte {
	d := []byte{0}
	b.Read(port, d)
	return d[0]
}

func out(b *bus.Bus, port uint64, v byte) { b.Write(port, []byte{v}) }

const (
	dataPort = layout.PortI8042Data
	cmdPort  = layout.PortI8042Cmd
)

func TestI8042Reset(t *testing.T) {
	b, resets := newTestI8042(t)
	// Linux's kb_wait() polls until the input buffer is empty.
	require.Zero(t, in(b, cmdPort)&0x02)
	out(b, cmdPort, 0xFE)
	require.Equal(t, 1, *resets)
}

func TestI8042NoResetOtherwise(t *testing.T) {
	b, resets := newTestI8042(t)
	for _, v := range []byte{0x00, 0x20, 0xAA, 0xAD, 0xD1, 0xFF, 0xFD, 0xF1} {
		out(b, cmdPort, v)
	}
	for v := range 256 {
		out(b, dataPort, byte(v)) // 0xFE on the data port is a keyboard byte
	}
	require.Zero(t, *resets)
}

func TestI8042NilCallback(t *testing.T) {
	NewI8042(nil).CommandPort().Write(0, []byte{0xFE})
}

func TestI8042Status(t *testing.T) {
	b, _ := newTestI8042(t)
	st := in(b, cmdPort)
	require.Zero(t, st&i8042StrOBF, "no data")
	require.Zero(t, st&0x02, "input buffer empty")
	require.NotZero(t, st&i8042StrUnlock, "keyboard not inhibited: no 'Keylock active' warning")
}

// TestI8042LinuxProbe walks the command sequence of Linux's i8042
// controller init and AUX check and checks that every read is answered at
// once and that the AUX port is reported absent.
func TestI8042LinuxProbe(t *testing.T) {
	b, _ := newTestI8042(t)
	command := func(c byte, args []byte, nres int) ([]byte, bool) {
		require.Zero(t, in(b, cmdPort)&0x02)
		out(b, cmdPort, c)
		for _, a := range args {
			out(b, dataPort, a)
		}
		var res []byte
		for range nres {
			st := in(b, cmdPort)
			require.NotZero(t, st&i8042StrOBF, "command %#x would time out", c)
			if c == i8042CmdWriteAux && st&0x20 == 0 {
				return res, false // Linux: "auxerr"
			}
			res = append(res, in(b, dataPort))
		}
		return res, true
	}

	// i8042_flush: nothing pending.
	require.Zero(t, in(b, cmdPort)&i8042StrOBF)
	// Self-test (i8042.reset).
	res, _ := command(i8042CmdSelfTest, nil, 1)
	require.Equal(t, []byte{0x55}, res)
	// Stable CTR read, then write it back modified.
	r1, _ := command(i8042CmdReadCTR, nil, 1)
	r2, _ := command(i8042CmdReadCTR, nil, 1)
	require.Equal(t, r1, r2)
	ctr := r1[0]&^0x01 | i8042CTRKbdDis
	command(i8042CmdWriteCTR, []byte{ctr}, 0)
	r3, _ := command(i8042CmdReadCTR, nil, 1)
	require.Equal(t, []byte{ctr}, r3)

	// i8042_check_aux: the loop test fails at once, the interface test
	// then reports an error code Linux takes as "no AUX port".
	_, ok := command(i8042CmdWriteAux, []byte{0x5A}, 1)
	require.False(t, ok)
	res, _ = command(i8042CmdAuxTest, nil, 1)
	require.NotContains(t, []byte{0x00, 0xFA, 0xFF}, res[0])

	// AUX enable/disable is reflected in the CTR.
	command(i8042CmdAuxDis, nil, 0)
	r4, _ := command(i8042CmdReadCTR, nil, 1)
	require.NotZero(t, r4[0]&i8042CTRAuxDis)
	command(i8042CmdAuxEn, nil, 0)
	r5, _ := command(i8042CmdReadCTR, nil, 1)
	require.Zero(t, r5[0]&i8042CTRAuxDis)
}

func TestI8042Hostile(t *testing.T) {
	k := NewI8042(func() { t.Fatal("hostile access reset the machine") })
	for _, d := range []bus.Device{k.DataPort(), k.CommandPort()} {
		for _, off := range []uint64{1, 7, ^uint64(0)} {
			for _, n := range []int{0, 1, 2, 4, 8} {
				buf := make([]byte, n)
				for i := range buf {
					buf[i] = 0xFE
				}
				d.Write(off, buf)
				d.Read(off, buf)
				for _, v := range buf {
					require.Equal(t, byte(0xFF), v)
				}
			}
		}
		d.Write(0, nil)
		d.Read(0, nil)
		wide := []byte{0, 0, 0, 0}
		d.Read(0, wide)
		require.Equal(t, []byte{0xFF, 0xFF, 0xFF}, wide[1:])
	}
}
