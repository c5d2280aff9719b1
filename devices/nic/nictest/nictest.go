// Package nictest checks that a NIC model keeps the nic.Model contract, in
// the spirit of testing/fstest and golang.org/x/net/nettest: a device
// author supplies a constructor for the model and the far end of its wire,
// and Run drives the model as virtio-net and a guest driver would, frames
// going both ways:
//
//   - a received frame lands whole in lent buffers, never truncated, split
//     only across mergeable buffers, header first, buffers in posting order;
//   - every lent buffer comes back exactly once, in a Sink.RxFrames call or
//     from Stop (in posting order), and nothing is reported after Stop;
//   - every transmitted frame is reported in Sink.TxDone exactly once, the
//     malformed ones too;
//   - the offloads the model advertises are honoured: a partial checksum
//     leaves the model complete (or still marked partial for the far end
//     to finish), a GSO frame leaves it as valid segments of at most the
//     MSS (or as one GSO frame the far end segments), payload intact;
//   - with no buffers lent the model neither blocks its wire for good nor
//     loses the next frames once buffers arrive;
//   - PostRx, Transmit and the wire run concurrently (run the kit under
//     -race), a sink may lend buffers from inside its callbacks, and Stop
//     while frames keep arriving, then Start again, works.
//
// Frames are IPv4 between documentation addresses (RFC 5737) with a magic
// in their payload; frames on the wire without it are ignored.
package nictest

import (
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/vmm/guestmem"
)

// Wire is the far end of a model's link: where the kit puts frames for the
// model to receive and finds the frames it transmitted.
type Wire interface {
	// Send puts one complete Ethernet frame (checksums filled in) on the
	// link toward the model. It must not block for long when the model
	// has no buffers: a wire may drop, as a real one does.
	Send(frame []byte) error
	// Recv returns the next frame the model put on the link, waiting at
	// most timeout. hdr is the virtio_net_hdr that came with it on the
	// link, or nil if the link carries none (the frame is then complete:
	// checksums filled in, no GSO).
	Recv(timeout time.Duration) (hdr, frame []byte, err error)
}

// Link is a model under test and its wire.
type Link struct {
	Model nic.Model
	Wire  Wire
	// MAC is the address the model accepts frames for; zero means any
	// (the kit then sends to the broadcast address).
	MAC [6]byte
	// Close releases the model and the wire; the kit has stopped the
	// model already. Optional.
	Close func()
}

// Harness is what a device author gives the kit.
type Harness struct {
	// New returns a fresh, not yet started model and its wire. mem is the
	// guest memory every buffer the kit lends lies in; a model that DMAs
	// by guest-physical address (Buf.GPAs) needs it, others ignore it.
	New func(t *testing.T, mem *guestmem.Memory) Link
	// Scratch, if not 0, gives mem that many bytes of host-only memory
	// after guest RAM in the same mapping (guestmem.NewWithScratch), for a
	// model that registers the whole range with the kernel and keeps its
	// own bounce buffers there (an AF_XDP UMEM).
	Scratch uint64
}

// Timeout is how long the kit waits for a frame or a completion.
var Timeout = 5 * time.Second

// Run runs the whole contract against the model, each part in a subtest
// with a fresh model.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *rig)
	}{
		{"ReceiveWhole", testReceiveWhole},
		{"Transmit", testTransmit},
		{"TransmitMalformed", testTransmitMalformed},
		{"NoBuffers", testNoBuffers},
		{"Concurrent", testConcurrent},
		{"StopWhileBusyThenRestart", testStopWhileBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, h)
			tc.fn(t, r)
		})
	}
}

// rig is one model under test with its guest memory.
type rig struct {
	t    *testing.T
	mem  *guestmem.Memory
	link Link
	caps nic.Capabilities
}

func newRig(t *testing.T, h Harness) *rig {
	mem, err := guestmem.NewWithScratch([]guestmem.Layout{{GPA: memBase, Size: memSize}}, h.Scratch)
	if err != nil {
		t.Fatalf("nictest: guest memory: %v", err)
	}
	r := &rig{t: t, mem: mem}
	r.link = h.New(t, mem)
	if r.link.Model == nil || r.link.Wire == nil {
		t.Fatal("nictest: Harness.New returned no model or no wire")
	}
	r.caps = r.link.Model.Capabilities()
	t.Cleanup(func() {
		if r.link.Close != nil {
			r.link.Close()
		}
		mem.Close()
	})
	return r
}

