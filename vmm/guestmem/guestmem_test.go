package guestmem

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func newTestMem(t *testing.T) *Memory {
	t.Helper()
	m, err := New([]Layout{{GPA: 0, Size: 1 << 20}, {GPA: 4 << 30, Size: 64 << 10}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

func TestSliceBounds(t *testing.T) {
	m := newTestMem(t)
	cases := []struct {
		name string
		gpa  uint64
		n    uint64
		ok   bool
	}{
		{"start", 0, 16, true},
		{"whole low region", 0, 1 << 20, true},
		{"last byte", 1<<20 - 1, 1, true},
		{"crosses end", 1<<20 - 1, 2, false},
		{"in hole", 2 << 30, 1, false},
		{"high region", 4 << 30, 4096, true},
		{"past high", 4<<30 + 64<<10, 1, false},
		{"wraps", ^uint64(0) - 1, 4, false},
		{"huge length", 0, ^uint64(0), false},
		{"zero length inside", 100, 0, true},
		{"zero length outside", 3 << 30, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := m.Slice(c.gpa, c.n)
			if c.ok {
				require.NoError(t, err)
				require.Len(t, s, int(c.n))
				require.Equal(t, int(c.n), cap(s), "slice must not expose memory past the access")
			} else {
				require.ErrorIs(t, err, ErrOutOfRange)
			}
		})
	}
}

func TestSliceAliasesRAM(t *testing.T) {
	m := newTestMem(t)
	s, err := m.Slice(0x1000, 4)
	require.NoError(t, err)
	copy(s, []byte{1, 2, 3, 4})
	v, err := m.Uint32(0x1000)
	require.NoError(t, err)
	require.Equal(t, uint32(0x04030201), v)
}

func TestLittleEndianAccessors(t *testing.T) {
	m := newTestMem(t)
	require.NoError(t, m.PutUint16(10, 0xBEEF))
	require.NoError(t, m.PutUint32(20, 0xDEADBEEF))
	require.NoError(t, m.PutUint64(32, 0x0102030405060708))
	v16, _ := m.Uint16(10)
	v32, _ := m.Uint32(20)
	v64, _ := m.Uint64(32)
	require.Equal(t, uint16(0xBEEF), v16)
	require.Equal(t, uint32(0xDEADBEEF), v32)
	require.Equal(t, uint64(0x0102030405060708), v64)
	b := make([]byte, 2)
	require.NoError(t, m.ReadAt(b, 32))
	require.Equal(t, []byte{8, 7}, b)
	require.ErrorIs(t, m.PutUint64(1<<20-4, 1), ErrOutOfRange)
	require.ErrorIs(t, m.WriteAt(make([]byte, 8), 1<<20-4), ErrOutOfRange)
}

func TestAtomicAccessors(t *testing.T) {
	m := newTestMem(t)
	require.NoError(t, m.PutUint32(0x100, 0xAAAABBBB))
	require.NoError(t, m.StoreUint16(0x102, 0x1234))
	v, err := m.Uint32(0x100)
	require.NoError(t, err)
	require.Equal(t, uint32(0x1234BBBB), v, "StoreUint16 must leave the other half-word alone")
	h, err := m.LoadUint16(0x102)
	require.NoError(t, err)
	require.Equal(t, uint16(0x1234), h)
	h, err = m.LoadUint16(0x100)
	require.NoError(t, err)
	require.Equal(t, uint16(0xBBBB), h)

	_, err = m.LoadUint16(0x101)
	require.ErrorIs(t, err, ErrUnaligned)
	require.ErrorIs(t, m.StoreUint32(0x102, 1), ErrUnaligned)
	_, err = m.LoadUint64(0x104)
	require.ErrorIs(t, err, ErrUnaligned)
	_, err = m.LoadUint32(2 << 30)
	require.ErrorIs(t, err, ErrOutOfRange)

	require.NoError(t, m.StoreUint64(0x200, 42))
	x, err := m.LoadUint64(0x200)
	require.NoError(t, err)
	require.Equal(t, uint64(42), x)
}

// Two writers updating the two halves of one word concurrently must not lose
// each other's updates (the used-ring idx next to the flags word is the
// real-world case). Run with -race.
func TestStoreUint16Concurrent(t *testing.T) {
	m := newTestMem(t)
	var wg sync.WaitGroup
	for half := uint64(0); half < 2; half++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				require.NoError(t, m.StoreUint16(0x300+2*half, uint16(i)))
			}
		}()
	}
	wg.Wait()
	lo, _ := m.LoadUint16(0x300)
	hi, _ := m.LoadUint16(0x302)
	require.Equal(t, uint16(9999), lo)
	require.Equal(t, uint16(9999), hi)
}

func TestNewRejectsBadLayouts(t *testing.T) {
	_, err := New([]Layout{{GPA: 0, Size: 0}})
	require.Error(t, err)
	_, err = New([]Layout{{GPA: 1, Size: 4096}})
	require.Error(t, err)
	_, err = New([]Layout{{GPA: 0, Size: 8192}, {GPA: 4096, Size: 4096}})
	require.Error(t, err)
	_, err = FromRegions(Region{GPA: 0, Host: make([]byte, 16)}, Region{GPA: 8, Host: make([]byte, 16)})
	require.Error(t, err)
}

