// Package virtionet is a virtio-net device (virtio 1.2 §5.1) over the
// modern PCI transport. Frames move through a nic.Model: receive buffers
// the guest posts are lent to the model, which writes frames straight into
// them; transmit frames are handed to the model as views of guest memory.
// The device itself never copies payload.
package virtionet

// Feature bits (virtio 1.2 §5.1.3, §6).
const (
	FeatCsum      = 1 << 0  // VIRTIO_NET_F_CSUM: device handles partial csum (guest → device)
	FeatGuestCsum = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: driver handles partial csum
	FeatMTU       = 1 << 3  // VIRTIO_NET_F_MTU
	FeatMAC       = 1 << 5  // VIRTIO_NET_F_MAC
	FeatGuestTSO4 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	FeatGuestTSO6 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatGuestECN  = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FeatHostTSO4  = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FeatHostTSO6  = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatHostECN   = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	FeatMrgRxbuf  = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	FeatStatus    = 1 << 16 // VIRTIO_NET_F_STATUS
	FeatCtrlVQ    = 1 << 17 // VIRTIO_NET_F_CTRL_VQ: the control queue
	FeatMQ        = 1 << 22 // VIRTIO_NET_F_MQ: more than one queue pair
	FeatIndirect  = 1 << 28 // VIRTIO_F_RING_INDIRECT_DESC
	FeatEventIdx  = 1 << 29 // VIRTIO_F_RING_EVENT_IDX
	FeatVersion1  = 1 << 32 // VIRTIO_F_VERSION_1
)

// featureNames is for the one line `govmm run` prints after negotiation.
var featureNames = []struct {
	bit  uint64
	name string
}{
	{FeatCsum, "CSUM"}, {FeatGuestCsum, "GUEST_CSUM"}, {FeatMTU, "MTU"}, {FeatMAC, "MAC"},
	{FeatGuestTSO4, "GUEST_TSO4"}, {FeatGuestTSO6, "GUEST_TSO6"}, {FeatGuestECN, "GUEST_ECN"},
	{FeatHostTSO4, "HOST_TSO4"}, {FeatHostTSO6, "HOST_TSO6"}, {FeatHostECN, "HOST_ECN"},
	{FeatMrgRxbuf, "MRG_RXBUF"}, {FeatStatus, "STATUS"}, {FeatCtrlVQ, "CTRL_VQ"}, {FeatMQ, "MQ"}, {FeatIndirect, "INDIRECT_DESC"},
	{FeatEventIdx, "EVENT_IDX"}, {FeatVersion1, "VERSION_1"},
}

// FeatureString names the set bits of f.
func FeatureString(f uint64) string {
	s := ""
	for _, n := range featureNames {
		if f&n.bit != 0 {
			if s != "" {
				s += ","
			}
			s += n.name
		}
	}
	return s
}

// hdrLen is the virtio_net_hdr size. With VERSION_1 the header always has
// num_buffers (§5.1.6: "struct virtio_net_hdr" is 12 bytes for modern
// devices, with or without MRG_RXBUF).
const hdrLen = 12

// numBuffersOff is the offset of num_buffers in the header.
const numBuffersOff = 10
