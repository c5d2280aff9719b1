package virtionet

import (
	"encoding/binary"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/nic"
	"github.com/govmm/govmm/devices/virtio/pcitransport"
	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
	"github.com/govmm/govmm/internal/fuzzinput"
	"github.com/govmm/govmm/vmm/guestmem"
)

// switchModel is a fakeModel serving one queue of a multi-queue host
// interface: it records whether its queue is on.
type switchModel struct {
	fakeModel
	mu      sync.Mutex
	on      bool
	history []bool
}

func (s *switchModel) SetQueueEnabled(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = on
	s.history = append(s.history, on)
	return nil
}

func (s *switchModel) enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on
}

// mqRig is a device with three queue pairs and its control queue, driven
// through queuetest drivers; the driver enables every queue but those
// listed as disabled.
type mqRig struct {
	dev    *Net
	models []*switchModel
	drv    []*queuetest.Driver // rx0, tx0, rx1, tx1, rx2, tx2, ctrl
	bells  []int
	irqs   []countIRQ
}

const mqPairs = 3

func newMQRig(t *testing.T, features uint64, disabled ...int) *mqRig {
	t.Helper()
	r := &mqRig{}
	var models []nic.Model
	for range mqPairs {
		m := &switchModel{fakeModel: fakeModel{caps: nic.Capabilities{Csum: true, TSO: true}}}
		r.models = append(r.models, m)
		models = append(models, m)
	}
	var err error
	r.dev, err = New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Models: models})
	require.NoError(t, err)
	nq := 2*mqPairs + 1
	r.irqs = make([]countIRQ, nq)
	var regions []guestmem.Region
	var aq []pcitransport.ActiveQueue
	for i := range nq {
		d, err := queuetest.New(queuetest.Config{Size: 64, GPA: uint64(i+1) << 28, EventIdx: true})
		require.NoError(t, err)
		q := queue.New(64)
		q.SetEventIdx(true)
		require.NoError(t, d.Configure(q))
		bell, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		require.NoError(t, err)
		t.Cleanup(func() { unix.Close(bell) })
		r.drv, r.bells = append(r.drv, d), append(r.bells, bell)
		regions = append(regions, d.Mem.Regions()[0])
		if !slices.Contains(disabled, i) {
			aq = append(aq, pcitransport.ActiveQueue{Index: i, Queue: q, Interrupt: &r.irqs[i], Doorbell: bell})
		}
	}
	mem, err := guestmem.FromRegions(regions...)
	require.NoError(t, err)
	require.NoError(t, r.dev.Activate(pcitransport.Activation{Features: features | FeatVersion1 | FeatEventIdx, Mem: mem, Queues: aq}))
	t.Cleanup(r.dev.Reset)
	return r
}

// command queues one control command (class, cmd, data) with its ack byte,
// kicks if the device asked for it, and returns the ack the device wrote.
func (r *mqRig) command(t *testing.T, class, cmd byte, data []byte) byte {
	t.Helper()
	ctrl := r.drv[2*mqPairs]
	_, err := ctrl.AddChain([][]byte{{class, cmd}, data}, []uint32{1})
	require.NoError(t, err)
	// As Linux does: a kick only when the device asked for one (EVENT_IDX).
	need, err := ctrl.NeedsKick()
	require.NoError(t, err)
	if need {
		kick(r.bells[2*mqPairs])
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, ok, err := ctrl.PopUsed()
		require.NoError(t, err)
		if ok {
			require.Equal(t, uint32(1), u.Len, "the device writes the one-byte ack")
			return u.Data[0]
		}
		require.True(t, time.Now().Before(deadline), "no answer to command %d/%d", class, cmd)
		time.Sleep(time.Millisecond)
	}
}

func pairsSet(k uint16) []byte { return binary.LittleEndian.AppendUint16(nil, k) }

func (r *mqRig) enabledQueues() []bool {
	var on []bool
	for _, m := range r.models {
		on = append(on, m.enabled())
	}
	return on
}

func TestMultiqueueOffersPairsAndControlQueue(t *testing.T) {
	n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Models: []nic.Model{&fakeModel{}, &fakeModel{}}})
	require.NoError(t, err)
	require.Equal(t, uint64(FeatMQ|FeatCtrlVQ), n.Features()&(FeatMQ|FeatCtrlVQ))
	require.Equal(t, []uint16{QueueSize, QueueSize, QueueSize, QueueSize, ctrlQueueSize}, n.QueueMaxSizes())
	b := make([]byte, 2)
	n.ReadConfig(8, b)
	require.Equal(t, uint16(2), binary.LittleEndian.Uint16(b), "max_virtqueue_pairs")

	one, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Model: &fakeModel{}})
	require.NoError(t, err)
	require.Zero(t, one.Features()&(FeatMQ|FeatCtrlVQ), "a single pair offers neither")
	require.Len(t, one.QueueMaxSizes(), 2)

	_, err = New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Model: &fakeModel{}, Models: []nic.Model{&fakeModel{}}})
	require.Error(t, err)
	_, err = New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Models: make([]nic.Model, MaxPairs+1)})
	require.Error(t, err)
}

