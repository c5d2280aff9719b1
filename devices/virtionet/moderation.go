package virtionet

import "time"

// Moderation is how the device trades exits for latency under load. In a
// VM every kick is an exit and every interrupt one or two (the injection,
// the EOI), so a device that takes a kick per transmit batch and raises
// an interrupt per received frame makes the guest pay per frame, not per
// byte. Both knobs only act while traffic keeps coming: the first frame
// after a quiet spell is sent at once and its interrupt raised at once.
type Moderation struct {
	// TxPoll is the longest the transmit worker keeps the driver's kicks
	// off after the last frame it found, looking at the avail ring at
	// growing intervals (50 µs, 100 µs, then every 250 µs — vhost-net's
	// busyloop, without spinning) so that a guest sending steadily is
	// served without a kick per batch. The window within that bound
	// follows the gaps between the guest's batches (txPoller), so an idle
	// guest costs a few looks after its last frame and nothing after
	// that. Zero: one look after txLinger, then kicks on.
	TxPoll time.Duration
	// RxCoalesce is the least time between two receive interrupts (the
	// 82599's EITR interval): an interrupt due sooner is deferred to that
	// point and covers every frame published meanwhile, and dropped if the
	// driver has reaped them by then. Zero: an interrupt per published
	// batch the driver asks for.
	RxCoalesce time.Duration
	// TxLinger is how long the transmit worker waits, kicks off, after
	// draining the ring before it looks again and sends the completion
	// interrupt it deferred (txLinger when zero; NoTxLinger: no wait, the
	// interrupt goes out with the completions, as QEMU's transmit does).
	TxLinger time.Duration
}

// NoTxLinger turns the transmit linger off (Moderation.TxLinger).
const NoTxLinger = time.Duration(-1)

// linger is the effective TxLinger.
func (m Moderation) linger() time.Duration {
	switch {
	case m.TxLinger == 0:
		return txLinger
	case m.TxLinger < 0:
		return 0
	}
	return m.TxLinger
}

// DefaultModeration is what govmm run uses unless told otherwise: one
// look after txLinger, no polling window, so no timer wake-ups beyond
// that look. Measured after the device threads stopped waking the Go
// runtime's monitor (internal/osthread): make experiment, two rounds,
// iperf3 Mbit/s host→guest / guest→host: tx-poll=0 411, 394 / 299, 243;
// 2ms 324, 346 / 177, 206; but one make bench median the same day had
// 2ms ahead guest→host (283 vs 197) and behind on 64-byte UDP: not
// settled beyond the nested test host's noise (README, Performance).
var DefaultModeration = Moderation{TxPoll: 0, RxCoalesce: 0}

// MaxModeration bounds both knobs: beyond it, a TCP flow's round trip is
// the device's delay.
const MaxModeration = 10 * time.Millisecond

// coalescer is one queue's interrupt moderation (EITR-like): it lets an
// interrupt through when the previous one is at least gap old and
// otherwise owes it, for the used entries from since on, until the gap
// has passed. Owned by the caller's lock.
type coalescer struct {
	gap   time.Duration
	last  time.Time // when the last interrupt went out
	owed  bool
	since uint16
	timer *time.Timer
}

// allow reports whether an interrupt due now for the entries from since
// on may go out at once. If not, it is owed and the timer armed for the
// end of the gap (fire is called then, from the timer's goroutine).
func (c *coalescer) allow(now time.Time, since uint16, fire func()) bool {
	if c.gap <= 0 {
		return true
	}
	if c.owed {
		return false // the owed one covers these too
	}
	wait := c.gap - now.Sub(c.last)
	if wait <= 0 {
		c.last = now
		return true
	}
	c.owed, c.since = true, since
	if c.timer == nil {
		c.timer = time.AfterFunc(wait, fire)
	} else {
		c.timer.Reset(wait)
	}
	return false
}

// take returns the owed interrupt's first entry and clears it; ok is false
// when nothing is owed. The caller reports a sent interrupt with sent.
func (c *coalescer) take() (since uint16, ok bool) {
	if !c.owed {
		return 0, false
	}
	c.owed = false
	return c.since, true
}

// sent records that an interrupt went out at now.
func (c *coalescer) sent(now time.Time) { c.last = now }

func (c *coalescer) stop() {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.owed = false
}

// txPoller is the transmit worker's adaptive polling window
// (Moderation.TxPoll): how long after the last frame it keeps kicks off.
// The window follows the gaps between the guest's transmit batches: a gap
// up to the maximum widens it to twice that gap (so the next one is
// caught by a look, not a kick); a window that runs out with nothing
// found halves it, so an idle guest is soon back to kicks alone.
type txPoller struct {
	max      time.Duration
	linger   time.Duration // the first look's interval (0: none)
	window   time.Duration // 0 or minWindow..max
	lastSeen time.Time     // when a look last found frames
	step     time.Duration // the next look's interval
}

// txLookMax bounds the interval between two looks: a frame the guest adds
// while kicks are off waits at most this long.
const txLookMax = 250 * time.Microsecond

// txMinWindow is the smallest window (a few looks).
const txMinWindow = 4 * txLinger

func newTxPoller(max, linger time.Duration) txPoller {
	return txPoller{max: max, linger: linger, window: min(max, txMinWindow), step: linger}
}

// sent records a look that found frames and returns when to look again.
func (p *txPoller) sent(now time.Time) time.Duration {
	if p.max > 0 && !p.lastSeen.IsZero() {
		if gap := now.Sub(p.lastSeen); gap <= p.max {
			p.window = min(p.max, max(p.window, 2*gap))
		}
	}
	p.lastSeen, p.step = now, p.linger
	if p.max <= 0 {
		return p.linger
	}
	return max(p.step, txLinger)
}

// idle records a look that found nothing. It returns when to look again,
// or 0 when the window has passed and kicks must go back on.
func (p *txPoller) idle(now time.Time) time.Duration {
	left := p.window - now.Sub(p.lastSeen)
	if p.max <= 0 || left <= 0 {
		if p.max > 0 {
			p.window = max(p.window/2, min(p.max, txMinWindow))
		}
		p.step = p.linger
		return 0
	}
	p.step = min(max(2*p.step, txLinger), txLookMax, max(left, txLinger))
	return p.step
}
