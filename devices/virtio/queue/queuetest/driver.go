// Package queuetest is an in-process virtio split-virtqueue *driver* for
// unit tests of devices built on package queue. It lays the rings out in a
// guestmem.Memory backed by a Go slice, adds descriptor chains (direct or
// indirect), reads used elements, and drives both notification suppression
// mechanisms, mirroring what Linux's virtio_ring.c does on the guest side.
//
// It is deliberately a separate implementation of the ring layout so that it
// cross-checks the device code. All ring header, ring entry and event
// fields are accessed with guestmem's atomic accessors, so a Driver used
// from one goroutine and a device from another are race-detector clean.
// A Driver itself is not safe for concurrent use.
package queuetest

import (
	"errors"
	"fmt"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/vmm/guestmem"
)

// ErrNoSpace is returned when the driver runs out of descriptors or buffer
// chunks (the device has not returned enough chains).
var ErrNoSpace = errors.New("queuetest: no free descriptors or buffers")

const page = 4096

// Config describes the driver-side layout.
type Config struct {
	Size      uint16 // queue size, a power of two (default 256)
	ChunkSize uint32 // largest buffer or indirect table, in bytes (default 4096)
	Chunks    int    // number of buffer chunks (default 4*Size)
	// GPA is where guest RAM starts (default 0x10000, so low addresses are
	// outside RAM and can be used to build malformed descriptors).
	GPA      uint64
	EventIdx bool // VIRTIO_F_EVENT_IDX negotiated
	Indirect bool // VIRTIO_F_INDIRECT_DESC negotiated
}

// Desc is a raw descriptor (struct virtq_desc).
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Used is one used element read back by PopUsed.
type Used struct {
	ID  uint32 // head as written by the device (not trusted)
	Len uint32 // bytes written, as reported by the device
	// Data holds the first min(Len, capacity) bytes of the chain's writable
	// buffers, copied before the buffers are recycled. Nil for raw chains.
	Data []byte
}

// chainRec is the driver's private record of an outstanding chain.
type chainRec struct {
	descs    []uint16 // descriptors to free
	chunks   []uint64 // buffer chunks to free
	writable []Desc   // writable buffers, for Used.Data
	live     bool
}

// Driver is the guest side of one split virtqueue.
type Driver struct {
	Mem                    *guestmem.Memory
	Size                   uint16
	DescTable, Avail, Used uint64 // ring GPAs
	ChunkSize              uint32
	EventIdx, Indirect     bool

	ram        []byte
	freeDescs  []uint16
	freeChunks []uint64
	chains     []chainRec // by head
	availIdx   uint16     // shadow of avail idx
	kickedIdx  uint16     // avail idx at the last NeedsKick
	lastUsed   uint16     // next used element to read
}

// New allocates guest RAM and lays out the rings (descriptor table, avail
// ring and used ring each on their own page) followed by the buffer chunks.
func New(cfg Config) (*Driver, error) {
	if cfg.Size == 0 {
		cfg.Size = 256
	}
	if cfg.Size&(cfg.Size-1) != 0 || cfg.Size > queue.MaxQueueSize {
		return nil, fmt.Errorf("queuetest: bad size %d", cfg.Size)
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = 4096
	}
	if cfg.Chunks == 0 {
		cfg.Chunks = 4 * int(cfg.Size)
	}
	if cfg.GPA == 0 {
		cfg.GPA = 0x10000
	}
	// Pad each ring so the 32-bit word around used_event / avail_event
	// stays inside the ring's own page.
	roundUp := func(n uint64) uint64 { return (n + 4 + page - 1) &^ (page - 1) }
	d := &Driver{
		Size:      cfg.Size,
		ChunkSize: cfg.ChunkSize,
		EventIdx:  cfg.EventIdx,
		Indirect:  cfg.Indirect,
		chains:    make([]chainRec, cfg.Size),
	}
	off := uint64(0)
	d.DescTable = cfg.GPA + off
	off += roundUp(queue.DescTableSize(cfg.Size))
	d.Avail = cfg.GPA + off
	off += roundUp(queue.AvailRingSize(cfg.Size))
	d.Used = cfg.GPA + off
	off += roundUp(queue.UsedRingSize(cfg.Size))
	chunkBase := cfg.GPA + off
	off += uint64(cfg.Chunks) * uint64(cfg.ChunkSize)
	d.ram = make([]byte, off)
	mem, err := guestmem.FromRegions(guestmem.Region{GPA: cfg.GPA, Host: d.ram})
	if err != nil {
		return nil, err
	}
	d.Mem = mem
	for i := int(cfg.Size) - 1; i >= 0; i-- {
		d.freeDescs = append(d.freeDescs, uint16(i))
	}
	for i := cfg.Chunks - 1; i >= 0; i-- {
		d.freeChunks = append(d.freeChunks, chunkBase+uint64(i)*uint64(cfg.ChunkSize))
	}
	return d, nil
}

