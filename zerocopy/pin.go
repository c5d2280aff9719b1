package zerocopy

import "sync/atomic"

// PinLimit caps the guest memory one NIC holds for receive: every posted
// buffer is guest RAM the NIC may write at any time, so a guest that posts
// buffers and never receives must not tie up more than this (the DoS
// question put to the 2010 RFC; io_uring zero-copy rx and AF_XDP charge the
// same thing to RLIMIT_MEMLOCK). Buffers over the cap stay in the guest's
// avail ring untouched.
type PinLimit struct {
	Bytes uint64 // guest bytes lent to the NIC
	Descs int    // guest buffers (chains) lent to the NIC
}

// DefaultPinLimit derives the cap from the virtio rx queue size: one
// queue's worth of chains, each up to a page. A Linux guest with mergeable
// buffers (at most a page each) never hits it; without them it posts
// big-packets chains (~72 KiB, one indirect ring entry each), of which it
// holds 14, all on the copy fallback; a hostile guest posting 64 KiB
// chains gets 16.
// For the common 256-entry queue: 256 chains, 1 MiB, i.e. ~0.8 ms of
// 10 Gbit/s line rate, well above any interrupt moderation interval.
func DefaultPinLimit(queueSize int) PinLimit {
	if queueSize <= 0 {
		queueSize = defaultRing
	}
	return PinLimit{Bytes: uint64(queueSize) * pageSize, Descs: queueSize}
}

// pinAccount tracks what is lent to the NIC. Mutations are serialised by
// the model's lock; reads (Stats) are lock-free.
type pinAccount struct {
	limit               PinLimit
	bytes, descs, peak  atomic.Uint64
	refused, refusedBuf atomic.Uint64 // PostRx calls cut short / buffers left in the ring
}

// take charges one buffer of n bytes, or reports that it would exceed the cap.
func (p *pinAccount) take(n uint64) bool {
	b, d := p.bytes.Load(), p.descs.Load()
	if d+1 > uint64(p.limit.Descs) || b+n > p.limit.Bytes || b+n < b {
		return false
	}
	p.descs.Store(d + 1)
	p.bytes.Store(b + n)
	if b+n > p.peak.Load() {
		p.peak.Store(b + n)
	}
	return true
}

// release returns one buffer of n bytes.
func (p *pinAccount) release(n uint64) {
	p.bytes.Add(^(n - 1))
	p.descs.Add(^uint64(0))
}

// reset drops every charge (Stop hands all buffers back).
func (p *pinAccount) reset() {
	p.bytes.Store(0)
	p.descs.Store(0)
}
