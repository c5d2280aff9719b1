package afxdp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Virtio feature bits that set the size of Linux virtio_net's receive
// header (virtio 1.2 §5.1.3, §5.1.6; virtnet_probe).
const (
	virtioNetFMrgRxbuf     = 15
	virtioFVersion1        = 32
	virtioNetFHashReport   = 57
	virtioFeatureBitsKnown = 64 // later bits (UDP tunnel GSO, …) grow the header further
)

// driverHeader returns how many bytes in front of each received frame the
// driver of ifname lets its NIC write when an AF_XDP socket is bound
// zero-copy (zerocopy.XDPRules.DriverHeader), read from sysfs (root is
// "/sys" but for tests). Linux's virtio_net posts each chunk from
// data − hdr_len, so the device writes its virtio_net_hdr there; the
// descriptor-based NICs (Intel's, Mellanox's) write only at the data
// address. A virtio_net whose header size cannot be told is reported as
// too large for any guest header slot, which keeps every buffer on the copy
// lane: safe, and counted.
func driverHeader(root, ifname string) (uint32, string, error) {
	dev := filepath.Join(root, "class", "net", ifname, "device")
	drv, err := os.Readlink(filepath.Join(dev, "driver"))
	if err != nil {
		return 0, "", nil // no device driver (veth, a tap): copy mode only anyway
	}
	name := filepath.Base(drv)
	if name != "virtio_net" {
		return 0, name, nil
	}
	b, err := os.ReadFile(filepath.Join(dev, "features"))
	if err != nil {
		return 0, name, fmt.Errorf("virtio_net features: %w", err)
	}
	f := strings.TrimSpace(string(b))
	has := func(bit int) bool { return bit < len(f) && f[bit] == '1' }
	for bit := virtioFeatureBitsKnown; bit < len(f); bit++ {
		if has(bit) {
			return ^uint32(0), name, nil
		}
	}
	switch {
	case has(virtioNetFHashReport):
		return 20, name, nil // struct virtio_net_hdr_v1_hash
	case has(virtioFVersion1) || has(virtioNetFMrgRxbuf):
		return 12, name, nil // struct virtio_net_hdr_mrg_rxbuf
	}
	return 10, name, nil // struct virtio_net_hdr
}