// Configure programs q the way a transport would on the driver's behalf:
// size, ring addresses and features, then Validate and SetReady(true).
func (d *Driver) Configure(q *queue.Queue) error {
	q.SetSize(d.Size)
	q.SetDescTable(d.DescTable)
	q.SetAvailRing(d.Avail)
	q.SetUsedRing(d.Used)
	q.SetEventIdx(d.EventIdx)
	q.SetIndirect(d.Indirect)
	if err := q.Validate(d.Mem); err != nil {
		return err
	}
	q.SetReady(true)
	return nil
}

// FreeDescs returns the number of free descriptors.
func (d *Driver) FreeDescs() int { return len(d.freeDescs) }

// AddChain makes a chain available: one device-readable buffer holding each
// element of readable, then one device-writable buffer of each length in
// writable. It returns the head descriptor index.
func (d *Driver) AddChain(readable [][]byte, writable []uint32) (uint16, error) {
	descs, rec, err := d.buildBuffers(readable, writable)
	if err != nil {
		return 0, err
	}
	n := len(descs)
	if n == 0 || n > len(d.freeDescs) {
		d.release(rec)
		return 0, fmt.Errorf("%w: chain of %d descriptors", ErrNoSpace, n)
	}
	ids := d.takeDescs(n)
	for i := range descs {
		if i+1 < n {
			descs[i].Flags |= queue.DescFNext
			descs[i].Next = ids[i+1]
		}
		if err := d.WriteDesc(ids[i], descs[i]); err != nil {
			return 0, err
		}
	}
	rec.descs = ids
	return d.commit(ids[0], rec)
}

// AddIndirectChain is AddChain through an indirect table (§2.7.5.3): one
// ring descriptor with VIRTQ_DESC_F_INDIRECT pointing at a table that holds
// the buffers.
func (d *Driver) AddIndirectChain(readable [][]byte, writable []uint32) (uint16, error) {
	descs, rec, err := d.buildBuffers(readable, writable)
	if err != nil {
		return 0, err
	}
	n := len(descs)
	if n == 0 || uint64(n)*queue.DescSize > uint64(d.ChunkSize) || len(d.freeDescs) == 0 {
		d.release(rec)
		return 0, fmt.Errorf("%w: indirect chain of %d descriptors", ErrNoSpace, n)
	}
	table, ok := d.takeChunk()
	if !ok {
		d.release(rec)
		return 0, ErrNoSpace
	}
	rec.chunks = append(rec.chunks, table)
	for i := range descs {
		if i+1 < n {
			descs[i].Flags |= queue.DescFNext
			descs[i].Next = uint16(i + 1)
		}
	}
	if err := d.WriteTable(table, descs); err != nil {
		return 0, err
	}
	ids := d.takeDescs(1)
	if err := d.WriteDesc(ids[0], Desc{Addr: table, Len: uint32(n) * queue.DescSize, Flags: queue.DescFIndirect}); err != nil {
		return 0, err
	}
	rec.descs = ids
	return d.commit(ids[0], rec)
}

// buildBuffers allocates and fills one chunk per buffer. On error nothing
// stays allocated.
func (d *Driver) buildBuffers(readable [][]byte, writable []uint32) (descs []Desc, rec chainRec, err error) {
	defer func() {
		if err != nil {
			d.release(rec)
			rec = chainRec{}
		}
	}()
	descs = make([]Desc, 0, len(readable)+len(writable))
	for _, b := range readable {
		gpa, err := d.bufChunk(&rec, uint64(len(b)))
		if err != nil {
			return nil, rec, err
		}
		if err := d.Mem.WriteAt(b, gpa); err != nil {
			return nil, rec, err
		}
		descs = append(descs, Desc{Addr: gpa, Len: uint32(len(b))})
	}
	for _, n := range writable {
		gpa, err := d.bufChunk(&rec, uint64(n))
		if err != nil {
			return nil, rec, err
		}
		wd := Desc{Addr: gpa, Len: n, Flags: queue.DescFWrite}
		descs = append(descs, wd)
		rec.writable = append(rec.writable, wd)
	}
	return descs, rec, nil
}

