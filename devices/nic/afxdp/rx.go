package afxdp

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/nic/afxdp/xsk"
	"github.com/govmm/govmm/internal/osthread"
	"github.com/govmm/govmm/zerocopy"
)

// PostRx implements nic.Model: a buffer the kernel may write a frame into
// directly goes on the fill ring as is; any other waits on the copy lane,
// and one of govmm's bounce chunks goes on the fill ring for it.
func (m *Model) PostRx(bufs []nic.Buf) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running || m.sock == nil {
		return 0
	}
	free := m.sock.FillFree()
	m.fillAddr = m.fillAddr[:0]
	n := 0
	for _, b := range bufs {
		if len(m.fillAddr) == free {
			break
		}
		m.seq++
		e := entry{buf: b, seq: m.seq, bounce: -1}
		if fill, why := m.decide(b); why == zerocopy.XDPZeroCopy {
			m.held[fill] = e
			m.fillAddr = append(m.fillAddr, fill)
		} else {
			m.Stats.RxCopyReasons[why].Add(1)
			m.copyQ = append(m.copyQ, e)
			if len(m.rxFree) > 0 {
				m.fillAddr = append(m.fillAddr, m.lendBounce())
			}
		}
		n++
	}
	if len(m.fillAddr) > 0 {
		m.sock.Fill(m.fillAddr)
	}
	return n
}

// decide applies zerocopy.DecideXDP to a buffer; m.mu is held.
func (m *Model) decide(b nic.Buf) (uint64, zerocopy.XDPReason) {
	if len(b.Segs) == 0 || len(b.GPAs) != len(b.Segs) {
		return 0, zerocopy.XDPSegmented
	}
	off, err := m.cfg.Mem.SpanOffset(b.GPAs[0], uint64(len(b.Segs[0])))
	if err != nil {
		return 0, zerocopy.XDPPastUMEM
	}
	return zerocopy.DecideXDP(m.rules, m.layout, off, len(b.Segs[0]), len(b.Segs))
}

// lendBounce takes a free rx bounce chunk (there must be one), records it
// as held and returns its fill address; m.mu is held.
func (m *Model) lendBounce() uint64 {
	c := m.rxFree[len(m.rxFree)-1]
	m.rxFree = m.rxFree[:len(m.rxFree)-1]
	fill := m.bounceFill(c)
	m.held[fill] = entry{bounce: c}
	return fill
}

// bounceFill is the fill address of rx bounce chunk c (in the scratch
// after guest RAM).
func (m *Model) bounceFill(c int) uint64 { return m.scratch + uint64(c)*chunkSize }

// dataOff is where the kernel writes a frame for fill address fill.
func (m *Model) dataOff(fill uint64) uint64 {
	return fill + uint64(m.rules.Headroom) + zerocopy.XDPPacketHeadroom
}

