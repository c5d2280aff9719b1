package xsk

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/internal/testnet"
)

// The tests run against the kernel, on a veth pair in a private network
// namespace: a packet socket on one end (v1) sends and reads the frames the
// AF_XDP socket on the other end (v0) receives and transmits.
//
// veth and XDP, as found here: a frame sent on v1 reaches v0's XDP hook,
// native or generic, with no setup on v1. A frame an AF_XDP socket on v0
// transmits reaches v1 with nothing on v1 either: veth has no zero-copy
// AF_XDP, so the socket is in copy mode, whose tx builds an skb and hands
// it to veth's ndo_start_xmit like any other packet (netif_rx on v1, or
// v1's NAPI if it has XDP). The rule that the peer needs an XDP program
// (or GRO) is for XDP_REDIRECT of xdp_frames into a veth (ndo_xdp_xmit),
// not for AF_XDP copy-mode tx. TestTransmit checks both ways.

const (
	umemSize  = 4 << 20
	chunkSize = 4096
	ringSize  = 64
	etherType = 0x88b5 // IEEE local experimental
)

// newNetns is a network namespace where AF_XDP and BPF work, or a skip.
func newNetns(t *testing.T) *testnet.Netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8)")
	}
	ns := testnet.NewNetns(t)
	var skip string
	ns.Do(func() {
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			skip = "no AF_XDP: " + err.Error()
			return
		}
		unix.Close(fd)
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			skip = "no XSKMAP: " + err.Error()
			return
		}
		m.Close()
		// No IPv6: its DAD and router solicitations would be frames
		// in the tests' rings. Best effort: there may be no IPv6.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0)
	})
	if skip != "" {
		t.Skip(skip)
	}
	return ns
}

// veth creates the pair a–b in ns, both up, and returns their indexes.
func veth(t *testing.T, ns *testnet.Netns, a, b string) (ia, ib int) {
	t.Helper()
	var err error
	ns.Do(func() {
		for _, args := range [][]string{
			{"link", "add", a, "type", "veth", "peer", "name", b},
			{"link", "set", a, "mtu", "1600", "up"},
			{"link", "set", b, "mtu", "1600", "up"},
		} {
			if out, e := exec.Command("ip", args...).CombinedOutput(); e != nil {
				err = errors.New("ip " + args[0] + " " + args[1] + ": " + e.Error() + ": " + string(out))
				return
			}
		}
		var ifa, ifb *net.Interface
		if ifa, err = net.InterfaceByName(a); err != nil {
			return
		}
		if ifb, err = net.InterfaceByName(b); err != nil {
			return
		}
		ia, ib = ifa.Index, ifb.Index
	})
	require.NoError(t, err)
	t.Cleanup(func() { ns.Do(func() { _ = exec.Command("ip", "link", "del", a).Run() }) })
	return ia, ib
}

// newUMEM is anonymous memory filled with pattern, unmapped after the test.
func newUMEM(t *testing.T) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, umemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	pattern(mem)
	return mem
}

func pattern(b []byte) {
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
}

// packetSocket is an AF_PACKET socket on ifindex (call it in the namespace).
func packetSocket(ifindex int) (int, error) {
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// frame is test frame i, n bytes long: broadcast, our EtherType, a payload
// that differs per frame.
func frame(i, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, byte(i), etherType >> 8, etherType & 0xff})
	for j := 14; j < n; j++ {
		f[j] = byte(i*31 + j)
	}
	return f
}

// receive collects want frames from s, polling its fd, for up to 5s.
func receive(t *testing.T, s *Socket, want int) []Desc {
	t.Helper()
	descs := make([]Desc, want)
	got := 0
	for deadline := time.Now().Add(5 * time.Second); got < want && time.Now().Before(deadline); {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(s.FD()), Events: unix.POLLIN}}, 100)
		if err != nil && err != unix.EINTR {
			t.Fatalf("poll: %v", err)
		}
		got += s.Receive(descs[got:])
	}
	st, _ := s.Stats()
	require.Equal(t, want, got, "frames received (stats %+v)", st)
	return descs
}

// completed collects want completions from s for up to 2s.
func completed(t *testing.T, s *Socket, want int) []uint64 {
	t.Helper()
	addrs := make([]uint64, want)
	got := 0
	for deadline := time.Now().Add(2 * time.Second); got < want && time.Now().Before(deadline); {
		if n := s.Completed(addrs[got:]); n > 0 {
			got += n
			continue
		}
		require.NoError(t, s.KickTx())
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, want, got, "completions")
	return addrs
}