// The driver sets the pairs it uses: only their host queues stay on, and
// every pair's model was started, so buffers posted to a pair turned off
// later are still the model's to return on reset.
func TestMultiqueuePairsSet(t *testing.T) {
	r := newMQRig(t, FeatMQ|FeatCtrlVQ)
	require.Equal(t, []bool{true, false, false}, r.enabledQueues(), "only the first pair until the driver sets more")
	for i, m := range r.models {
		m.mu.Lock()
		started := m.fakeModel.sink != nil
		m.mu.Unlock()
		require.True(t, started, "pair %d's model started", i)
	}

	require.Equal(t, byte(ctrlAckOK), r.command(t, ctrlClassMQ, ctrlMQPairsSet, pairsSet(3)))
	require.Equal(t, []bool{true, true, true}, r.enabledQueues())
	require.Equal(t, 3, r.dev.ActivePairs())
	require.Equal(t, byte(ctrlAckOK), r.command(t, ctrlClassMQ, ctrlMQPairsSet, pairsSet(2)))
	require.Equal(t, []bool{true, true, false}, r.enabledQueues())

	// Out of range (§5.1.6.5.5: 1..max_virtqueue_pairs), short data, a
	// class the device did not offer: VIRTIO_NET_ERR, nothing changes.
	for _, c := range []struct {
		class, cmd byte
		data       []byte
	}{
		{ctrlClassMQ, ctrlMQPairsSet, pairsSet(0)},
		{ctrlClassMQ, ctrlMQPairsSet, pairsSet(4)},
		{ctrlClassMQ, ctrlMQPairsSet, []byte{1}},
		{ctrlClassMQ, 7, pairsSet(1)},
		{0, 0, []byte{1}}, // VIRTIO_NET_CTRL_RX_PROMISC: CTRL_RX not offered
		{1, 1, make([]byte, 6)},
	} {
		require.Equal(t, byte(ctrlAckErr), r.command(t, c.class, c.cmd, c.data), "%+v", c)
	}
	require.Equal(t, []bool{true, true, false}, r.enabledQueues())
	require.Contains(t, r.dev.DebugState(), "queue pairs: 2 of 3 in use")

	// A reset leaves the first pair alone for the next driver.
	r.dev.Reset()
	require.Equal(t, []bool{true, false, false}, r.enabledQueues())
}

// A pair the driver did not enable is not started, and cannot be set in
// use: its host queue would take flows nobody reads.
func TestMultiqueuePairNotEnabled(t *testing.T) {
	r := newMQRig(t, FeatMQ|FeatCtrlVQ, rxIndex(2), txIndex(2))
	r.models[2].mu.Lock()
	started := r.models[2].fakeModel.sink != nil
	r.models[2].mu.Unlock()
	require.False(t, started)
	require.Equal(t, byte(ctrlAckErr), r.command(t, ctrlClassMQ, ctrlMQPairsSet, pairsSet(3)))
	require.Equal(t, byte(ctrlAckOK), r.command(t, ctrlClassMQ, ctrlMQPairsSet, pairsSet(2)))
	require.Equal(t, []bool{true, true, false}, r.enabledQueues())
	require.Contains(t, r.dev.DebugState(), "pair 2: not enabled by the driver")
}

// Without VIRTIO_NET_F_MQ negotiated the device runs one pair, whatever
// the driver enabled, and refuses to set more.
func TestMultiqueueNotNegotiated(t *testing.T) {
	r := newMQRig(t, 0)
	for i, m := range r.models {
		m.mu.Lock()
		started := m.fakeModel.sink != nil
		m.mu.Unlock()
		require.Equal(t, i == 0, started, "pair %d", i)
	}
	require.Equal(t, []bool{true, false, false}, r.enabledQueues())
	require.Equal(t, "not active (no driver)", func() string { r.dev.Reset(); return r.dev.DebugState() }())
}

