package zerocopy

import (
	"encoding/binary"
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
		tapMAC := testnet.LinkUp(t, "zctso0", []byte{10, 77, 0, 1}).HardwareAddr

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

// A multi-queue tap: the kernel spreads flows over the attached queues
// and steers nothing to a detached one; a detached port neither fails nor
// spins, and wakes its blocked reader when attached again.
func TestTapPortQueues(t *testing.T) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	testnet.InNewNetns(t, func() {
		ports, err := OpenTapQueues("zcmq0", 2)
		require.NoError(t, err)
		defer func() {
			for _, p := range ports {
				p.Close()
			}
		}()
		require.True(t, ports[0].Created())
		require.False(t, ports[1].Created())
		for _, p := range ports {
			require.NoError(t, p.SetHdrLen(12))
		}
		ifc := testnet.LinkUp(t, "zcmq0", nil)
		ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		require.NoError(t, err)
		defer unix.Close(ps)
		// send puts 64 UDP flows on the tap's wire side, one frame each.
		send := func() {
			for port := range 64 {
				f := udpFrame(uint16(10000 + port))
				require.NoError(t, unix.Sendto(ps, f, 0, &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: htons(unix.ETH_P_IP)}))
			}
		}
		// count counts the test's frames a port holds (the kernel sends
		// its own too: IPv6 router solicitations, MLD reports).
		count := func(p *TapPort) (n int) {
			hdr, buf := make([]byte, 12), make([]byte, 2048)
			for {
				l, err := p.ReadFrame(hdr, [][]byte{buf}, false)
				if err != nil {
					require.ErrorIs(t, err, ErrWouldBlock)
					return n
				}
				if l >= 14+20+8 && buf[12] == 0x08 && buf[14+9] == 17 && binary.BigEndian.Uint16(buf[14+20+2:]) == 5000 {
					n++
				}
			}
		}
		for _, p := range ports {
			count(p) // whatever the kernel sent when the link came up
		}
		send()
		n0, n1 := count(ports[0]), count(ports[1])
		require.Equal(t, 64, n0+n1)
		require.NotZero(t, n0, "flows spread over both queues")
		require.NotZero(t, n1, "flows spread over both queues")

		require.NoError(t, ports[1].SetQueueEnabled(false))
		require.NoError(t, ports[1].Writev([][]byte{make([]byte, 12), udpFrame(9)}), "a frame sent on a detached queue is dropped, not an error")
		send()
		require.Equal(t, 64, count(ports[0]), "every flow on the attached queue")
		require.Zero(t, count(ports[1]))

		// A reader blocked on the detached queue waits (a poll on it would
		// report an error at once) until the queue is attached again.
		got := make(chan error, 1)
		go func() {
			_, err := ports[1].ReadFrame(make([]byte, 12), [][]byte{make([]byte, 2048)}, true)
			got <- err
		}()
		select {
		case err := <-got:
			t.Fatalf("a read of a detached queue returned: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		require.NoError(t, ports[1].SetQueueEnabled(true))
		require.ErrorIs(t, <-got, ErrInterrupted)
		send()
		n0, n1 = count(ports[0]), count(ports[1])
		require.Equal(t, 64, n0+n1)
		require.NotZero(t, n1, "the queue takes flows again")
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpFrame is an Ethernet/IPv4/UDP frame from 10.77.0.1:sport to
// 10.77.0.2:5000 with 18 bytes of payload.
func udpFrame(sport uint16) []byte {
	f := make([]byte, 14+20+8+18)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	copy(ip[12:], []byte{10, 77, 0, 1, 10, 77, 0, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	return f
}