// TestReceive checks where the kernel writes a received frame in an
// unaligned-mode UMEM: exactly at fill address + UMEM headroom + 256, and
// nothing before it.
func TestReceive(t *testing.T) {
	ns := newNetns(t)
	for i, c := range []struct {
		mode     AttachMode
		headroom uint32
	}{{AttachDriver, 0}, {AttachGeneric, 0}, {AttachDriver, chunkSize - XDPHeadroom - 1514}} {
		mode, head := c.mode, c.headroom
		t.Run(fmt.Sprintf("%s/headroom-%d", mode, head), func(t *testing.T) {
			v0, v1 := veth(t, ns, "xr"+string(rune('a'+i))+"0", "xr"+string(rune('a'+i))+"1")
			mem := newUMEM(t)
			lead := head + XDPHeadroom // fill address to frame
			var prog *Program
			var s *Socket
			pkt := -1
			var err error
			ns.Do(func() {
				if prog, err = Attach(v0, mode); err != nil {
					return
				}
				if s, err = Open(Config{Ifindex: v0, UMEM: mem, ChunkSize: chunkSize, Headroom: head, RingSize: ringSize}); err != nil {
					return
				}
				pkt, err = packetSocket(v1)
			})
			t.Cleanup(func() {
				if pkt >= 0 {
					unix.Close(pkt)
				}
				if s != nil {
					s.Close()
				}
				if prog != nil {
					prog.Close()
				}
			})
			require.NoError(t, err)
			assert.Equal(t, mode, prog.Mode())
			t.Logf("attach %s, socket zero-copy %v", prog.Mode(), s.ZeroCopy())
			assert.False(t, s.ZeroCopy(), "veth has no zero-copy AF_XDP")
			require.NoError(t, prog.Register(0, s))

			// Chunk starts anywhere: page-aligned; so the frame lands at
			// page 3 + 100; a chunk across a page boundary; an odd byte;
			// one ending 1 byte past the UMEM (invalid); the last chunk.
			fills := []uint64{0, 3*4096 + 100 - uint64(lead), 5*4096 + 4000, 9*4096 + 1, umemSize - chunkSize + 1, umemSize - chunkSize}
			valid := []uint64{fills[0], fills[1], fills[2], fills[3], fills[5]}
			require.Equal(t, len(fills), s.Fill(fills))
			frames := [][]byte{frame(0, 60), frame(1, 333), frame(2, 1514), frame(3, 1000), frame(4, 777)}
			for _, f := range frames {
				_, err := unix.Write(pkt, f)
				require.NoError(t, err)
			}
			descs := receive(t, s, len(frames))
			require.NoError(t, s.WakeRx(), "a no-op in copy mode")

			want := make([]byte, len(mem))
			pattern(want)
			for i, d := range descs {
				// The fill ring is FIFO: frame i takes the i-th valid
				// chunk, and lands headroom+256 bytes into it.
				assert.Equal(t, valid[i]+uint64(lead), d.Addr, "frame %d address", i)
				assert.Equal(t, uint32(len(frames[i])), d.Len, "frame %d length", i)
				copy(want[valid[i]+uint64(lead):], frames[i])
			}
			// Everything else, the headroom before each frame
			// included, still holds the pattern.
			if !bytes.Equal(want, mem) {
				for off := range mem {
					if mem[off] != want[off] {
						t.Fatalf("UMEM byte %#x is %#x, want %#x", off, mem[off], want[off])
					}
				}
			}
			st, err := s.Stats()
			require.NoError(t, err)
			t.Logf("stats after the invalid fill address: %+v", st)
			assert.Zero(t, st.RxDropped)
			assert.Equal(t, ringSize, s.FillFree(), "the kernel took every fill entry, the invalid one too")

			// Many more rounds than the rings hold, so the indexes
			// wrap: chunks on a 4097-byte stride.
			for round := range 4 {
				const batch = 40
				addrs := make([]uint64, batch)
				for i := range addrs {
					addrs[i] = uint64(round*batch+i) * (chunkSize + 1)
				}
				require.Equal(t, batch, s.Fill(addrs))
				frames := make([][]byte, batch)
				for i := range frames {
					frames[i] = frame(round*batch+i, 60+i*37)
					_, err := unix.Write(pkt, frames[i])
					require.NoError(t, err)
				}
				for i, d := range receive(t, s, batch) {
					require.Equal(t, addrs[i]+uint64(lead), d.Addr)
					require.Equal(t, frames[i], mem[d.Addr:d.Addr+uint64(d.Len)])
				}
			}

			if head > 0 {
				// A frame one byte longer than the chunk holds after
				// the headrooms is dropped, not truncated.
				chunk := uint64(1000 * 4096) // clear of the frames above
				require.Equal(t, 1, s.Fill([]uint64{chunk}))
				_, err := unix.Write(pkt, frame(99, chunkSize-int(lead)+1))
				require.NoError(t, err)
				time.Sleep(50 * time.Millisecond)
				assert.Zero(t, s.Receive(make([]Desc, 1)))
				st, err := s.Stats()
				require.NoError(t, err)
				assert.Equal(t, uint64(1), st.RxDropped)
				assert.Equal(t, want[chunk:chunk+chunkSize], mem[chunk:chunk+chunkSize], "oversized frame written")
			}
		})
	}
}