func TestSizeAndEnd(t *testing.T) {
	m := newTestMem(t)
	require.Equal(t, uint64(1<<20+64<<10), m.Size())
	require.Equal(t, uint64(4<<30+64<<10), m.End())
	require.Len(t, m.Regions(), 2)
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0), uint64(1))
	f.Add(^uint64(0), uint64(2))
	m, err := FromRegions(Region{GPA: 0x1000, Host: make([]byte, 4096)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, gpa, n uint64) {
		s, err := m.Slice(gpa, n)
		if err == nil && (gpa < 0x1000 || gpa+n > 0x2000 || uint64(len(s)) != n) {
			t.Fatalf("Slice(%#x, %#x) accepted an access outside RAM", gpa, n)
		}
	})
}

// TestSpan: New maps the regions back to back in one range, then the
// scratch: a GPA's span offset names the same byte as its slice, the hole
// between regions takes no room, and scratch is outside every region.
func TestSpan(t *testing.T) {
	page := uint64(4096)
	m, err := NewWithScratch([]Layout{{GPA: 0, Size: 4 * page}, {GPA: 1 << 32, Size: 2 * page}}, 100)
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.Span(), int(7*page), "6 pages of RAM, scratch rounded up to a page")
	require.Len(t, m.Scratch(), int(page))
	for _, gpa := range []uint64{0, 3*page + 7, 1 << 32, 1<<32 + page + 9} {
		off, err := m.SpanOffset(gpa, 1)
		require.NoError(t, err)
		s, err := m.Slice(gpa, 1)
		require.NoError(t, err)
		s[0] = byte(gpa) ^ 0x5a
		require.Equal(t, s[0], m.Span()[off], "gpa %#x", gpa)
	}
	off, err := m.SpanOffset(1<<32, 1)
	require.NoError(t, err)
	require.Equal(t, 4*page, off, "the second region follows the first in the span")
	_, err = m.SpanOffset(3*page, 2*page)
	require.ErrorIs(t, err, ErrOutOfRange, "a range across the hole has no offset")
	_, err = m.SpanOffset(5*page, 1)
	require.ErrorIs(t, err, ErrOutOfRange, "the hole")
	m.Scratch()[0] = 1
	for _, r := range m.Regions() {
		require.False(t, &r.Host[len(r.Host)-1] == &m.Scratch()[0])
	}
	require.Equal(t, cap(m.Regions()[0].Host), len(m.Regions()[0].Host), "a region cannot be appended into the next")

	f, err := FromRegions(Region{GPA: 0, Host: make([]byte, 64)})
	require.NoError(t, err)
	require.Nil(t, f.Span())
	_, err = f.SpanOffset(0, 1)
	require.Error(t, err)
}

// TestHugePages: Map backs RAM with 2 MiB pages from the host's pool
// (reserving a few for the test when it may), PageSize says so, and a
// pool too small is one clear error.
func TestHugePages(t *testing.T) {
	const pages = 4
	if b, err := os.ReadFile("/proc/sys/vm/nr_hugepages"); err == nil && os.Geteuid() == 0 {
		old := strings.TrimSpace(string(b))
		if n, _ := strconv.Atoi(old); n < pages {
			if os.WriteFile("/proc/sys/vm/nr_hugepages", []byte(strconv.Itoa(pages)), 0) == nil {
				t.Cleanup(func() { _ = os.WriteFile("/proc/sys/vm/nr_hugepages", []byte(old), 0) })
			}
		}
	}
	m, err := Map([]Layout{{GPA: 0, Size: 4 << 20}}, Options{Scratch: 4096, HugePages: true})
	if err != nil {
		t.Skipf("no hugepages here: %v", err)
	}
	defer m.Close()
	require.Equal(t, uint64(HugePageSize), m.PageSize())
	require.Len(t, m.Span(), 4<<20+4096)
	s, err := m.Slice(4<<20-1, 1)
	require.NoError(t, err)
	s[0] = 7
	m.Scratch()[4095] = 9

	_, err = Map([]Layout{{GPA: 0, Size: 1 << 40}}, Options{HugePages: true})
	require.ErrorContains(t, err, "nr_hugepages")
	plain, err := New([]Layout{{GPA: 0, Size: 1 << 20}})
	require.NoError(t, err)
	defer plain.Close()
	require.Equal(t, uint64(os.Getpagesize()), plain.PageSize())
}

// With THP, guest RAM starts on a 2 MiB boundary and carries the
// transparent hugepage advice (VmFlags "hg" in smaps), as QEMU's does;
// nothing of the alignment slack stays mapped.
func TestRAMAlignedForHugePages(t *testing.T) {
	m, err := Map([]Layout{{GPA: 0, Size: 6 << 20}}, Options{THP: true})
	require.NoError(t, err)
	defer m.Close()
	start := uintptr(unsafe.Pointer(&m.Span()[0]))
	require.Zero(t, start%HugePageSize, "guest RAM at %#x", start)
	smaps, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	var found bool
	var flags string
	for _, line := range strings.Split(string(smaps), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			b, _ := strconv.ParseUint(hi, 16, 64)
			found = uintptr(a) <= start && start < uintptr(b)
			if found {
				require.Equal(t, uintptr(a), start, "no slack mapped before guest RAM")
				require.Equal(t, uintptr(b), start+6<<20, "no slack mapped after guest RAM")
			}
			continue
		}
		if found && strings.HasPrefix(line, "VmFlags:") {
			flags = line
			break
		}
	}
	require.Contains(t, flags, " hg", "MADV_HUGEPAGE on guest RAM")
}
