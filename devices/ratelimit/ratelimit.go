// Package ratelimit is a token-bucket rate limiter for device I/O, with
// Firecracker's semantics: a bucket of Size tokens refills completely every
// RefillTime (Size/RefillTime tokens per second, added continuously), and
// may start with a one-time burst of extra tokens that are never refilled.
// A Limiter pairs a bucket for bytes with one for operations (frames);
// either may be absent (unlimited).
//
// Devices charge what they moved after the fact and may run into debt (a
// frame larger than what is left still goes); they then stop until the
// debt is repaid. Charging afterwards suits a NIC whose model writes frames
// straight into guest memory: the device cannot shrink a frame that landed,
// but it can stop lending buffers until the bucket has refilled.
package ratelimit

import (
	"fmt"
	"sync"
	"time"
)

// Bucket is one token bucket. The zero value is unlimited.
type Bucket struct {
	// Size is how many tokens the bucket holds; 0 means unlimited.
	Size uint64
	// RefillTime is how long an empty bucket takes to fill (default 1s).
	RefillTime time.Duration
	// OneTimeBurst is extra tokens available once, at the start.
	OneTimeBurst uint64

	tokens float64 // may be negative: debt
	burst  float64
	last   time.Time
	primed bool
}

// Limited reports whether the bucket limits anything.
func (b *Bucket) Limited() bool { return b != nil && b.Size > 0 }

func (b *Bucket) rate() float64 {
	r := b.RefillTime
	if r <= 0 {
		r = time.Second
	}
	return float64(b.Size) / r.Seconds()
}

// refill adds the tokens earned since the last call, up to Size.
func (b *Bucket) refill(now time.Time) {
	if !b.primed {
		b.tokens, b.burst, b.last, b.primed = float64(b.Size), float64(b.OneTimeBurst), now, true
		return
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(float64(b.Size), b.tokens+dt.Seconds()*b.rate())
		b.last = now
	}
}

// Charge takes n tokens, the one-time burst first, and may leave the
// bucket in debt.
func (b *Bucket) Charge(n uint64, now time.Time) {
	if !b.Limited() {
		return
	}
	b.refill(now)
	f := float64(n)
	if b.burst > 0 {
		take := min(b.burst, f)
		b.burst -= take
		f -= take
	}
	b.tokens -= f
}

// Wait returns how long until the bucket holds a token again (0: now).
func (b *Bucket) Wait(now time.Time) time.Duration {
	if !b.Limited() {
		return 0
	}
	b.refill(now)
	if b.tokens > 0 || b.burst > 0 {
		return 0
	}
	// Until the debt is repaid and one token more has come in.
	return time.Duration((1 - b.tokens) / b.rate() * float64(time.Second))
}

// Limiter limits one direction of a device by bytes and by operations.
// Charge and Wait are safe from several goroutines (the queue pairs of a
// multi-queue device share their NIC's limit).
type Limiter struct {
	Bytes, Ops Bucket
	mu         sync.Mutex
}

// Limited reports whether l limits anything (a nil Limiter does not).
func (l *Limiter) Limited() bool { return l != nil && (l.Bytes.Limited() || l.Ops.Limited()) }

// Charge records ops operations moving bytes bytes.
func (l *Limiter) Charge(bytes, ops uint64, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Bytes.Charge(bytes, now)
	l.Ops.Charge(ops, now)
}

// Wait returns how long until both buckets allow another operation.
func (l *Limiter) Wait(now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.Bytes.Wait(now), l.Ops.Wait(now))
}

func (l *Limiter) String() string {
	if !l.Limited() {
		return "unlimited"
	}
	return fmt.Sprintf("bytes %d/%v (+%d once), ops %d/%v (+%d once)",
		l.Bytes.Size, l.Bytes.RefillTime, l.Bytes.OneTimeBurst, l.Ops.Size, l.Ops.RefillTime, l.Ops.OneTimeBurst)
}
