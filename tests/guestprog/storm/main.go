// Command storm is a hostile guest program for govmm's end-to-end tests.
// It drives a device through /dev/mem in ways no driver does:
//
//	storm doorbell ADDR SECONDS  16-bit writes of 1 to ADDR (a virtio notify register) in a
//	                             tight loop; prints how many
//	storm msix SLOT SECONDS      masks and unmasks MSI-X vector 0 of PCI function SLOT in a
//	                             tight loop; prints how many times
//	storm writes ADDR WIDTH N    N writes of 0 to the WIDTH-bit (8, 16 or 32) register at ADDR,
//	                             back to back (what a shell loop of devmem does, without a
//	                             process per write)
//	storm breakring BAR0 -       with the driver unbound, brings the virtio-net device at BAR0
//	                             up on rings in this program's own memory, breaks the transmit
//	                             ring (an avail idx far ahead of it) and kicks it; prints the
//	                             device status before and after
//
// The tests build it statically and put it in the guest's initramfs.
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
	if len(os.Args) == 5 && os.Args[1] == "writes" {
		writes(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) != 4 {
		fail("usage: storm doorbell ADDR SECONDS | storm msix SLOT SECONDS | storm writes ADDR WIDTH N | storm breakring BAR0 -")
	}
	if os.Args[1] == "breakring" {
		breakRing(os.Args[2])
		return
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

// writes stores 0 n times to the register at addr.
func writes(addr, width, count string) {
	a, err := strconv.ParseUint(addr, 0, 64)
	if err != nil {
		fail("bad ADDR %q", addr)
	}
	n, err := strconv.ParseUint(count, 0, 32)
	if err != nil {
		fail("bad N %q", count)
	}
	p := mapReg(a)
	for range n {
		switch width {
		case "8":
			store8((*uint8)(p), 0)
		case "16":
			store16((*uint16)(p), 0)
		case "32":
			store32((*uint32)(p), 0)
		default:
			fail("bad WIDTH %q: 8, 16 or 32", width)
		}
	}
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

// Virtio 1.x common configuration (virtio 1.2 §4.1.4.3) and govmm's
// notify area, at fixed offsets in virtio-net's BAR 0.
const (
	ccDriverFeatSel = 0x08
	ccDriverFeat    = 0x0c
	ccStatus        = 0x14
	ccQueueSelect   = 0x16
	ccQueueSize     = 0x18
	ccQueueEnable   = 0x1c
	ccQueueDesc     = 0x20
	ccQueueDriver   = 0x28
	ccQueueDevice   = 0x30
	notifyArea      = 0x3000
)

// breakRing plays a driver that breaks its transmit ring after DRIVER_OK.
func breakRing(barArg string) {
	bar, err := strconv.ParseUint(barArg, 0, 64)
	if err != nil {
		fail("bad BAR0 %q", barArg)
	}
	cc := mapReg(bar)
	notify := mapReg(bar + notifyArea)
	w8 := func(off uintptr, v uint8) { store8((*uint8)(unsafe.Add(cc, off)), v) }
	w16 := func(off uintptr, v uint16) { store16((*uint16)(unsafe.Add(cc, off)), v) }
	w32 := func(off uintptr, v uint32) { store32((*uint32)(unsafe.Add(cc, off)), v) }
	w64 := func(off uintptr, v uint64) { w32(off, uint32(v)); w32(off+4, uint32(v>>32)) }
	status := func() uint8 { return load8((*uint8)(unsafe.Add(cc, ccStatus))) }

	// One locked page per queue: descriptors at 0, avail at 0x400, used at 0x800.
	rings := make([][]byte, 2)
	gpas := make([]uint64, 2)
	for q := range rings {
		m, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_LOCKED|unix.MAP_POPULATE)
		if err != nil {
			fail("ring memory: %v", err)
		}
		rings[q], gpas[q] = m, physAddr(m)
	}
	w8(ccStatus, 0)
	w8(ccStatus, 1|2) // ACKNOWLEDGE | DRIVER
	w32(ccDriverFeatSel, 1)
	w32(ccDriverFeat, 1) // VERSION_1
	w32(ccDriverFeatSel, 0)
	w32(ccDriverFeat, 0)
	w8(ccStatus, 1|2|8) // FEATURES_OK
	for q := range rings {
		w16(ccQueueSelect, uint16(q))
		w16(ccQueueSize, 16)
		w64(ccQueueDesc, gpas[q])
		w64(ccQueueDriver, gpas[q]+0x400)
		w64(ccQueueDevice, gpas[q]+0x800)
		w16(ccQueueEnable, 1)
	}
	w8(ccStatus, 1|2|8|4) // DRIVER_OK
	fmt.Printf("RESULT: breakring-up-status %#x\n", status())
	// The transmit avail idx jumps 1000 entries ahead of a 16-entry ring.
	binary.LittleEndian.PutUint16(rings[1][0x400+2:], 1000)
	store16((*uint16)(unsafe.Add(notify, 4)), 1) // queue 1's doorbell (notify_off_multiplier 4)
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("RESULT: breakring-status %#x\n", status())
}

// physAddr returns the physical (guest-physical) address of b's page from
// /proc/self/pagemap (root only).
func physAddr(b []byte) uint64 {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		fail("%v", err)
	}
	defer f.Close()
	var e [8]byte
	va := uint64(uintptr(unsafe.Pointer(&b[0])))
	if _, err := f.ReadAt(e[:], int64(va/0x1000*8)); err != nil {
		fail("pagemap: %v", err)
	}
	v := binary.LittleEndian.Uint64(e[:])
	pfn := v & (1<<55 - 1)
	if v&(1<<63) == 0 || pfn == 0 {
		fail("pagemap: page not present or PFN hidden (%#x)", v)
	}
	return pfn * 0x1000
}

//go:noinline
func store8(p *uint8, v uint8) { *p = v }

//go:noinline
func load8(p *uint8) uint8 { return *p }
