package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/govmm/govmm/devices/virtionet"
	"github.com/govmm/govmm/machine"
)

// parseNetSpec parses tap=NAME[,mac=MAC][,mtu=N][,mrg-rxbuf=on|off][,path=zerocopy|copy][,pin-limit=SIZE]
// [,tx-poll=DURATION][,rx-coalesce=DURATION].
func parseNetSpec(spec string) (machine.NetConfig, error) {
	c := machine.NetConfig{Mergeable: true, Path: "zerocopy", Moderation: virtionet.DefaultModeration}
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
		case "pin-limit":
			n, err := ParseSize(v)
			if err != nil || n < 64<<10 {
				return c, fmt.Errorf("--net %q: pin-limit %q must be a size of at least 64K", spec, v)
			}
			c.PinLimit = n
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
		case "model":
			if v != "virtio" && v != "ixgbe" {
				return c, fmt.Errorf("--net %q: model must be virtio or ixgbe", spec)
			}
			c.Model = v
		case "path":
			if v != "copy" && v != "zerocopy" {
				return c, fmt.Errorf("--net %q: path must be copy or zerocopy", spec)
			}
			c.Path = v
		default:
			return c, fmt.Errorf("--net %q: unknown key %q", spec, k)
		}
	}
	if c.Tap == "" {
		return c, fmt.Errorf("--net %q: tap=NAME is required", spec)
	}
	return c, nil
}
