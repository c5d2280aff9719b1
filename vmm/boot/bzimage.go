// Package boot loads a Linux bzImage and initrd into guest memory following
// the x86 boot protocol (Documentation/arch/x86/boot.rst) and enters the
// kernel's 64-bit entry point directly, as Firecracker and cloud-hypervisor
// do: no firmware, no real-mode setup code.
package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Setup header offsets inside the bzImage / zero page (boot.rst, "The Real-Mode Kernel Header").
const (
	hdrSetupSects    = 0x1F1
	hdrBootFlag      = 0x1FE
	hdrJump          = 0x200
	hdrMagic         = 0x202 // "HdrS"
	hdrVersion       = 0x206
	hdrTypeOfLoader  = 0x210
	hdrLoadFlags     = 0x211
	hdrRamdiskImage  = 0x218
	hdrRamdiskSize   = 0x21C
	hdrHeapEndPtr    = 0x224
	hdrCmdLinePtr    = 0x228
	hdrInitrdAddrMax = 0x22C
	hdrKernelAlign   = 0x230
	hdrRelocatable   = 0x234
	hdrXLoadFlags    = 0x236
	hdrCmdlineSize   = 0x238
	hdrPrefAddress   = 0x258
	hdrInitSize      = 0x260

	loadedHigh   = 1 << 0 // loadflags: protected-mode code loads at 1 MiB (bzImage)
	canUseHeap   = 1 << 7
	xlfKernel64  = 1 << 0 // xloadflags: has the 64-bit entry at +0x200
	minVersion   = 0x206  // 2.06: cmdline_size, the oldest protocol we accept
	startup64Off = 0x200
)

// ErrNotBzImage is returned for a file that is not a Linux bzImage.
var ErrNotBzImage = errors.New("not a Linux bzImage")

// Kernel is a validated bzImage.
type Kernel struct {
	image      []byte
	Version    uint16 // boot protocol version, e.g. 0x20F
	setupBytes int    // real-mode part, skipped when loading
	InitSize   uint32 // memory the kernel needs from its load address while decompressing
	CmdlineMax uint32 // longest command line the kernel accepts, without the NUL
	InitrdMax  uint32 // highest address the initrd may end at (inclusive)
}

// ParseBzImage checks the setup header. Everything the VMM later relies on
// (protocol version, 64-bit entry, sizes) is validated here so a bad file is
// one clear error before the VM exists.
func ParseBzImage(image []byte) (*Kernel, error) {
	if len(image) < 0x270 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrNotBzImage, len(image))
	}
	if binary.LittleEndian.Uint16(image[hdrBootFlag:]) != 0xAA55 || string(image[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no boot sector signature or HdrS magic", ErrNotBzImage)
	}
	k := &Kernel{image: image, Version: binary.LittleEndian.Uint16(image[hdrVersion:])}
	if k.Version < minVersion {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d is older than 2.06", ErrNotBzImage, k.Version>>8, k.Version&0xFF)
	}
	if image[hdrLoadFlags]&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: a zImage (loads low), not a bzImage", ErrNotBzImage)
	}
	if k.Version < 0x20C || binary.LittleEndian.Uint16(image[hdrXLoadFlags:])&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: kernel has no 64-bit entry point (needs boot protocol 2.12+, x86-64)", ErrNotBzImage)
	}
	sects := int(image[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	k.setupBytes = (sects + 1) * 512
	if k.setupBytes >= len(image) {
		return nil, fmt.Errorf("%w: setup (%d bytes) covers the whole file", ErrNotBzImage, k.setupBytes)
	}
	k.CmdlineMax = binary.LittleEndian.Uint32(image[hdrCmdlineSize:])
	k.InitrdMax = binary.LittleEndian.Uint32(image[hdrInitrdAddrMax:])
	k.InitSize = binary.LittleEndian.Uint32(image[hdrInitSize:])
	return k, nil
}

// protectedMode returns the part loaded at 1 MiB.
func (k *Kernel) protectedMode() []byte { return k.image[k.setupBytes:] }

// setupHeader returns the header bytes copied into the zero page: from
// 0x1F1 to the end the jump at 0x200 points past.
func (k *Kernel) setupHeader() []byte {
	end := 0x202 + int(k.image[hdrJump+1])
	if end > len(k.image) || end < hdrSetupSects {
		end = 0x290
	}
	return k.image[hdrSetupSects:end]
}
