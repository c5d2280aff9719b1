package main

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseNetSpec(t *testing.T) {
	c, err := parseNetSpec("tap=tap0")
	require.NoError(t, err)
	require.Equal(t, "tap0", c.Tap)
	require.True(t, c.Mergeable, "MRG_RXBUF is offered by default")
	require.Equal(t, "zerocopy", c.Path, "the zero-copy path is the default")

	c, err = parseNetSpec("tap=t1,mac=52:54:00:12:34:56,mtu=9000,mrg-rxbuf=off,path=copy,pin-limit=2M")
	require.NoError(t, err)
	require.Equal(t, net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, c.MAC)
	require.Equal(t, uint16(9000), c.MTU)
	require.False(t, c.Mergeable)
	require.Equal(t, "copy", c.Path)
	require.Equal(t, uint64(2<<20), c.PinLimit)

	c, err = parseNetSpec("xdp=veth0,queue=3,mode=copy,mrg-rxbuf=off,offloads=off")
	require.NoError(t, err)
	require.True(t, c.NoOffloads)
	require.Equal(t, "veth0", c.XDP)
	require.Empty(t, c.Tap)
	require.Equal(t, 3, c.XDPQueue)
	require.Equal(t, "copy", c.XDPMode)

	c, err = parseNetSpec("tap=t2,tx-burst=1M,tx-bytes=12.5M,rx-ops=5,rx-bytes=800k")
	require.NoError(t, err)
	require.Equal(t, uint64(1_250_000), c.TxLimit.Bytes.Size, "a tenth of a second's worth")
	require.Equal(t, 100*time.Millisecond, c.TxLimit.Bytes.RefillTime)
	require.Equal(t, uint64(1_000_000), c.TxLimit.Bytes.OneTimeBurst, "the burst may come before its rate")
	require.False(t, c.TxLimit.Ops.Limited())
	require.Equal(t, uint64(80_000), c.RxLimit.Bytes.Size)
	require.Equal(t, uint64(5), c.RxLimit.Ops.Size, "under 10/s: a second's bucket")
	require.Equal(t, time.Second, c.RxLimit.Ops.RefillTime)

	c, err = parseNetSpec("tap=t3,queues=4")
	require.NoError(t, err)
	require.Equal(t, 4, c.Queues)

	for _, bad := range []string{"", "tap", "tap=", "tap=t,queues=0", "tap=t,queues=9", "tap=t,queues=x", "tap=t,queues=2,path=copy", "xdp=v0,queues=2", "tap=t,queues=2,model=ixgbe", "tap=t,tx-bytes=0", "tap=t,tx-bytes=fast", "tap=t,rx-burst=1M",
		"tap=t,model=ixgbe,rx-bytes=1M", "tap=t,tx-ops=-5", "mac=52:54:00:12:34:56", "tap=t,mac=zz", "tap=t,mac=01:00:5e:00:00:01",
		"tap=t,mtu=10", "tap=t,mtu=70000", "tap=t,mrg-rxbuf=maybe", "tap=t,offloads=some", "tap=t,path=fast", "tap=t,color=red", "tap=t,pin-limit=1K", "tap=t,pin-limit=x", "tap=abcdefghijklmnopq",
		"xdp=v0,tap=t", "tap=t,queue=1", "tap=t,mode=copy", "xdp=v0,mode=fast", "xdp=v0,queue=64", "xdp=v0,model=ixgbe", "xdp=v0,path=copy", "xdp=abcdefghijklmnopq"} {
		_, err := parseNetSpec(bad)
		require.Error(t, err, bad)
	}
}

// A --net value holds commas; kong must not split it into several values.
func TestNetFlagKeepsCommas(t *testing.T) {
	bin := buildGovmm(t)
	out, _ := exec.Command(bin, "run", "--kernel", "/nonexistent", "--net", "tap=t0,mac=52:54:00:12:34:56,mrg-rxbuf=off").CombinedOutput()
	require.NotContains(t, string(out), "tap=NAME is required")
}
