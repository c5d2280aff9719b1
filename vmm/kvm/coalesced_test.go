package kvm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// Writes to a coalesced range do not exit: KVM queues them, and the next
// exit (here a write outside it) finds them in the ring, in order.
func TestCoalescedMMIO(t *testing.T) {
	code := []byte{
		0xB8, 0x34, 0x12, // mov ax, 0x1234
		0xBB, 0x00, 0xF0, // mov bx, 0xF000
		0x8E, 0xDB, // mov ds, bx
		0xA3, 0x00, 0x10, // mov [0x1000], ax  → 0xF1000, coalesced
		0xB8, 0x78, 0x56, // mov ax, 0x5678
		0xA3, 0x04, 0x10, // mov [0x1004], ax  → 0xF1004, coalesced
		0xA3, 0x00, 0x20, // mov [0x2000], ax  → 0xF2000, exits
		0xF4, // hlt
	}
	vm, c := realModeVM(t, code)
	page := vm.sys.CoalescedMMIOPage()
	if page == 0 {
		t.Skip("no coalesced MMIO in this KVM")
	}
	require.NoError(t, vm.SetCoalescedMMIO(0xF1000, 8, true))
	ring := c.CoalescedRing(page)
	require.NotNil(t, ring)
	require.Equal(t, uint32(ExitMMIO), runUntilExit(t, c))
	e := c.MMIO()
	require.Equal(t, uint64(0xF2000), e.Addr, "the first write to exit is the one outside the range")
	require.True(t, ring.Pending())
	type w struct {
		addr uint64
		data []byte
	}
	var got []w
	require.Equal(t, 2, ring.Drain(func(addr uint64, data []byte) { got = append(got, w{addr, append([]byte(nil), data...)}) }))
	require.Equal(t, []w{{0xF1000, []byte{0x34, 0x12}}, {0xF1004, []byte{0x78, 0x56}}}, got)
	require.False(t, ring.Pending())
	require.NoError(t, vm.SetCoalescedMMIO(0xF1000, 8, false))
}

// Drain follows the ring's indices round its end, caps a length at the 8
// data bytes an entry has, and frees each entry it used.
func TestCoalescedRingDrainWraps(t *testing.T) {
	r := &CoalescedRing{page: make([]byte, 4096), max: 170}
	put := func(i uint32, addr uint64, ln uint32, b byte) {
		e := r.page[coalescedHeader+int(i)*coalescedEntry:]
		binary.LittleEndian.PutUint64(e, addr)
		binary.LittleEndian.PutUint32(e[8:], ln)
		for k := range 8 {
			e[16+k] = b
		}
	}
	put(168, 0x100, 4, 1)
	put(169, 0x200, 2, 2)
	put(0, 0x300, 99, 3) // a length past the entry's data: capped
	binary.LittleEndian.PutUint32(r.page[0:], 168)
	binary.LittleEndian.PutUint32(r.page[4:], 1)
	var addrs []uint64
	var lens []int
	require.Equal(t, 3, r.Drain(func(a uint64, d []byte) { addrs, lens = append(addrs, a), append(lens, len(d)) }))
	require.Equal(t, []uint64{0x100, 0x200, 0x300}, addrs)
	require.Equal(t, []int{4, 2, 8}, lens)
	require.Equal(t, uint32(1), binary.LittleEndian.Uint32(r.page[0:]), "first caught up with last")
	require.Zero(t, r.Drain(func(uint64, []byte) { t.Fatal("drained twice") }))
}
