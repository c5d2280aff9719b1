package queue_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/devices/virtio/queue"
	"github.com/govmm/govmm/devices/virtio/queue/queuetest"
)

// TestConcurrentDriverDevice runs a driver goroutine and a device goroutine
// against the same guest memory, with kick and interrupt channels standing
// in for ioeventfd and irqfd. A lost notification in either direction
// deadlocks and trips the timeout; -race checks the barriers' happens-before
// edges (every shared plain access is ordered by an idx load/store).
func TestConcurrentDriverDevice(t *testing.T) {
	for _, tc := range []struct {
		size     uint16
		eventIdx bool
		indirect bool
	}{
		{4, false, false}, {4, true, false}, {64, true, false}, {64, false, true}, {256, true, true},
	} {
		t.Run(fmt.Sprintf("size%d/eventidx=%v/indirect=%v", tc.size, tc.eventIdx, tc.indirect), func(t *testing.T) {
			runConcurrent(t, tc.size, tc.eventIdx, tc.indirect)
		})
	}
}

func runConcurrent(t *testing.T, size uint16, eventIdx, indirect bool) {
	const total = 20000
	q, d := setup(t, queuetest.Config{Size: size, EventIdx: eventIdx, Indirect: indirect, ChunkSize: 64})
	kick := make(chan struct{}, 1) // ioeventfd
	irq := make(chan struct{}, 1)  // irqfd
	done := make(chan struct{})
	devErr := make(chan error, 1)
	signal := func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}

	// Device: drain with kicks disabled, then re-enable and re-check before
	// sleeping (the pattern EnableNotification's return value exists for).
	go func() {
		devErr <- func() error {
			var c queue.Chain
			buf := make([]byte, 8)
			for {
				if err := q.DisableNotification(d.Mem); err != nil {
					return err
				}
				for {
					ok, err := q.PopInto(d.Mem, &c)
					if err != nil {
						return err
					}
					if !ok {
						break
					}
					if c.ReadAt(buf, 0) != 8 {
						return errors.New("short readable part")
					}
					binary.LittleEndian.PutUint64(buf, ^binary.LittleEndian.Uint64(buf))
					if c.WriteAt(buf, 0) != 8 {
						return errors.New("short writable part")
					}
					if err := q.PutUsed(d.Mem, c.Head, 8); err != nil {
						return err
					}
				}
				if err := q.PublishUsed(d.Mem); err != nil {
					return err
				}
				if n, err := q.NeedsNotification(d.Mem); err != nil {
					return err
				} else if n {
					signal(irq)
				}
				pending, err := q.EnableNotification(d.Mem)
				if err != nil {
					return err
				}
				if pending {
					continue
				}
				select {
				case <-kick:
				case <-done:
					return nil
				}
			}
		}()
	}()

	// Driver.
	add := d.AddChain
	if indirect {
		add = d.AddIndirectChain
	}
	var sent, recv uint64
	timeout := time.After(20 * time.Second)
	for recv < total {
		for sent < total {
			var p [8]byte
			binary.LittleEndian.PutUint64(p[:], sent)
			if _, err := add([][]byte{p[:]}, []uint32{8}); errors.Is(err, queuetest.ErrNoSpace) {
				break
			} else {
				require.NoError(t, err)
			}
			sent++
			if sent%3 == 0 { // kick in small batches
				k, err := d.NeedsKick()
				require.NoError(t, err)
				if k {
					signal(kick)
				}
			}
		}
		k, err := d.NeedsKick()
		require.NoError(t, err)
		if k {
			signal(kick)
		}
		got := false
		require.NoError(t, d.DisableInterrupts())
		for {
			u, ok, err := d.PopUsed()
			require.NoError(t, err)
			if !ok {
				break
			}
			require.EqualValues(t, 8, u.Len)
			require.Equal(t, ^recv, binary.LittleEndian.Uint64(u.Data), "in order, transformed")
			recv++
			got = true
		}
		if got {
			continue
		}
		// Nothing used: ask for an interrupt at the next used element and
		// re-check before sleeping (virtqueue_enable_cb + poll).
		pending, err := d.EnableInterrupts()
		require.NoError(t, err)
		if pending {
			continue
		}
		select {
		case <-irq:
		case <-timeout:
			t.Fatalf("stalled: sent %d, received %d (lost notification)", sent, recv)
		}
	}
	close(done)
	require.NoError(t, <-devErr)
	require.Zero(t, q.InFlight())
}
