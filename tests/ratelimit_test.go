package tests

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/tests/harness"
)

// rateLimitMbps is the limit the test sets each way: well under what the
// nested test host moves unlimited (hundreds of Mbit/s), so the limiter,
// not the host, sets the pace.
const rateLimitMbps = 50

// rateGuest measures TCP both ways for 8 s each.
const rateGuest = `#!/bin/sh
H=` + hostIP + `
i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 20 ]; do i=$((i+1)); done
echo "RATE: begin"
echo "RESULT: iperf-tx-mbps $(iperf3 -c $H -t 8 -f m | awk '/receiver/{print $(NF-2)}')"
sleep 1
echo "RESULT: iperf-rx-mbps $(iperf3 -c $H -t 8 -f m -R | awk '/receiver/{print $(NF-2)}')"
echo "RATE: end"
`

// TestRateLimit: a guest whose NIC is limited to 50 Mbit/s each way
// (--net ...,tx-bytes=6.25M,rx-bytes=6.25M) gets that rate within 10% in
// iperf3, on the zero-copy path, and govmm's own memory stays flat while
// the guest sends and receives over the limit.
func TestRateLimit(t *testing.T) {
	env := harness.Setup(t)
	rate := strconv.FormatFloat(rateLimitMbps/8.0, 'f', -1, 64) + "M"
	host := `/sbin/ip tuntap add dev tap0 mode tap
/sbin/ip addr add ` + hostIP + `/24 dev tap0
/sbin/ip link set tap0 up
iperf3 -s -D >/dev/null
# govmm's own memory: VmRSS minus the resident part of its largest
# mapping (guest RAM), sampled every half second while the limits bite.
own() { awk '/^Size:/{s=$2} /^Rss:/{if (s>ms) {ms=s; mr=$2}; t+=$2} END{print t-mr}' /proc/$(pidof govmm)/smaps; }
( "$GOVMM" --log-level info run --no-reboot --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tap0,mac=` + guestMAC + `,tx-bytes=` + rate + `,rx-bytes=` + rate + ` \
	--cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/rate.sh"
  echo $? >"$WORK/rc" ) 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	*"RATE: begin"*)
		echo "RESULT: own-begin-kb $(own)"
		( while sleep 0.5; do own >>"$WORK/own"; done ) &
		echo $! >"$WORK/sampler" ;;
	*"RATE: end"*)
		kill $(cat "$WORK/sampler")
		echo "RESULT: own-peak-kb $(sort -n "$WORK/own" | tail -1)" ;;
	esac
done
echo "RESULT: vmm-exit $(cat "$WORK/rc")"
`
	res := env.Run(t, harness.Scenario{Name: "ratelimit", HostScript: host, GuestFiles: map[string]string{"/rate.sh": rateGuest},
		Timeout: 6 * time.Minute, Network: true})
	r := res[0]
	require.False(t, r.TimedOut)
	assert.Equal(t, "0", r.Values["vmm-exit"])
	// Nothing over the limit queues in govmm: its own memory stays flat.
	begin, peak := atoi(r.Values["own-begin-kb"]), atoi(r.Values["own-peak-kb"])
	assert.Positive(t, begin, "govmm's own memory was sampled")
	assert.Less(t, peak-begin, 8<<10, "govmm's own memory grew from %d to %d KiB under the limits", begin, peak)
	t.Logf("ratelimit: govmm's own memory %d KiB before, %d KiB peak under the limits", begin, peak)
	for _, k := range []string{"iperf-tx-mbps", "iperf-rx-mbps"} {
		got, err := strconv.ParseFloat(r.Values[k], 64)
		require.NoError(t, err, "%s: %q", k, r.Values[k])
		assert.InEpsilon(t, rateLimitMbps, got, 0.10, "%s: %.1f Mbit/s under a %d Mbit/s limit", k, got, rateLimitMbps)
		t.Logf("ratelimit: %s %.1f Mbit/s (limit %d)", k, got, rateLimitMbps)
	}
}