func (d *Driver) bufChunk(rec *chainRec, n uint64) (uint64, error) {
	if n > uint64(d.ChunkSize) {
		return 0, fmt.Errorf("queuetest: buffer of %d bytes > chunk size %d", n, d.ChunkSize)
	}
	gpa, ok := d.takeChunk()
	if !ok {
		return 0, ErrNoSpace
	}
	rec.chunks = append(rec.chunks, gpa)
	return gpa, nil
}

func (d *Driver) takeChunk() (uint64, bool) {
	n := len(d.freeChunks)
	if n == 0 {
		return 0, false
	}
	gpa := d.freeChunks[n-1]
	d.freeChunks = d.freeChunks[:n-1]
	return gpa, true
}

func (d *Driver) takeDescs(n int) []uint16 {
	k := len(d.freeDescs) - n
	ids := append([]uint16(nil), d.freeDescs[k:]...)
	d.freeDescs = d.freeDescs[:k]
	// Pop order is reversed; keep ascending-ish ids for readable dumps.
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	return ids
}

func (d *Driver) release(rec chainRec) {
	d.freeChunks = append(d.freeChunks, rec.chunks...)
	d.freeDescs = append(d.freeDescs, rec.descs...)
}

func (d *Driver) commit(head uint16, rec chainRec) (uint16, error) {
	rec.live = true
	d.chains[head] = rec
	return head, d.PushAvail(head)
}

// Alloc takes one buffer chunk (ChunkSize bytes) for raw descriptors; it is
// never freed.
func (d *Driver) Alloc() (uint64, error) {
	gpa, ok := d.takeChunk()
	if !ok {
		return 0, ErrNoSpace
	}
	return gpa, nil
}

// WriteDesc writes descriptor i of the ring's table verbatim. Raw writes
// bypass the free list: do not mix them with AddChain on the same indices.
func (d *Driver) WriteDesc(i uint16, desc Desc) error {
	return d.writeDescAt(d.DescTable+queue.DescSize*uint64(i), desc)
}

// WriteTable writes descs verbatim as an (indirect) table at gpa.
func (d *Driver) WriteTable(gpa uint64, descs []Desc) error {
	for i, desc := range descs {
		if err := d.writeDescAt(gpa+queue.DescSize*uint64(i), desc); err != nil {
			return err
		}
	}
	return nil
}

func (d *Driver) writeDescAt(gpa uint64, desc Desc) error {
	b, err := d.Mem.Slice(gpa, queue.DescSize)
	if err != nil {
		return err
	}
	putLE(b[0:8], desc.Addr)
	putLE(b[8:12], uint64(desc.Len))
	putLE(b[12:14], uint64(desc.Flags))
	putLE(b[14:16], uint64(desc.Next))
	return nil
}

func putLE(b []byte, v uint64) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

// PushAvail puts head in the next avail ring entry and publishes it by
// incrementing the avail idx (§2.7.13.2, §2.7.13.3). It does not kick; see
// NeedsKick.
func (d *Driver) PushAvail(head uint16) error {
	slot := d.Avail + 4 + 2*uint64(d.availIdx&(d.Size-1))
	if err := d.Mem.StoreUint16(slot, head); err != nil {
		return err
	}
	d.availIdx++
	// Release: the entry and descriptors are visible before the new idx.
	return d.Mem.StoreUint16(d.Avail+2, d.availIdx)
}

// SetAvailIdx overwrites the avail idx (for malformed-ring tests).
func (d *Driver) SetAvailIdx(idx uint16) error {
	d.availIdx = idx
	return d.Mem.StoreUint16(d.Avail+2, idx)
}

