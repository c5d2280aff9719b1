// Package xsk is a small AF_XDP socket library for the AF_XDP NIC model: a
// Socket whose UMEM is memory the caller already owns (the guest's RAM, as
// one host mapping), its four rings, and the XDP Program that steers a
// device queue's frames to it. It is pure Go: the program is assembled with
// github.com/cilium/ebpf/asm, so no C compiler or object file is involved.
//
// # UMEM and unaligned chunks
//
// The UMEM is registered with XDP_UMEM_UNALIGNED_CHUNK_FLAG and a UMEM
// headroom of Config.Headroom, normally 0. In unaligned mode a chunk may start at any byte offset:
// the fill-ring address the caller gives is where the kernel's chunk
// starts, and the chunk is the ChunkSize bytes from there. It must lie
// wholly inside the UMEM (addr+ChunkSize <= len(UMEM)); an address that
// does not is consumed from the fill ring and silently discarded, counted
// in no XDP_STATISTICS field. So the guest's own receive buffers can be
// handed to the kernel where they are, not where a fixed chunk grid says.
//
// # The 256-byte XDP headroom
//
// The kernel keeps XDP_PACKET_HEADROOM (256, [XDPHeadroom]) bytes in front
// of every received frame for the XDP program, after the UMEM headroom: a
// frame filled at address A lands at A+Headroom+256. In unaligned mode the
// rx descriptor carries that offset in its top 16 bits
// (addr = A | (Headroom+256)<<48); [Socket.Receive] folds it in, so a
// [Desc]'s Addr is the first byte of the frame. The largest frame a chunk
// holds is ChunkSize-Headroom-256; a longer one is dropped
// (Stats.RxDropped). In copy mode the kernel copies only the
// frame (and any XDP metadata the program adds in front of it with
// bpf_xdp_adjust_meta, which ours does not), so the bytes before it are
// not written; a zero-copy driver DMAs the frame to the same place.
//
// Transmit has no headroom: a tx descriptor's address is the frame's first
// byte, anywhere in the UMEM, its length 1..ChunkSize, and the frame wholly
// inside the UMEM. The kernel does not send an invalid descriptor and
// counts it in Stats.TxInvalidDescs; whether it then appears on the
// completion ring depends on the kernel (6.18 completes it, older kernels
// do not), so callers should not submit one. [Socket.Completed] returns
// addresses exactly as submitted, working around copy-mode kernels that
// clear bit 0 of an odd address on its way to the completion ring.
//
// # Need wakeup
//
// The socket is bound with XDP_USE_NEED_WAKEUP: the kernel sets
// XDP_RING_NEED_WAKEUP in a ring's flags when it will not look at that
// ring again until told to, and the process then kicks it with a syscall
// (sendto for tx, recvfrom or poll for rx) instead of making one per batch.
// [Socket.Transmit] and [Socket.WakeRx] test the flag and kick only when it
// is set.
//
// # Copy and zero-copy
//
// In zero-copy mode (XDP_ZEROCOPY, drivers with AF_XDP support) the NIC
// DMAs frames straight into and out of the UMEM. In copy mode (XDP_COPY,
// any device, veth included) the kernel copies each received frame from its
// own buffer into the UMEM after the XDP program redirects it, and builds
// an skb copied from the UMEM for each transmitted frame, inside the sendto
// that kicks tx (copy-mode tx runs only then, at most 32 frames per call;
// Transmit repeats the call while it makes progress). The ring protocol is
// the same in both; [Socket.ZeroCopy] says which the kernel chose.
//
// # Concurrency
//
// The rings are single-producer, single-consumer. Fill, FillFree, Receive
// and WakeRx form the rx side and Transmit, Completed and KickTx the tx
// side: each side must be used by one goroutine at a time, the two sides
// may run in parallel. Close must not run concurrently with either.
package xsk