// shapes are the buffer layouts Linux's virtio_net uses, plus a harder one.
func (r *rig) shapes() []shape {
	c := r.caps
	mrg := nic.Config{HdrLen: 12, Mergeable: true,
		GuestCsum: c.Csum, GuestTSO4: c.Csum && c.TSO, GuestTSO6: c.Csum && c.TSO,
		HostCsum: c.TakesCsum(), HostTSO4: c.TakesTSO(), HostTSO6: c.TakesTSO()}
	small := nic.Config{HdrLen: 12, HostCsum: c.TakesCsum(), HostTSO4: c.TakesTSO(), HostTSO6: c.TakesTSO()}
	frag := nic.Config{HdrLen: 12, Mergeable: true, HostCsum: c.TakesCsum()}
	return []shape{
		// Mergeable 2 KiB buffers (Linux's default); enough for a 64 KiB GSO frame.
		{name: "mergeable", cfg: mrg, size: 2048, segs: 1, post: 64},
		// One buffer per frame: VERSION_1 without MRG_RXBUF or guest GSO.
		{name: "small", cfg: small, size: 12 + 1518 + 18, segs: 1, post: 32},
		// Mergeable buffers of two non-contiguous 256-byte pieces: a frame
		// spans several buffers and segments.
		{name: "fragmented", cfg: frag, size: 512, segs: 2, post: 96},
	}
}

// start starts a driver for the model in shape s.
func (r *rig) start(s shape) *driver {
	d := newDriver(r.t, r.mem, r.link.Model, s)
	if err := r.link.Model.Start(s.cfg, d); err != nil {
		r.t.Fatalf("Start(%+v): %v", s.cfg, err)
	}
	return d
}

// startRefilling starts a driver that lends its buffers up front and
// lends each one back as soon as the model reports it, as virtio-net does.
func (r *rig) startRefilling(s shape) *driver {
	d := r.start(s)
	d.refill.Store(true)
	d.post(s.post)
	return d
}