// rxLoop waits for frames (and transmit completions) until stopped.
func (m *Model) rxLoop(sock *xsk.Socket, stop int) {
	defer m.wg.Done()
	defer osthread.Own("xdp-rx")()
	var w osthread.Waiter
	fds := []unix.PollFd{{Fd: int32(sock.FD()), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		m.mu.Lock()
		starved := len(m.held) == 0
		m.mu.Unlock()
		if starved {
			m.sinkMu.Lock()
			m.sink.RxStarved()
			m.sinkMu.Unlock()
		}
		// Completions of a zero-copy transmit arrive later, with no event
		// of their own: while any are due, look every millisecond.
		timeout := time.Duration(-1)
		m.txMu.Lock()
		if len(m.inflight) > 0 {
			timeout = time.Millisecond
		}
		m.txMu.Unlock()
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := w.Wait(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			m.log.Error("afxdp: poll", "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		m.reap(sock)
		m.receive(sock)
	}
}

// receive takes every frame on the rx ring, in batches of nic.RxBudget,
// and reports them.
func (m *Model) receive(sock *xsk.Socket) {
	if sock == nil {
		return
	}
	var descs [nic.RxBudget]xsk.Desc
	var batch nic.RxBatch
	for {
		n := sock.Receive(descs[:])
		if n == 0 {
			return
		}
		batch.Reset()
		m.mu.Lock()
		for _, d := range descs[:n] {
			m.land(d, &batch)
		}
		m.refillBounce()
		m.mu.Unlock()
		if batch.Len() > 0 {
			m.sinkMu.Lock()
			m.sink.RxFrames(&batch)
			m.sinkMu.Unlock()
		}
		_ = sock.WakeRx()
	}
}

// land accounts for one received frame; m.mu is held.
func (m *Model) land(d xsk.Desc, batch *nic.RxBatch) {
	lead := uint64(m.rules.Headroom) + zerocopy.XDPPacketHeadroom
	if d.Addr < lead {
		m.Stats.RxDropped.Add(1)
		return
	}
	fill := d.Addr - lead
	e, ok := m.held[fill]
	if !ok || uint64(d.Len) > uint64(m.rules.FrameSize()) {
		// Not a chunk we lent (the kernel moved the frame within it):
		// nothing to complete.
		m.Stats.RxDropped.Add(1)
		return
	}
	delete(m.held, fill)
	m.Stats.RxFrames.Add(1)
	if e.bounce < 0 {
		// The frame is already in place: only the header is written.
		clear(e.buf.Segs[0][:m.hdrLen])
		batch.Add(nic.Used{ID: e.buf.ID, Written: uint32(m.hdrLen) + d.Len})
		m.Stats.RxZeroCopyFrames.Add(1)
		return
	}
	m.rxFree = append(m.rxFree, e.bounce)
	frame := m.span[d.Addr : d.Addr+uint64(d.Len)]
	if !m.copyOut(frame, batch) {
		m.Stats.RxDropped.Add(1)
		return
	}
	m.Stats.RxCopiedFrames.Add(1)
	m.Stats.RxCopiedBytes.Add(uint64(len(frame)))
}

// copyOut copies a frame that landed in a bounce chunk into copy-lane
// buffers: one, or as many as it needs when buffers are mergeable. m.mu
// is held.
func (m *Model) copyOut(frame []byte, batch *nic.RxBatch) bool {
	need := m.hdrLen + len(frame)
	have, k := 0, 0
	for k < len(m.copyQ) && have < need {
		have += m.copyQ[k].buf.Len()
		k++
		if !m.layout.Mergeable {
			break
		}
	}
	if have < need {
		return false // the frame is dropped; the buffers stay
	}
	m.cpUsed = m.cpUsed[:0]
	hdr := m.hdrLen // header bytes still to write (zeros), then the frame
	for _, e := range m.copyQ[:k] {
		w := 0
		for _, s := range e.buf.Segs {
			z := min(hdr, len(s))
			clear(s[:z])
			hdr -= z
			c := copy(s[z:], frame)
			frame = frame[c:]
			w += z + c
		}
		m.cpUsed = append(m.cpUsed, nic.Used{ID: e.buf.ID, Written: uint32(w)})
	}
	used := m.cpUsed
	batch.Add(used...)
	m.copyQ = append(m.copyQ[:0], m.copyQ[k:]...)
	return true
}

// refillBounce puts free bounce chunks on the fill ring for copy-lane
// buffers that have none; m.mu is held.
func (m *Model) refillBounce() {
	if m.sock == nil {
		return
	}
	inRing := rxBounceChunks - len(m.rxFree)
	m.fillAddr = m.fillAddr[:0]
	for inRing < len(m.copyQ) && len(m.rxFree) > 0 && len(m.fillAddr) < m.sock.FillFree() {
		m.fillAddr = append(m.fillAddr, m.lendBounce())
		inRing++
	}
	if len(m.fillAddr) > 0 {
		m.sock.Fill(m.fillAddr)
	}
}
