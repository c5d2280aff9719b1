package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/layout"
)

// fakeBzImage builds the smallest image with a valid 2.15 setup header.
func fakeBzImage() []byte {
	img := make([]byte, 8192)
	img[hdrSetupSects] = 4
	binary.LittleEndian.PutUint16(img[hdrBootFlag:], 0xAA55)
	img[hdrJump+1] = 0x6A // jump target = 0x26C: header length of protocol 2.15
	copy(img[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[hdrVersion:], 0x20F)
	img[hdrLoadFlags] = loadedHigh
	binary.LittleEndian.PutUint32(img[hdrInitrdAddrMax:], 0x7FFFFFFF)
	binary.LittleEndian.PutUint16(img[hdrXLoadFlags:], xlfKernel64)
	binary.LittleEndian.PutUint32(img[hdrCmdlineSize:], 2047)
	binary.LittleEndian.PutUint64(img[hdrPrefAddress:], 0x1000000)
	binary.LittleEndian.PutUint32(img[hdrInitSize:], 0x2000000)
	for i := 5 * 512; i < len(img); i++ {
		img[i] = 0xCC
	}
	return img
}

func TestParseBzImageRejects(t *testing.T) {
	mod := func(f func([]byte)) []byte { b := fakeBzImage(); f(b); return b }
	cases := map[string][]byte{
		"empty":         nil,
		"elf":           append([]byte("\x7fELF"), make([]byte, 4096)...),
		"no HdrS":       mod(func(b []byte) { copy(b[hdrMagic:], "NOPE") }),
		"no 0xAA55":     mod(func(b []byte) { b[hdrBootFlag] = 0 }),
		"old protocol":  mod(func(b []byte) { binary.LittleEndian.PutUint16(b[hdrVersion:], 0x204) }),
		"zImage":        mod(func(b []byte) { b[hdrLoadFlags] = 0 }),
		"no 64-bit":     mod(func(b []byte) { b[hdrXLoadFlags] = 0 }),
		"setup too big": mod(func(b []byte) { b[hdrSetupSects] = 200 }),
	}
	for name, img := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBzImage(img)
			require.ErrorIs(t, err, ErrNotBzImage)
		})
	}
}

func TestLoad(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage())
	require.NoError(t, err)
	require.Equal(t, uint16(0x20F), k.Version)
	mem, err := guestmem.New([]guestmem.Layout{{GPA: 0, Size: 128 << 20}})
	require.NoError(t, err)
	defer mem.Close()

	initrd := []byte("070701 fake initrd")
	e, err := Load(mem, k, Params{
		Cmdline: "console=ttyS0",
		Initrd:  initrd,
		E820:    []E820Entry{{0, 0x9FC00, E820RAM}, {0x100000, 127 << 20, E820RAM}},
		RSDP:    0xE0000,
	})
	require.NoError(t, err)
	require.Equal(t, uint64(0x100200), e.RIP)
	require.Equal(t, uint64(layout.ZeroPageAddr), e.ZeroPage)

	// Protected-mode code at 1 MiB, setup sectors skipped.
	b, _ := mem.Slice(layout.KernelLoadAdr, 4)
	require.Equal(t, []byte{0xCC, 0xCC, 0xCC, 0xCC}, b)

	zp := func(off, n uint64) []byte {
		s, err := mem.Slice(layout.ZeroPageAddr+off, n)
		require.NoError(t, err)
		return s
	}
	require.Equal(t, "HdrS", string(zp(hdrMagic, 4)))
	require.Equal(t, byte(0xFF), zp(hdrTypeOfLoader, 1)[0])
	require.Equal(t, uint32(layout.CmdlineAddr), binary.LittleEndian.Uint32(zp(hdrCmdLinePtr, 4)))
	cl, _ := mem.Slice(layout.CmdlineAddr, 14)
	require.Equal(t, "console=ttyS0\x00", string(cl))

	rdAddr := binary.LittleEndian.Uint32(zp(hdrRamdiskImage, 4))
	require.Equal(t, uint32(len(initrd)), binary.LittleEndian.Uint32(zp(hdrRamdiskSize, 4)))
	require.Zero(t, rdAddr%4096)
	require.GreaterOrEqual(t, uint64(rdAddr), uint64(0x1000000+0x2000000), "initrd must not overlap the decompressing kernel")
	require.LessOrEqual(t, uint64(rdAddr)+uint64(len(initrd)), uint64(128<<20))
	got, _ := mem.Slice(uint64(rdAddr), uint64(len(initrd)))
	require.Equal(t, initrd, got)

	require.Equal(t, byte(2), zp(zpE820Entries, 1)[0])
	require.Equal(t, uint64(0x100000), binary.LittleEndian.Uint64(zp(zpE820Table+20, 8)))
	require.Equal(t, uint64(0xE0000), binary.LittleEndian.Uint64(zp(zpACPIRSDPAddr, 8)))

	// 2 MiB identity map: PD entry for 2 GiB+2 MiB maps that address.
	pde, _ := mem.Uint64(layout.PDAddr + 2*0x1000 + 8)
	require.Equal(t, uint64(2<<30+2<<20)|ptePresent|pteWrite|ptePS, pde)
}

func TestLoadErrors(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage())
	require.NoError(t, err)
	mem, err := guestmem.New([]guestmem.Layout{{GPA: 0, Size: 64 << 20}})
	require.NoError(t, err)
	defer mem.Close()

	_, err = Load(mem, k, Params{Cmdline: string(make([]byte, 4000))})
	require.ErrorContains(t, err, "command line")
	_, err = Load(mem, k, Params{Initrd: make([]byte, 40<<20)})
	require.ErrorContains(t, err, "initrd")
}

func TestResetVectorStub(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage())
	require.NoError(t, err)
	mem, err := guestmem.New([]guestmem.Layout{{GPA: 0, Size: 128 << 20}})
	require.NoError(t, err)
	defer mem.Close()
	_, err = Load(mem, k, Params{})
	require.NoError(t, err)
	b, err := mem.Slice(0xFFFF0, 4)
	require.NoError(t, err)
	require.Equal(t, []byte{0xB0, 0xFE, 0xE6, 0x64}, b, "mov al, 0xFE; out 0x64, al")
}