func (r *rig) dst() [6]byte {
	if r.link.MAC == ([6]byte{}) {
		return [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	return r.link.MAC
}

// send puts kit frames with these sequence numbers and sizes on the wire;
// it returns them by sequence number.
func (r *rig) send(first uint32, sizes ...int) map[uint32][]byte {
	out := map[uint32][]byte{}
	for i, n := range sizes {
		proto := uint8(protoUDP)
		if i%2 == 1 {
			proto = protoTCP
		}
		f, _ := frameSpec{proto: proto, size: n, seq: first + uint32(i), dst: r.dst()}.build()
		if err := r.link.Wire.Send(f); err != nil {
			r.t.Fatalf("wire: Send: %v", err)
		}
		out[first+uint32(i)] = f
	}
	return out
}

// checkRx compares received frames with what was sent.
func (r *rig) checkRx(d *driver, sent map[uint32][]byte, all bool) {
	r.t.Helper()
	got := d.received()
	for seq, want := range sent {
		f, ok := got[seq]
		if !ok {
			if all {
				r.t.Errorf("frame %d (%d bytes) never received", seq, len(want))
			}
			continue
		}
		data, err := complete(parseHdr(f.hdr), f.data)
		switch {
		case err != nil:
			r.t.Errorf("frame %d: %v", seq, err)
		case len(data) != len(want):
			r.t.Errorf("frame %d: %d bytes received, %d sent (truncated or padded)", seq, len(data), len(want))
		case string(data) != string(want):
			r.t.Errorf("frame %d: received bytes differ from those sent", seq)
		}
	}
}

func testReceiveWhole(t *testing.T, r *rig) {
	sizes := []int{60, 61, 128, 590, 1000, 1513, 1514, 64, 1514, 300}
	for i, s := range r.shapes() {
		d := r.start(s)
		d.post(s.post)
		first := uint32(1000 * (i + 1))
		sent := r.send(first, sizes...)
		if !d.waitRx(Timeout, func() bool { return len(d.received()) == len(sent) }) {
			t.Errorf("%s: %d of %d frames received within %v", s.name, len(d.received()), len(sent), Timeout)
		}
		r.checkRx(d, sent, true)
		d.stop()
		d.check()
		if t.Failed() {
			t.Fatalf("with %s buffers", s.name)
		}
	}
}

// sentOnWire collects the kit's frames from the wire until want says it
// has them all or the timeout passes, with their checksums completed as
// the far end would.
type wireFrame struct {
	hdr  vnetHdr
	data []byte
}

// Only frames whose sequence numbers are in check are checked.
func (r *rig) collect(check map[uint32]bool, want func(map[uint32][]wireFrame) bool) map[uint32][]wireFrame {
	got := map[uint32][]wireFrame{}
	deadline := time.Now().Add(Timeout)
	for !want(got) && time.Now().Before(deadline) {
		hdr, f, err := r.link.Wire.Recv(time.Until(deadline))
		if err != nil {
			break
		}
		k, ok := identify(f)
		if !ok {
			// A later segment of a GSO frame the model segmented itself.
			if rest, seg := identifySegment(f); seg {
				for c := range check {
					if c%1000 == rest {
						k, ok = kitFrame{seq: c, proto: protoTCP, data: f}, true
					}
				}
			}
		}
		if !ok || !check[k.seq] {
			continue
		}
		h := parseHdr(hdr)
		data, err := complete(h, f)
		if err != nil {
			r.t.Errorf("frame %d on the wire: %v", k.seq, err)
			continue
		}
		if h.gsoType == gsoNone {
			if err := checkSums(data); err != nil {
				r.t.Errorf("frame %d on the wire: %v", k.seq, err)
			}
		}
		got[k.seq] = append(got[k.seq], wireFrame{h, data})
	}
	return got
}

func testTransmit(t *testing.T, r *rig) {
	s := r.shapes()[0]
	d := r.start(s)
	type txCase struct {
		spec frameSpec
		name string
	}
	cases := []txCase{
		{frameSpec{proto: protoUDP, size: 60}, "short UDP"},
		{frameSpec{proto: protoTCP, size: 1514}, "full-size TCP"},
		{frameSpec{proto: protoUDP, size: 999}, "UDP"},
	}
	if r.caps.TakesCsum() {
		cases = append(cases,
			txCase{frameSpec{proto: protoUDP, size: 700, partial: true}, "UDP, partial checksum"},
			txCase{frameSpec{proto: protoTCP, size: 1514, partial: true}, "TCP, partial checksum"})
	}
	if r.caps.TakesTSO() {
		cases = append(cases,
			txCase{frameSpec{proto: protoTCP, size: ethLen + ipv4Len + tcpLen + 3*tsoMSS + 300, gso: true}, "TCPv4 GSO, 4 segments"},
			txCase{frameSpec{proto: protoTCP, size: ethLen + ipv4Len + tcpLen + 40*tsoMSS, gso: true}, "TCPv4 GSO, 40 segments"})
	}
	var frames [][2][]byte
	want := map[uint32]txCase{}
	orig := map[uint32][]byte{}
	for i, c := range cases {
		c.spec.seq, c.spec.dst = uint32(100+i), peerMAC
		f, h := c.spec.build()
		hdr := make([]byte, s.cfg.HdrLen)
		h.put(hdr)
		frames = append(frames, [2][]byte{hdr, f})
		want[c.spec.seq] = c
		// The frame as the far end must see it: checksums complete.
		orig[c.spec.seq], _ = complete(h, f)
	}
	d.transmit(frames)
	if err := d.waitTx(Timeout); err != nil {
		t.Error(err)
	}
	check := map[uint32]bool{}
	for seq := range want {
		check[seq] = true
	}
	got := r.collect(check, func(got map[uint32][]wireFrame) bool {
		for seq, c := range want {
			if payloadLen(got[seq]) < c.spec.size-ethLen-ipv4Len-tcpOrUDP(c.spec.proto) {
				return false
			}
		}
		return true
	})
	for seq, c := range want {
		checkTx(t, c.name, orig[seq], got[seq], c.spec.gso)
	}
	d.stop()
	d.check()
}

func tcpOrUDP(p uint8) int {
	if p == protoTCP {
		return tcpLen
	}
	return udpLen
}

// payloadLen is the L4 payload the wire carried for one kit frame.
func payloadLen(ws []wireFrame) int {
	n := 0
	for _, w := range ws {
		ip := w.data[ethLen:]
		l4 := tcpOrUDP(ip[9])
		if ip[9] == protoTCP {
			l4 = int(ip[ipv4Len+12]>>4) * 4
		}
		n += len(w.data) - ethLen - ipv4Len - l4
	}
	return n
}

// checkTx checks what the wire carried for one transmitted frame: the
// frame itself, or (GSO) segments of at most the MSS whose payloads join
// up to the original's, or one GSO frame for the far end to segment.
func checkTx(t *testing.T, name string, sent []byte, got []wireFrame, gso bool) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: never on the wire", name)
		return
	}
	if !gso {
		if len(got) != 1 || string(got[0].data) != string(sent) {
			t.Errorf("%s: the wire carried %d frame(s), not the frame sent (first: %d bytes, sent %d)", name, len(got), len(got[0].data), len(sent))
		}
		return
	}
	seq0, want := tcpPayload(sent)
	if len(got) == 1 && got[0].hdr.gsoType != gsoNone {
		_, p := tcpPayload(got[0].data)
		if string(p) != string(want) || got[0].hdr.gsoSize == 0 || got[0].hdr.gsoSize > tsoMSS {
			t.Errorf("%s: the GSO frame on the wire differs (payload %d of %d bytes, gso_size %d)", name, len(p), len(want), got[0].hdr.gsoSize)
		}
		return
	}
	var joined []byte
	for i, w := range got {
		seq, p := tcpPayload(w.data)
		if len(p) > tsoMSS || len(p) == 0 {
			t.Errorf("%s: segment %d carries %d bytes (MSS %d)", name, i, len(p), tsoMSS)
		}
		if seq != seq0+uint32(len(joined)) {
			t.Errorf("%s: segment %d has sequence number %d, want %d", name, i, seq, seq0+uint32(len(joined)))
		}
		joined = append(joined, p...)
	}
	if string(joined) != string(want) {
		t.Errorf("%s: the segments carry %d payload bytes that differ from the %d sent", name, len(joined), len(want))
	}
}

