package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/govmm/govmm/devices/ratelimit"
	"github.com/govmm/govmm/devices/virtionet"
	"github.com/govmm/govmm/machine"
)

// parseNetSpec parses (tap=NAME | xdp=IFNAME[,queue=N][,mode=auto|zerocopy|copy])[,mac=MAC][,mtu=N][,mrg-rxbuf=on|off][,offloads=on|off][,path=zerocopy|copy][,queues=N][,pin-limit=SIZE]
// [,tx-poll=DURATION][,tx-linger=DURATION][,rx-coalesce=DURATION][,model=virtio|ixgbe]
// [,rx-bytes=RATE][,tx-bytes=RATE][,rx-ops=RATE][,tx-ops=RATE][,rx-burst=N][,tx-burst=N].
func parseNetSpec(spec string) (machine.NetConfig, error) {
	c := machine.NetConfig{Mergeable: true, Path: "zerocopy", Moderation: virtionet.DefaultModeration}
	var burst []pendingBurst // applied once the rates are known, whatever the key order
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return c, fmt.Errorf("--net %q: %q is not key=value", spec, kv)
		}
		switch k {
		case "tap":
			if len(v) >= 16 {
				return c, fmt.Errorf("--net %q: interface name %q is longer than 15 bytes", spec, v)
			}
			c.Tap = v
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return c, fmt.Errorf("--net %q: bad mac %q", spec, v)
			}
			if mac[0]&1 != 0 {
				return c, fmt.Errorf("--net %q: mac %s is a multicast address", spec, v)
			}
			c.MAC = mac
		case "mtu":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n < 68 || n > 65535-14 {
				return c, fmt.Errorf("--net %q: mtu %q must be 68..65521", spec, v)
			}
			c.MTU = uint16(n)
		case "mrg-rxbuf":
			switch v {
			case "on":
				c.Mergeable = true
			case "off":
				c.Mergeable = false
			default:
				return c, fmt.Errorf("--net %q: mrg-rxbuf must be on or off", spec)
			}
		case "offloads":
			switch v {
			case "on":
				c.NoOffloads = false
			case "off":
				c.NoOffloads = true
			default:
				return c, fmt.Errorf("--net %q: offloads must be on or off", spec)
			}
		case "pin-limit":
			n, err := ParseSize(v)
			if err != nil || n < 64<<10 {
				return c, fmt.Errorf("--net %q: pin-limit %q must be a size of at least 64K", spec, v)
			}
			c.PinLimit = n
		case "tx-linger":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > virtionet.MaxModeration {
				return c, fmt.Errorf("--net %q: %s %q must be a duration from 0 to %v (e.g. 50us)", spec, k, v, virtionet.MaxModeration)
			}
			c.Moderation.TxLinger = d
			if d == 0 {
				c.Moderation.TxLinger = virtionet.NoTxLinger
			}
		case "tx-poll", "rx-coalesce":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > virtionet.MaxModeration {
				return c, fmt.Errorf("--net %q: %s %q must be a duration from 0 to %v (e.g. 500us)", spec, k, v, virtionet.MaxModeration)
			}
			if k == "tx-poll" {
				c.Moderation.TxPoll = d
			} else {
				c.Moderation.RxCoalesce = d
			}
		case "rx-bytes", "tx-bytes", "rx-ops", "tx-ops", "rx-burst", "tx-burst":
			n, err := parseRate(v)
			if err != nil {
				return c, fmt.Errorf("--net %q: %s: %w", spec, k, err)
			}
			dir, what, _ := strings.Cut(k, "-")
			l := &c.RxLimit
			if dir == "tx" {
				l = &c.TxLimit
			}
			if *l == nil {
				*l = &ratelimit.Limiter{}
			}
			switch what {
			case "bytes":
				(*l).Bytes = rateBucket(n)
			case "ops":
				(*l).Ops = rateBucket(n)
			case "burst":
				burst = append(burst, pendingBurst{*l, n})
			}
		case "model":
			if v != "virtio" && v != "ixgbe" {
				return c, fmt.Errorf("--net %q: model must be virtio or ixgbe", spec)
			}
			c.Model = v
		case "xdp":
			if len(v) >= 16 {
				return c, fmt.Errorf("--net %q: interface name %q is longer than 15 bytes", spec, v)
			}
			c.XDP = v
		case "queue":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n > 63 {
				return c, fmt.Errorf("--net %q: queue %q must be 0..63", spec, v)
			}
			c.XDPQueue = int(n)
		case "queues":
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil || n < 1 || n > virtionet.MaxPairs {
				return c, fmt.Errorf("--net %q: queues %q must be 1..%d", spec, v, virtionet.MaxPairs)
			}
			c.Queues = int(n)
		case "mode":
			if v != "auto" && v != "zerocopy" && v != "copy" {
				return c, fmt.Errorf("--net %q: mode must be auto, zerocopy or copy", spec)
			}
			c.XDPMode = v
		case "path":
			if v != "copy" && v != "zerocopy" {
				return c, fmt.Errorf("--net %q: path must be copy or zerocopy", spec)
			}
			c.Path = v
		default:
			return c, fmt.Errorf("--net %q: unknown key %q", spec, k)
		}
	}
	switch {
	case c.Tap == "" && c.XDP == "":
		return c, fmt.Errorf("--net %q: tap=NAME or xdp=IFNAME is required", spec)
	case c.Tap != "" && c.XDP != "":
		return c, fmt.Errorf("--net %q: tap= and xdp= are two backends; give one", spec)
	case c.XDP == "" && (c.XDPQueue != 0 || c.XDPMode != ""):
		return c, fmt.Errorf("--net %q: queue= and mode= go with xdp=", spec)
	case c.Queues > 1 && (c.XDP != "" || c.Path == "copy" || c.Model == "ixgbe"):
		return c, fmt.Errorf("--net %q: queues= (virtio-net queue pairs) needs the zero-copy path; model=ixgbe takes its queues from --cpus", spec)
	case c.XDP != "" && (c.Model == "ixgbe" || strings.Contains(spec, "path=") || c.PinLimit != 0):
		return c, fmt.Errorf("--net %q: xdp= is its own path (virtio-net on AF_XDP): no model=ixgbe, path= or pin-limit=", spec)
	}
	for _, b := range burst {
		if !b.l.Bytes.Limited() {
			return c, fmt.Errorf("--net %q: a burst needs the same direction's -bytes rate", spec)
		}
		b.l.Bytes.OneTimeBurst = b.n
	}
	if c.Model == "ixgbe" && (c.RxLimit != nil || c.TxLimit != nil) {
		return c, fmt.Errorf("--net %q: rate limits apply to virtio-net, not model=ixgbe", spec)
	}
	return c, nil
}

type pendingBurst struct {
	l *ratelimit.Limiter
	n uint64
}

// parseRate reads a positive count per second with an optional k, M or G
// suffix (powers of 1000, as network rates are written): "12500000",
// "12.5M".
func parseRate(s string) (uint64, error) {
	mult := 1.0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, s = 1e3, s[:n-1]
		case 'M':
			mult, s = 1e6, s[:n-1]
		case 'G':
			mult, s = 1e9, s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v*mult < 1 || v*mult > 1e15 {
		return 0, fmt.Errorf("%q is not a rate per second (examples: 12500000, 12.5M, 800k)", s)
	}
	return uint64(v * mult), nil
}

// rateBucket is a bucket for a rate per second that refills in 100 ms
// steps: a tenth of a second's worth may pass at once after idle (a bucket
// of a whole second would let a 10 s transfer run 10% over).
func rateBucket(perSecond uint64) ratelimit.Bucket {
	if perSecond < 10 {
		return ratelimit.Bucket{Size: perSecond, RefillTime: time.Second}
	}
	return ratelimit.Bucket{Size: perSecond / 10, RefillTime: 100 * time.Millisecond}
}