// TestTransmit sends frames from unaligned UMEM offsets and reads them on
// the peer, with and without an XDP program on the peer.
func TestTransmit(t *testing.T) {
	ns := newNetns(t)
	for i, peerXDP := range []bool{false, true} {
		name := "peer-plain"
		if peerXDP {
			name = "peer-xdp"
		}
		t.Run(name, func(t *testing.T) {
			v0, v1 := veth(t, ns, "xt"+string(rune('a'+i))+"0", "xt"+string(rune('a'+i))+"1")
			mem := newUMEM(t)
			var peer *Program
			var s *Socket
			pkt := -1
			var err error
			ns.Do(func() {
				if peerXDP {
					// No socket registered: it passes every frame.
					if peer, err = Attach(v1, AttachDriver); err != nil {
						return
					}
				}
				if s, err = Open(Config{Ifindex: v0, UMEM: mem, ChunkSize: chunkSize, RingSize: ringSize}); err != nil {
					return
				}
				pkt, err = packetSocket(v1)
			})
			t.Cleanup(func() {
				if pkt >= 0 {
					unix.Close(pkt)
				}
				if s != nil {
					s.Close()
				}
				if peer != nil {
					peer.Close()
				}
			})
			require.NoError(t, err)
			require.NoError(t, unix.SetsockoptTimeval(pkt, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}))

			// Valid frames at unaligned offsets (one across a page
			// boundary, two odd), then two the kernel must reject:
			// past the end of the UMEM, and longer than a chunk.
			descs := []Desc{{2*4096 + 123, 100}, {9*4096 + 4000, 1000}, {12345, 1514}, {0, 60}, {umemSize - 10, 100}, {20 * 4096, chunkSize + 1}}
			var frames [][]byte
			for i, d := range descs[:4] {
				frames = append(frames, frame(i, int(d.Len)))
				copy(mem[d.Addr:], frames[i])
			}
			require.Equal(t, len(descs), s.Transmit(descs))
			for i := range frames {
				assert.Equal(t, frames[i], readFrame(t, pkt), "frame %d", i)
			}
			st, err := s.Stats()
			require.NoError(t, err)
			t.Logf("stats: %+v", st)
			assert.Equal(t, uint64(2), st.TxInvalidDescs, "both invalid descriptors seen in one Transmit")

			// The valid frames complete in order, with the addresses
			// as submitted, odd ones included (see oddAddr). Whether
			// the invalid ones complete too depends on the kernel.
			addrs := completed(t, s, len(frames))
			raw := make([]uint64, len(frames))
			for i := range raw {
				raw[i] = s.comp.addrs[(s.comp.cachedCons-uint32(len(frames)-i))&s.comp.mask]
			}
			t.Logf("completion ring held %#x for %#x", raw, addrs)
			for i := range frames {
				assert.Equal(t, descs[i].Addr, addrs[i], "completion %d", i)
			}
			time.Sleep(50 * time.Millisecond)
			extra := make([]uint64, 4)
			extra = extra[:s.Completed(extra)]
			t.Logf("invalid descriptors completed: %#x", extra)
			for _, a := range extra {
				assert.Contains(t, []uint64{descs[4].Addr, descs[5].Addr}, a)
			}

			// More frames in one Transmit than copy mode sends per
			// sendto (32), and the indexes wrap.
			for round := range 3 {
				const batch = 40
				descs := make([]Desc, batch)
				frames := make([][]byte, batch)
				for i := range descs {
					frames[i] = frame(i, 60+i)
					descs[i] = Desc{Addr: uint64(round*batch+i)*3001 + 7, Len: uint32(len(frames[i]))}
					copy(mem[descs[i].Addr:], frames[i])
				}
				require.Equal(t, batch, s.Transmit(descs))
				for i := range frames {
					require.Equal(t, frames[i], readFrame(t, pkt), "round %d frame %d", round, i)
				}
				for i, a := range completed(t, s, batch) {
					require.Equal(t, descs[i].Addr, a)
				}
			}
		})
	}
}