func testTransmitMalformed(t *testing.T, r *rig) {
	s := r.shapes()[0]
	d := r.start(s)
	hdr := func(h vnetHdr) []byte { b := make([]byte, s.cfg.HdrLen); h.put(b); return b }
	good, _ := frameSpec{proto: protoUDP, size: 200, seq: 7, dst: peerMAC}.build()
	udp, _ := frameSpec{proto: protoUDP, size: 200, seq: 8, dst: peerMAC}.build()
	frames := [][2][]byte{
		{hdr(vnetHdr{}), nil},      // a header and no frame
		{hdr(vnetHdr{}), good[:9]}, // shorter than an Ethernet header
		{hdr(vnetHdr{flags: flagNeedsCsum, csumStart: 180, csumOffset: 60}), good},                                            // checksum beyond the frame
		{hdr(vnetHdr{flags: flagNeedsCsum, gsoType: gsoTCPv4, gsoSize: 100, hdrLen: 54, csumStart: 34, csumOffset: 16}), udp}, // GSO TCP on a UDP frame
		{hdr(vnetHdr{gsoType: gsoTCPv4, gsoSize: 0, hdrLen: 54, csumStart: 34, csumOffset: 16}), udp},                         // GSO with MSS 0
		{hdr(vnetHdr{gsoType: 0x55, gsoSize: 100}), udp},                                                                      // unknown GSO type
	}
	d.transmit(frames)
	if err := d.waitTx(Timeout); err != nil {
		t.Errorf("malformed frames: %v", err)
	}
	// The model still works.
	ok, _ := frameSpec{proto: protoUDP, size: 100, seq: 9, dst: peerMAC}.build()
	d.transmit([][2][]byte{{hdr(vnetHdr{}), ok}})
	if err := d.waitTx(Timeout); err != nil {
		t.Error(err)
	}
	got := r.collect(map[uint32]bool{9: true}, func(got map[uint32][]wireFrame) bool { return len(got[9]) > 0 })
	checkTx(t, "a good frame after malformed ones", ok, got[9], false)
	d.stop()
	d.check()
}

func testNoBuffers(t *testing.T, r *rig) {
	s := r.shapes()[0]
	d := r.start(s)
	early := r.send(1, 100, 200, 300, 400)
	time.Sleep(100 * time.Millisecond)
	if n := len(d.received()); n > 0 {
		t.Errorf("%d frames reported with no buffers lent", n)
	}
	// Transmit is not held up by a starved receive side.
	f, _ := frameSpec{proto: protoUDP, size: 100, seq: 50, dst: peerMAC}.build()
	d.transmit([][2][]byte{{make([]byte, s.cfg.HdrLen), f}})
	if err := d.waitTx(Timeout); err != nil {
		t.Errorf("with no receive buffers: %v", err)
	}
	d.post(s.post)
	later := r.send(10, 500, 600)
	if !d.waitRx(Timeout, func() bool {
		got := d.received()
		return got[10].data != nil && got[11].data != nil
	}) {
		t.Errorf("frames sent after buffers were lent never arrived (got %d frames)", len(d.received()))
	}
	r.checkRx(d, later, true)
	r.checkRx(d, early, false) // dropped or delivered, but whole
	d.stop()
	d.check()
}

