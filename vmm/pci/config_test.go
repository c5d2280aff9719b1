package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewConfigSpaceHeader(t *testing.T) {
	cs := NewConfigSpace(Header{
		VendorID: 0x8086, DeviceID: 0x10FB, Revision: 0x01, ClassCode: 0x020000,
		SubsystemVendorID: 0x8086, SubsystemID: 0x000C,
	})
	var b [ConfigSize]byte
	cs.Read(0, b[:])
	le := binary.LittleEndian
	require.Equal(t, uint32(0x10FB8086), le.Uint32(b[0:]))
	require.Equal(t, uint32(0x02000001), le.Uint32(b[8:]))
	require.Equal(t, uint32(0x000C8086), le.Uint32(b[0x2C:]))
	require.Zero(t, le.Uint16(b[RegCommand:]), "decode off until registered")
	require.Zero(t, le.Uint16(b[RegStatus:]), "no capability list yet")
	require.Zero(t, b[RegHeaderType])
	_, ok := cs.IRQ()
	require.False(t, ok)
	require.Same(t, cs, cs.Config())
}

func TestSetBARValidation(t *testing.T) {
	h := &recorder{}
	bad := []struct {
		index int
		bar   BAR
	}{
		{-1, BAR{Kind: BARMem32, Size: 16, Handler: h}},
		{6, BAR{Kind: BARMem32, Size: 16, Handler: h}},
		{0, BAR{Kind: BARMem32, Size: 16}},                              // no handler
		{0, BAR{Kind: BARMem32, Size: 8, Handler: h}},                   // too small
		{0, BAR{Kind: BARMem32, Size: 0x1800, Handler: h}},              // not a power of two
		{0, BAR{Kind: BARMem32, Size: 0, Handler: h}},                   // zero
		{0, BAR{Kind: BARMem32, Size: 1 << 32, Handler: h}},             // does not fit 32 bits
		{5, BAR{Kind: BARMem64, Size: 16, Handler: h}},                  // needs two slots
		{0, BAR{Kind: BARMem64, Size: 8, Handler: h}},                   // too small
		{0, BAR{Kind: BARIO, Size: 2, Handler: h}},                      // too small
		{0, BAR{Kind: BARIO, Size: 1 << 17, Handler: h}},                // bigger than port space
		{0, BAR{Kind: BARIO, Size: 16, Prefetchable: true, Handler: h}}, // io cannot prefetch
		{0, BAR{Kind: 0, Size: 16, Handler: h}},
		{0, BAR{Kind: 42, Size: 16, Handler: h}},
	}
	for _, tc := range bad {
		cs := NewConfigSpace(Header{})
		require.ErrorIs(t, cs.SetBAR(tc.index, tc.bar), ErrInvalidBAR, "%d %+v", tc.index, tc.bar)
	}

	// Slot conflicts with 64-bit BARs.
	cs := NewConfigSpace(Header{})
	require.NoError(t, cs.SetBAR(1, BAR{Kind: BARMem64, Size: 1 << 20, Handler: h}))
	require.ErrorIs(t, cs.SetBAR(1, BAR{Kind: BARIO, Size: 4, Handler: h}), ErrInvalidBAR)
	require.ErrorIs(t, cs.SetBAR(2, BAR{Kind: BARIO, Size: 4, Handler: h}), ErrInvalidBAR, "upper half")
	require.ErrorIs(t, cs.SetBAR(0, BAR{Kind: BARMem64, Size: 16, Handler: h}), ErrInvalidBAR, "would take BAR1")
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMem32, Size: 1 << 31, Handler: h}))
	require.NoError(t, cs.SetBAR(3, BAR{Kind: BARIO, Size: 1 << 16, Handler: h}))
	require.NoError(t, cs.SetBAR(4, BAR{Kind: BARMem64, Size: 1 << 63, Handler: h}))

	// Type bits are in place and read-only.
	var b [24]byte
	cs.Read(RegBAR0, b[:])
	le := binary.LittleEndian
	require.Equal(t, []uint32{0, 0b100, 0, 1, 0b100, 0}, []uint32{
		le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint32(b[16:]), le.Uint32(b[20:]),
	})
	require.Equal(t, "mem32", BARMem32.String())
	require.Equal(t, "BARKind(9)", BARKind(9).String())
}