// AvailIdx returns the driver's avail idx.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// NeedsKick reports whether the driver must notify the device for the
// buffers published since the previous call (§2.7.10, Linux's
// virtqueue_kick_prepare): vring_need_event on avail_event with EVENT_IDX,
// otherwise !VIRTQ_USED_F_NO_NOTIFY.
func (d *Driver) NeedsKick() (bool, error) {
	old, cur := d.kickedIdx, d.availIdx
	d.kickedIdx = cur
	// mb() between the avail idx store and reading avail_event / flags:
	// the atomics used for both are sequentially consistent.
	if d.EventIdx {
		ev, err := d.AvailEvent()
		if err != nil {
			return false, err
		}
		return queue.NeedEvent(ev, cur, old), nil
	}
	flags, err := d.Mem.LoadUint16(d.Used)
	if err != nil {
		return false, err
	}
	return flags&queue.UsedFNoNotify == 0, nil
}

// AvailEvent reads avail_event from the used ring.
func (d *Driver) AvailEvent() (uint16, error) {
	return d.Mem.LoadUint16(d.Used + 4 + queue.UsedElemSize*uint64(d.Size))
}

// UsedFlags reads the used ring flags.
func (d *Driver) UsedFlags() (uint16, error) { return d.Mem.LoadUint16(d.Used) }

// SetUsedEvent writes used_event in the avail ring (§2.7.7): with EVENT_IDX
// the device interrupts once it publishes used entry number v.
func (d *Driver) SetUsedEvent(v uint16) error {
	return d.Mem.StoreUint16(d.Avail+4+2*uint64(d.Size), v)
}

// SetAvailFlags writes the avail ring flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
func (d *Driver) SetAvailFlags(f uint16) error { return d.Mem.StoreUint16(d.Avail, f) }

// EnableInterrupts asks the device for a used buffer notification at the
// next used element (Linux's virtqueue_enable_cb): used_event = next element
// to read with EVENT_IDX, otherwise the NO_INTERRUPT flag is cleared. It
// then re-reads the used idx and reports whether elements are already
// pending, in which case the caller must consume them instead of waiting.
func (d *Driver) EnableInterrupts() (bool, error) {
	var err error
	if d.EventIdx {
		err = d.SetUsedEvent(d.lastUsed)
	} else {
		err = d.SetAvailFlags(0)
	}
	if err != nil {
		return false, err
	}
	// mb() between the store above and the used idx load: both are
	// sequentially consistent atomics.
	idx, err := d.UsedIdx()
	return idx != d.lastUsed, err
}

// DisableInterrupts sets VIRTQ_AVAIL_F_NO_INTERRUPT (without EVENT_IDX; with
// it, used_event simply stays behind, as in Linux).
func (d *Driver) DisableInterrupts() error {
	if d.EventIdx {
		return nil
	}
	return d.SetAvailFlags(queue.AvailFNoInterrupt)
}

// UsedIdx loads the used idx published by the device.
func (d *Driver) UsedIdx() (uint16, error) { return d.Mem.LoadUint16(d.Used + 2) }

// PopUsed returns the next used element, if the device published one, and
// recycles the chain's descriptors and buffers. Raw chains (added with
// WriteDesc/PushAvail) are returned without Data and nothing is freed.
func (d *Driver) PopUsed() (Used, bool, error) {
	// Acquire: the element is visible once the idx covering it is.
	idx, err := d.UsedIdx()
	if err != nil || idx == d.lastUsed {
		return Used{}, false, err
	}
	e := d.Used + 4 + queue.UsedElemSize*uint64(d.lastUsed&(d.Size-1))
	id, err := d.Mem.Uint32(e)
	if err != nil {
		return Used{}, false, err
	}
	n, err := d.Mem.Uint32(e + 4)
	if err != nil {
		return Used{}, false, err
	}
	d.lastUsed++
	u := Used{ID: id, Len: n}
	if id < uint32(d.Size) && d.chains[id].live {
		rec := d.chains[id]
		for _, w := range rec.writable {
			if uint32(len(u.Data)) >= n {
				break
			}
			take := min(w.Len, n-uint32(len(u.Data)))
			b, err := d.Mem.Slice(w.Addr, uint64(take))
			if err != nil {
				return u, true, err
			}
			u.Data = append(u.Data, b...)
		}
		d.chains[id] = chainRec{}
		d.release(rec)
	}
	return u, true, nil
}

// Read returns a copy of n bytes of guest memory at gpa.
func (d *Driver) Read(gpa uint64, n int) ([]byte, error) {
	p := make([]byte, n)
	return p, d.Mem.ReadAt(p, gpa)
}