func testConcurrent(t *testing.T, r *rig) {
	s := r.shapes()[0]
	d := r.startRefilling(s)
	const n = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(3)
	go func() { // the wire
		defer wg.Done()
		for i := range n {
			f, _ := frameSpec{proto: protoUDP, size: 60 + (i*97)%1455, seq: uint32(10000 + i), dst: r.dst()}.build()
			if err := r.link.Wire.Send(f); err != nil {
				t.Errorf("wire: Send: %v", err)
				return
			}
		}
	}()
	go func() { // the transmit worker
		defer wg.Done()
		for i := 0; i < n/3; i++ {
			var frames [][2][]byte
			for k := range 3 {
				f, _ := frameSpec{proto: protoTCP, size: 100 + (i*31+k)%1400, seq: uint32(20000 + 3*i + k), dst: peerMAC}.build()
				frames = append(frames, [2][]byte{make([]byte, s.cfg.HdrLen), f})
			}
			d.transmit(frames)
			if err := d.waitTx(Timeout); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // the driver lending buffers outside the sink too
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				d.post(3)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	drained := make(chan struct{})
	go func() { // the far end reading
		defer close(drained)
		for {
			if _, _, err := r.link.Wire.Recv(50 * time.Millisecond); err != nil {
				select {
				case <-stop:
					return
				default:
				}
			}
		}
	}()
	d.waitRx(Timeout, func() bool { return len(d.received()) >= n })
	close(stop)
	wg.Wait()
	<-drained
	if len(d.received()) == 0 {
		t.Error("no frame received while PostRx, Transmit and the wire ran concurrently")
	}
	for seq, f := range d.received() {
		want, _ := frameSpec{proto: protoUDP, size: 60 + (int(seq-10000)*97)%1455, seq: seq, dst: r.dst()}.build()
		if data, err := complete(parseHdr(f.hdr), f.data); err != nil || string(data) != string(want) {
			t.Errorf("frame %d received damaged under concurrency", seq)
		}
	}
	d.stop()
	d.check()
}

func testStopWhileBusy(t *testing.T, r *rig) {
	s := r.shapes()[0]
	d := r.startRefilling(s)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() { // keeps the wire busy through Stop
		defer close(sent)
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f, _ := frameSpec{proto: protoUDP, size: 1000, seq: uint32(30000 + i), dst: r.dst()}.build()
			if r.link.Wire.Send(f) != nil {
				return
			}
			if i%16 == 15 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	d.waitRx(Timeout, func() bool { return len(d.received()) >= 10 })
	d.refill.Store(false)
	stopped := make(chan struct{})
	go func() { d.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(Timeout):
		close(stop)
		t.Fatalf("Stop did not return within %v while frames kept arriving", Timeout)
	}
	time.Sleep(50 * time.Millisecond) // a late RxFrames would show now
	close(stop)
	<-sent
	// A stopped model takes nothing: a buffer it took now would never come
	// back (its Stop has already handed back what it held).
	if n := d.post(s.post); n != 0 {
		d.mu.Lock()
		d.fault("PostRx after Stop took %d buffers", n)
		clear(d.lent)
		d.mu.Unlock()
	}
	d.check()
	if t.Failed() {
		return
	}
	// Start again, as virtio-net does after the driver resets the device.
	d2 := r.startRefilling(s)
	deadline := time.Now().Add(Timeout)
	for seq := uint32(60000); time.Now().Before(deadline); seq++ {
		// Frames queued before the restart may come first; resend until one
		// sent after it arrives.
		r.send(seq, 400)
		if d2.waitRx(200*time.Millisecond, func() bool {
			for s := range d2.received() {
				if s >= 60000 {
					return true
				}
			}
			return false
		}) {
			break
		}
	}
	got := false
	for seq := range d2.received() {
		got = got || seq >= 60000
	}
	if !got {
		t.Errorf("after Stop and Start again, no frame arrives")
	}
	d2.stop()
	d2.check()
}