// readFrame is the next frame with our EtherType that v1 received.
func readFrame(t *testing.T, pkt int) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(pkt, buf, 0)
		require.NoError(t, err, "reading the peer")
		if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n >= 14 && buf[12] == etherType>>8 && buf[13] == etherType&0xff {
			return append([]byte(nil), buf[:n]...)
		}
	}
}

func TestErrors(t *testing.T) {
	ns := newNetns(t)
	v0, _ := veth(t, ns, "xe0", "xe1")
	mem := newUMEM(t)
	cfg := Config{Ifindex: v0, UMEM: mem, ChunkSize: chunkSize, RingSize: ringSize}
	open := func(c Config) (s *Socket, err error) {
		ns.Do(func() { s, err = Open(c) })
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}

	c := cfg
	c.ChunkSize = 1000
	_, err := open(c)
	require.ErrorIs(t, err, unix.EINVAL)
	assert.Contains(t, err.Error(), "XDP_UMEM_REG")
	t.Log(err)

	c = cfg
	c.Ifindex = 999999
	_, err = open(c)
	require.ErrorIs(t, err, unix.ENODEV)
	assert.Contains(t, err.Error(), "bind")
	t.Log(err)

	c = cfg
	c.RingSize = 100
	_, err = open(c)
	assert.ErrorContains(t, err, "power of two")

	c = cfg
	c.UMEM = mem[1:]
	_, err = open(c)
	assert.ErrorContains(t, err, "page-aligned")

	c = cfg
	c.Mode = ModeZeroCopy
	_, err = open(c)
	assert.ErrorIs(t, err, unix.EOPNOTSUPP, "veth has no zero-copy AF_XDP")
	t.Log(err)

	c = cfg
	c.Mode = ModeCopy
	s, err := open(c)
	require.NoError(t, err)
	assert.False(t, s.ZeroCopy())
	_, err = open(cfg)
	assert.ErrorIs(t, err, unix.EBUSY, "a second socket on the same queue")
	t.Log(err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	assert.Equal(t, -1, s.FD())

	var prog *Program
	ns.Do(func() { _, err = Attach(999999, AttachAuto) })
	assert.Error(t, err)
	t.Log(err)
	ns.Do(func() { prog, err = Attach(v0, AttachAuto) })
	require.NoError(t, err)
	assert.Equal(t, AttachDriver, prog.Mode(), "veth has native XDP")
	assert.Error(t, prog.Register(MaxQueues, s))
	require.NoError(t, prog.Close())
	require.NoError(t, prog.Close())
}

// TestMemlock registers a UMEM larger than RLIMIT_MEMLOCK without
// CAP_IPC_LOCK (dropped on the namespace's thread only).
func TestMemlock(t *testing.T) {
	ns := newNetns(t)
	mem := newUMEM(t)
	var old unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old))
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: old.Max}))
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old) })
	var s *Socket
	var err error
	ns.Do(func() {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err = unix.Capget(&hdr, &caps[0]); err != nil {
			return
		}
		caps[0].Effective &^= 1 << unix.CAP_IPC_LOCK
		if err = unix.Capset(&hdr, &caps[0]); err != nil {
			return
		}
		s, err = Open(Config{Ifindex: 1, UMEM: mem, ChunkSize: chunkSize, RingSize: ringSize})
	})
	if s != nil {
		s.Close()
	}
	require.ErrorIs(t, err, unix.ENOBUFS)
	assert.Contains(t, err.Error(), "RLIMIT_MEMLOCK")
	assert.NotContains(t, err.Error(), "\n")
	t.Log(err)
}