// A control chain without room for the ack, or a broken control ring, is
// hostile input like any other: answered with nothing, or the device asks
// for a reset; it never panics and the data queues keep running.
func TestControlQueueHostileChains(t *testing.T) {
	r := newMQRig(t, FeatMQ|FeatCtrlVQ)
	ctrl := r.drv[2*mqPairs]
	_, err := ctrl.AddChain([][]byte{{ctrlClassMQ, ctrlMQPairsSet, 2, 0}}, nil) // no ack byte
	require.NoError(t, err)
	kick(r.bells[2*mqPairs])
	waitFor(t, "the chain back", func() bool {
		u, ok, err := ctrl.PopUsed()
		require.NoError(t, err)
		if ok {
			require.Zero(t, u.Len)
		}
		return ok
	})
	require.Equal(t, []bool{true, false, false}, r.enabledQueues(), "a command that cannot be acked is not run")

	require.NoError(t, ctrl.SetAvailIdx(ctrl.AvailIdx()+1000))
	kick(r.bells[2*mqPairs])
	waitFor(t, "the broken control queue counted", func() bool { return r.dev.Stats.BrokenQueues.Load() == 1 })
	require.Contains(t, r.dev.DebugState(), "control:")
}

// FuzzControlQueue feeds the control queue what a hostile driver may
// queue: commands of any class, length and data, chains without room for
// the ack, indirect chains, raw descriptors and avail indices out of
// range. The device must never panic, answer each chain with at most the
// one ack byte (VIRTIO_NET_OK or _ERR), keep the pairs in use within
// 1..max with exactly their host queues on, and stop at a broken ring.
func FuzzControlQueue(f *testing.F) {
	f.Add([]byte{0, 4, 4, 0, 2, 0, 1, 1, 0, 3})                      // VQ_PAIRS_SET 2, a one-byte ack buffer, direct
	f.Add([]byte{0, 4, 4, 0, 9, 0, 1, 0, 4, 4, 0, 1, 0, 0, 3})       // 9 (refused), then 1 without an ack byte
	f.Add([]byte{1, 3, 4, 0, 3, 0, 2, 1, 1, 3, 2, 0xff, 0xff, 3})    // indirect, then a raw descriptor
	f.Add([]byte{0, 2, 0, 1, 1, 3, 3, 0x10, 0x00, 3, 0, 4, 4, 0, 3}) // a bad avail idx
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzinput.New(data)
		var models []nic.Model
		var sw []*switchModel
		for range mqPairs {
			m := &switchModel{}
			sw, models = append(sw, m), append(models, m)
		}
		n, err := New(Config{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Models: models, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		d, err := queuetest.New(queuetest.Config{Size: 16, ChunkSize: 256, GPA: 0x10000, EventIdx: true, Indirect: true})
		require.NoError(t, err)
		q := queue.New(16)
		q.SetEventIdx(true)
		q.SetIndirect(true)
		require.NoError(t, d.Configure(q))
		var irq countIRQ
		resets := 0
		c, err := newCtrl(n, d.Mem, &pcitransport.ActiveQueue{Index: 2 * mqPairs, Queue: q, Interrupt: &irq, Doorbell: -1},
			FeatMQ|FeatCtrlVQ, mqPairs, func() { resets++ })
		require.NoError(t, err)
		defer unix.Close(c.stopFD)
		for ops := 0; !in.Empty() && ops < 64; ops++ {
			switch in.Byte() % 5 {
			case 0, 1: // a command: readable bytes, 0-2 writable buffers
				readable := [][]byte{in.Bytes(int(in.Byte() % 80))}
				var writable []uint32
				for range in.Byte() % 3 {
					writable = append(writable, uint32(in.Byte()%5))
				}
				if in.Byte()&1 == 0 {
					_, _ = d.AddChain(readable, writable)
				} else {
					_, _ = d.AddIndirectChain(readable, writable)
				}
			case 2: // a raw descriptor made available
				i := in.U16() % 16
				_ = d.WriteDesc(i, queuetest.Desc{Addr: uint64(in.U32()), Len: in.U32() % 512, Flags: in.U16() & 7, Next: in.U16()})
				_ = d.PushAvail(i)
			case 3:
				c.process()
			case 4:
				_ = d.SetAvailIdx(d.AvailIdx() + in.U16()%64)
			}
		}
		c.process()
		for {
			u, ok, err := d.PopUsed()
			if err != nil || !ok {
				break
			}
			require.LessOrEqual(t, u.Len, uint32(1), "at most the ack byte")
			if u.Len == 1 && len(u.Data) == 1 {
				require.Contains(t, []byte{ctrlAckOK, ctrlAckErr}, u.Data[0])
			}
		}
		k := n.ActivePairs()
		require.True(t, k >= 1 && k <= mqPairs, "pairs %d", k)
		for i, m := range sw {
			require.Equal(t, i < k, m.enabled(), "pair %d's host queue with %d pairs set", i, k)
		}
		require.LessOrEqual(t, resets, 1, "a broken control queue asks for a reset once")
	})
}