func TestAddCapabilityPlacement(t *testing.T) {
	cs := NewConfigSpace(Header{})
	// 82599-style fixed offsets, then free placement fills the gaps.
	off, err := cs.AddCapability(CapIDMSI, make([]byte, 22), CapAt(0x50)) // 0x50-0x67
	require.NoError(t, err)
	require.Equal(t, 0x50, off)
	off, err = cs.AddCapability(CapIDMSIX, make([]byte, 10), CapAt(0x70)) // 0x70-0x7B
	require.NoError(t, err)
	require.Equal(t, 0x70, off)
	off, err = cs.AddCapability(CapIDPowerManagement, make([]byte, 6)) // 8 bytes
	require.NoError(t, err)
	require.Equal(t, 0x40, off)
	off, err = cs.AddCapability(CapIDVendor, make([]byte, 6)) // 0x48 would hit 0x50
	require.NoError(t, err)
	require.Equal(t, 0x48, off)
	off, err = cs.AddCapability(CapIDVendor, make([]byte, 6)) // gap 0x68-0x6F
	require.NoError(t, err)
	require.Equal(t, 0x68, off)
	off, err = cs.AddCapability(CapIDVendor, []byte{1}) // 3 bytes, next free aligned
	require.NoError(t, err)
	require.Equal(t, 0x7C, off)
	off, err = cs.AddCapability(CapIDPCIe, make([]byte, 58)) // 60 bytes: 0x80-0xBB
	require.NoError(t, err)
	require.Equal(t, 0x80, off)

	// Walk the chain: insertion order, terminated by 0.
	var got []int
	var b [ConfigSize]byte
	cs.Read(0, b[:])
	require.NotZero(t, binary.LittleEndian.Uint16(b[RegStatus:])&StatusCapList)
	for p := int(b[RegCapPointer]); p != 0; p = int(b[p+1]) {
		got = append(got, p)
	}
	require.Equal(t, []int{0x50, 0x70, 0x40, 0x48, 0x68, 0x7C, 0x80}, got)

	// Fixed-offset errors.
	for _, o := range []int{0x3C, 0x42, 0x58, 0x4C, 0xFC, 1 << 20, -4} {
		_, err := cs.AddCapability(CapIDVendor, make([]byte, 6), CapAt(o))
		require.ErrorIs(t, err, ErrInvalidCapability, "offset %#x", o)
	}
	// Only 0xBC-0xFF (68 bytes) left.
	_, err = cs.AddCapability(CapIDVendor, make([]byte, 67))
	require.ErrorIs(t, err, ErrInvalidCapability)
	off, err = cs.AddCapability(CapIDVendor, make([]byte, 66))
	require.NoError(t, err)
	require.Equal(t, 0xBC, off)
	_, err = cs.AddCapability(CapIDVendor, nil)
	require.ErrorIs(t, err, ErrInvalidCapability, "full")

	// Too big for any config space; mask longer than body.
	_, err = NewConfigSpace(Header{}).AddCapability(CapIDVendor, make([]byte, 191))
	require.ErrorIs(t, err, ErrInvalidCapability)
	off, err = NewConfigSpace(Header{}).AddCapability(CapIDVendor, make([]byte, 190))
	require.NoError(t, err)
	require.Equal(t, 0x40, off)
	_, err = NewConfigSpace(Header{}).AddCapability(CapIDVendor, make([]byte, 2), CapWriteMask([]byte{1, 2, 3}))
	require.ErrorIs(t, err, ErrInvalidCapability)
}

func TestCapabilityWriteMaskDirect(t *testing.T) {
	cs := NewConfigSpace(Header{})
	var calls []capWrite
	off, err := cs.AddCapability(CapIDVendor, []byte{0x00, 0xF0, 0x12}, CapWriteMask([]byte{0xFF, 0x0F}),
		CapOnWrite(func(o int, d []byte) { calls = append(calls, capWrite{o, d}) }))
	require.NoError(t, err)
	for _, c := range cs.guestWrite(off, []byte{0xEE, 0xEE, 0xEE, 0xEE, 0xEE}) {
		c.fn(c.off, c.data)
	}
	var b [5]byte
	cs.Read(off, b[:])
	require.Equal(t, []byte{CapIDVendor, 0, 0xEE, 0xFE, 0x12}, b[:])
	require.Equal(t, []capWrite{{0, []byte{CapIDVendor, 0, 0xEE, 0xFE, 0x12}}}, calls)

	// A write that ends before the capability does not notify.
	require.Empty(t, cs.guestWrite(off-4, []byte{1, 2, 3, 4}))
	// One that starts inside it is clipped to it.
	calls = nil
	for _, c := range cs.guestWrite(off+4, []byte{1, 2, 3, 4}) {
		c.fn(c.off, c.data)
	}
	require.Equal(t, []capWrite{{4, []byte{0x12}}}, calls)
}

func TestStoreBypassesMasks(t *testing.T) {
	cs := NewConfigSpace(Header{VendorID: 1})
	cs.Store(RegStatus, []byte{StatusINTx, 0})
	var b [2]byte
	cs.Read(RegStatus, b[:])
	require.Equal(t, byte(StatusINTx), b[0])
	cs.guestWrite(RegStatus, []byte{0, 0})
	cs.Read(RegStatus, b[:])
	require.Equal(t, byte(StatusINTx), b[0], "guest cannot clear it")
	// Out-of-range bytes dropped, in-range ones kept.
	cs.Store(ConfigSize-1, []byte{0xAB, 0xCD})
	cs.Read(ConfigSize-1, b[:])
	require.Equal(t, []byte{0xAB, 0xFF}, b[:])
}
