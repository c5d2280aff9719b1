// Command storm is a hostile guest program for govmm's end-to-end tests:
// it writes one device register in a tight loop, through /dev/mem, for a
// given time, and prints how many writes it made. The tests build it
// statically and put it in the guest's initramfs.
//
//	storm doorbell ADDR SECONDS   16-bit writes of 1 to ADDR (a virtio notify register)
//	storm msix SLOT SECONDS       mask and unmask MSI-X vector 0 of PCI function SLOT
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 4 {
		fail("usage: storm doorbell ADDR SECONDS | storm msix SLOT SECONDS")
	}
	secs, err := strconv.ParseFloat(os.Args[3], 64)
	if err != nil || secs <= 0 {
		fail("bad SECONDS %q", os.Args[3])
	}
	d := time.Duration(secs * float64(time.Second))
	var n uint64
	switch os.Args[1] {
	case "doorbell":
		addr, err := strconv.ParseUint(os.Args[2], 0, 64)
		if err != nil {
			fail("bad ADDR %q", os.Args[2])
		}
		p := (*uint16)(mapReg(addr))
		n = loop(d, func(i uint64) { store16(p, 1) })
	case "msix":
		addr := msixVector0(os.Args[2]) + 12 // vector control: bit 0 masks
		p := (*uint32)(mapReg(addr))
		ctl := *p
		n = loop(d, func(i uint64) { store32(p, ctl|uint32(i&1)) })
		store32(p, ctl)
	default:
		fail("unknown storm %q", os.Args[1])
	}
	fmt.Printf("RESULT: storm-%s-writes %d\n", os.Args[1], n)
}

// loop calls write until d has passed and returns how many times it did.
func loop(d time.Duration, write func(i uint64)) uint64 {
	end := time.Now().Add(d)
	var i uint64
	for {
		for range 256 {
			write(i)
			i++
		}
		if time.Now().After(end) {
			return i
		}
	}
}

// The stores must reach the device every time: not inlined, so the
// compiler cannot merge them.
//
//go:noinline
func store16(p *uint16, v uint16) { *p = v }

//go:noinline
func store32(p *uint32, v uint32) { *p = v }

// mapReg maps the page of /dev/mem holding the register at addr, uncached.
func mapReg(addr uint64) unsafe.Pointer {
	f, err := os.OpenFile("/dev/mem", os.O_RDWR|unix.O_SYNC, 0)
	if err != nil {
		fail("%v", err)
	}
	page := addr &^ 0xfff
	m, err := unix.Mmap(int(f.Fd()), int64(page), 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		fail("mmap /dev/mem at %#x: %v", page, err)
	}
	return unsafe.Pointer(&m[addr-page])
}

// msixVector0 finds MSI-X table entry 0 of a PCI function from sysfs: the
// capability (ID 0x11) in its config space names the BAR and offset.
func msixVector0(slot string) uint64 {
	dir := "/sys/bus/pci/devices/" + slot
	cfg, err := os.ReadFile(dir + "/config")
	if err != nil || len(cfg) < 64 {
		fail("config space of %s: %v", slot, err)
	}
	for off := int(cfg[0x34]); off != 0 && off+8 <= len(cfg); off = int(cfg[off+1]) {
		if cfg[off] != 0x11 {
			continue
		}
		table := binary.LittleEndian.Uint32(cfg[off+4:])
		return barBase(dir, int(table&7)) + uint64(table&^7)
	}
	fail("%s has no MSI-X capability", slot)
	return 0
}

func barBase(dir string, bar int) uint64 {
	res, err := os.ReadFile(dir + "/resource")
	if err != nil {
		fail("%v", err)
	}
	lines := strings.Split(string(res), "\n")
	if bar >= len(lines) {
		fail("no BAR %d", bar)
	}
	base, err := strconv.ParseUint(strings.Fields(lines[bar])[0], 0, 64)
	if err != nil || base == 0 {
		fail("BAR %d not assigned", bar)
	}
	return base
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "storm: "+format+"\n", a...)
	os.Exit(1)
}
