package tests

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/tests/harness"
)

// profileGuest loads the network both ways with TCP, then UDP 64-byte
// frames: the profile shows what govmm spends per frame.
const profileGuest = `#!/bin/sh
H=` + hostIP + `
i=0; while ! ping -c1 -W1 $H >/dev/null 2>&1 && [ $i -lt 30 ]; do i=$((i+1)); done
echo "RESULT: tcp-tx $(iperf3 -c $H -t 8 -f m | awk '/receiver/{print $(NF-2)}')"; sleep 1
echo "RESULT: tcp-rx $(iperf3 -c $H -t 8 -f m -R | awk '/receiver/{print $(NF-2)}')"; sleep 1
echo "RESULT: udp64 $(iperf3 -c $H -u -l 64 -b 200M -t 5 | awk '/receiver/{split($(NF-2), a, "/"); print int((a[2]-a[1])/5)}')"
`

// TestProfile is `make profile`: govmm run --cpuprofile under iperf3 load,
// once per receive path, in one test-host boot. The profiles come back
// through the console (base64) and land in .cache/profile-<path>.pprof,
// for `go tool pprof -top`. Not part of `make test`.
func TestProfile(t *testing.T) {
	if os.Getenv("GOVMM_PROFILE") != "1" {
		t.Skip("set GOVMM_PROFILE=1 (make profile)")
	}
	env := harness.Setup(t)
	files := map[string]string{"/profile.sh": profileGuest}
	var sc []harness.Scenario
	for _, path := range []string{"zerocopy", "copy"} {
		host := `/sbin/ip tuntap add dev tap0 mode tap 2>/dev/null
/sbin/ip addr add ` + hostIP + `/24 dev tap0 2>/dev/null
/sbin/ip link set tap0 up
pidof iperf3 >/dev/null || iperf3 -s -D >/dev/null
"$GOVMM" run --cpuprofile "$WORK/cpu.pprof" --kernel "$KERNEL" --initrd "$INITRD" --initrd "$OVERLAY" --mem 512M \
	--net tap=tap0,mac=` + guestMAC + `,path=` + path + ` --cmdline "console=ttyS0 panic=-1 quiet govmm.ip=` + guestIP + `/24 govmm.run=/profile.sh"
echo "RESULT: vmm-exit $?"
echo PPROF-BEGIN; base64 "$WORK/cpu.pprof"; echo PPROF-END
`
		sc = append(sc, harness.Scenario{Name: "profile-" + path, HostScript: host, GuestFiles: files, Timeout: 4 * time.Minute, Network: true})
	}
	for _, r := range env.Run(t, sc...) {
		t.Logf("%s: TCP guest→host %s Mbit/s, host→guest %s Mbit/s, UDP64 %s pps", r.Name, r.Values["tcp-tx"], r.Values["tcp-rx"], r.Values["udp64"])
		_, body, ok := strings.Cut(r.Output, "PPROF-BEGIN")
		body, _, ok2 := strings.Cut(body, "PPROF-END")
		require.True(t, ok && ok2, "%s: no profile in the output", r.Name)
		// The console may interleave carriage returns; base64 ignores none.
		b64 := strings.Map(func(c rune) rune {
			if strings.ContainsRune(" \r\n\t", c) {
				return -1
			}
			return c
		}, body)
		prof, err := base64.StdEncoding.DecodeString(b64)
		require.NoError(t, err, r.Name)
		out := filepath.Join(env.Cache, r.Name+".pprof")
		require.NoError(t, os.WriteFile(out, prof, 0o644))
		t.Logf("wrote %s (%d bytes): go tool pprof -top %s", out, len(prof), out)
	}
}
