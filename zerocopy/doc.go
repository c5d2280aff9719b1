// Package zerocopy is govmm's zero-copy network path: the VMM drives an
// emulated Intel 82599 (devices/ixgbe-emu) the way a driver would, and the
// receive descriptors it posts point straight into the guest's virtio-net
// receive buffers, so the one write of a received frame (the tap's readv)
// lands in guest memory at the buffer's GPA + virtio_net_hdr length.
//
// The pieces, each usable on its own:
//
//   - NewSpace: the NIC's bus address space: guest RAM at its GPAs plus a
//     VMM-private region (PrivateBase) for the descriptor rings.
//   - Decide: headroom negotiation, per posted chain: zero-copy, zero-copy
//     with the header in its own segment, or fallback (bounce buffer and
//     copy, the 2010 RFC's second design) with a reason.
//   - PinLimit: the cap on guest memory lent to the NIC (the RFC's DoS
//     question); buffers over it stay in the guest's avail ring.
//   - Model: a nic.Model tying it together, with a Port for the host side
//     (TapPort for a Linux tap, MemPort in-process) and lock-free Stats.
//
// See README.md for the decision table and the design notes.
package zerocopy
