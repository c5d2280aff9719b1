package ratelimit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Unix(1000, 0)

func TestUnlimited(t *testing.T) {
	var l *Limiter
	require.False(t, l.Limited())
	l.Charge(1<<40, 1<<40, t0)
	require.Zero(t, l.Wait(t0))
	var b Bucket
	b.Charge(1<<40, t0)
	require.Zero(t, b.Wait(t0))
}

// A bucket starts full, goes into debt for a large charge, and allows
// again once the debt is repaid at Size per RefillTime.
func TestBucketRefillsAtItsRate(t *testing.T) {
	b := Bucket{Size: 1000, RefillTime: 100 * time.Millisecond} // 10,000 tokens/s
	require.Zero(t, b.Wait(t0))
	b.Charge(1500, t0) // 500 in debt
	w := b.Wait(t0)
	require.InDelta(t, float64(50100*time.Microsecond), float64(w), float64(time.Microsecond), "debt of 500 plus one token at 10,000/s")
	require.NotZero(t, b.Wait(t0.Add(50*time.Millisecond)))
	require.Zero(t, b.Wait(t0.Add(51*time.Millisecond)))
	// Idle time never fills it past Size.
	require.Zero(t, b.Wait(t0.Add(time.Hour)))
	b.Charge(1000, t0.Add(time.Hour))
	require.NotZero(t, b.Wait(t0.Add(time.Hour)))
}

// The one-time burst is spent before the bucket and never comes back.
func TestOneTimeBurst(t *testing.T) {
	b := Bucket{Size: 100, RefillTime: time.Second, OneTimeBurst: 1000}
	b.Charge(1000, t0)
	require.Zero(t, b.Wait(t0), "the burst paid for it; the bucket is still full")
	b.Charge(100, t0)
	require.NotZero(t, b.Wait(t0))
	later := t0.Add(10 * time.Second)
	require.Zero(t, b.Wait(later))
	b.Charge(101, later)
	require.NotZero(t, b.Wait(later), "no burst the second time")
}

// Over a long run a sender that charges whenever Wait allows gets the
// rate, whatever its frame size.
func TestLongRunRate(t *testing.T) {
	for _, frame := range []uint64{64, 1514, 65536} {
		l := Limiter{Bytes: Bucket{Size: 1_250_000, RefillTime: 100 * time.Millisecond}} // 12.5 MB/s
		now, sent := t0, uint64(0)
		end := t0.Add(10 * time.Second)
		for now.Before(end) {
			if w := l.Wait(now); w > 0 {
				now = now.Add(w)
				continue
			}
			l.Charge(frame, 1, now)
			sent += frame
		}
		rate := float64(sent) / 10
		require.InEpsilon(t, 12.5e6, rate, 0.02, "frame %d: %.0f B/s", frame, rate)
	}
}

func TestOpsBucket(t *testing.T) {
	l := Limiter{Ops: Bucket{Size: 10, RefillTime: time.Second}}
	for range 10 {
		require.Zero(t, l.Wait(t0))
		l.Charge(1<<20, 1, t0)
	}
	require.InDelta(t, float64(100*time.Millisecond), float64(l.Wait(t0)), float64(time.Millisecond))
	require.Contains(t, l.String(), "ops 10/1s")
}
