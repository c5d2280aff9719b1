package zerocopy

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/internal/testnet"
)

func TestTapPortInterrupt(t *testing.T) {
	p, err := OpenTap("zctest0")
	if err != nil {
		t.Skipf("no tap here: %v", err)
	}
	defer p.Close()
	require.NoError(t, p.SetHdrLen(12))
	p.Interrupt()
	_, err = p.ReadFrame(make([]byte, 12), [][]byte{make([]byte, 2048)}, true)
	require.ErrorIs(t, err, ErrInterrupted)
}

// tcpStats reads this thread's namespace's TCP counters.
func tcpStats(t *testing.T) map[string]int {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	require.NoError(t, err)
	var names, vals []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Tcp:") {
			if names == nil {
				names = strings.Fields(l)
			} else {
				vals = strings.Fields(l)
			}
		}
	}
	m := map[string]int{}
	for i := 1; i < len(names) && i < len(vals); i++ {
		m[names[i]], _ = strconv.Atoi(vals[i])
	}
	return m
}

// A guest TSO frame, through the 82599 and its offload hand-off, reaches
// a real host kernel as one GSO frame that the kernel takes: the tap
// accepts the vnet header, IP the rewritten header, and TCP the segment
// (it answers the closed port with a reset). The checksum seed itself is
// checked byte for byte by TestTxTSOZeroCopy: a kernel trusts a partial
// checksum it delivers locally.
func TestTSOThroughRealTap(t *testing.T) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	testnet.InNewNetns(t, func() {
		p, err := OpenTap("zctso0")
		require.NoError(t, err)
		defer p.Close()
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(s)
		ifr, err := unix.NewIfreq("zctso0")
		require.NoError(t, err)
		require.NoError(t, unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr))
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		require.NoError(t, unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr))
		require.NoError(t, ifr.SetInet4Addr([]byte{10, 77, 0, 1}))
		require.NoError(t, unix.IoctlIfreq(s, unix.SIOCSIFADDR, ifr))
		ifc, err := net.InterfaceByName("zctso0") // netlink, on this thread: the new namespace
		require.NoError(t, err)
		tapMAC := ifc.HardwareAddr

		mem := testRAM(t)
		m, err := NewModel(Config{MAC: guestMAC, Mem: mem, Port: p})
		require.NoError(t, err)
		require.NoError(t, m.Start(offCfg, newSink()))
		defer func() { m.Stop(); m.Close() }()
		r := &rig{t: t, mem: mem, m: m}

		f := tcpFrame(false, 20000) // 10.77.0.2 → 10.77.0.1, port 0 → 0: closed
		copy(f, tapMAC)
		gpa := uint64(highRAM + 0x8000)
		copy(r.at(gpa, 12), vnet(vnetNeedsCsum, vnetGSOTCPv4, 1448, 34, 16))
		copy(r.at(gpa+12, len(f)), f)
		before := tcpStats(t)
		m.Transmit([]nic.Buf{r.buf(1, gpa, 12+len(f))})
		require.Zero(t, m.Stats().TxDropped, "the tap took the GSO frame")
		deadline := time.Now().Add(5 * time.Second)
		for tcpStats(t)["OutRsts"] == before["OutRsts"] && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		after := tcpStats(t)
		require.Equal(t, before["InCsumErrors"], after["InCsumErrors"])
		require.Greater(t, after["OutRsts"], before["OutRsts"], "TCP took the segment and answered it")
	})
}

// A tap deleted while the port holds it (ip link del) ends ReadFrame with
// an error, which stops the model's reader once, instead of a poll loop
// that spins on POLLERR; writes fail and are reported, not fatal.
func TestTapPortDeletedUnderUs(t *testing.T) {
	testnet.InNewNetns(t, func() {
		p, err := OpenTap("zcdel0")
		require.NoError(t, err)
		defer p.Close()
		testnet.DeleteLink(t, "zcdel0")
		done := make(chan error, 1)
		go func() {
			_, err := p.ReadFrame(make([]byte, 12), [][]byte{make([]byte, 2048)}, true)
			done <- err
		}()
		select {
		case err := <-done:
			require.Error(t, err)
			require.NotErrorIs(t, err, ErrInterrupted)
		case <-time.After(5 * time.Second):
			p.Interrupt()
			t.Fatal("ReadFrame kept waiting on a deleted tap")
		}
		require.Error(t, p.Writev([][]byte{make([]byte, 12), make([]byte, 60)}))
	})
}
