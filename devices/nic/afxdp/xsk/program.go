package xsk

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// MaxQueues is the size of the program's XSKMAP: queues 0..MaxQueues-1 can
// have a socket.
const MaxQueues = 64

// AttachMode picks the XDP hook the program is attached at.
type AttachMode int

const (
	// AttachAuto tries driver (native) XDP, then generic.
	AttachAuto AttachMode = iota
	// AttachDriver is native XDP, run by the driver (XDP_FLAGS_DRV_MODE).
	AttachDriver
	// AttachGeneric is generic XDP, run on the skb (XDP_FLAGS_SKB_MODE).
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachDriver:
		return "driver"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// Program is the XDP program that steers a device queue's frames to its
// socket: bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS), so a
// queue without a socket passes its frames to the kernel's stack.
type Program struct {
	mode AttachMode
	xsks *ebpf.Map
	prog *ebpf.Program
	link link.Link
}

// Attach loads the program with a fresh XSKMAP and attaches it to ifindex
// through a BPF link, which detaches when it is closed or the process
// exits. Call it in the device's network namespace.
func Attach(ifindex int, mode AttachMode) (*Program, error) {
	var flags []link.XDPAttachFlags
	switch mode {
	case AttachAuto:
		flags = []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	case AttachDriver:
		flags = []link.XDPAttachFlags{link.XDPDriverMode}
	case AttachGeneric:
		flags = []link.XDPAttachFlags{link.XDPGenericMode}
	default:
		return nil, fmt.Errorf("xsk: unknown attach mode %d", int(mode))
	}
	p := &Program{}
	var err error
	p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name:       "xsks",
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: MaxQueues,
	})
	if err != nil {
		return nil, fmt.Errorf("xsk: create XSKMAP: %w", err)
	}
	loadMap := asm.LoadMapPtr(asm.R1, 0)
	if err := loadMap.AssociateMap(p.xsks); err != nil {
		p.Close()
		return nil, fmt.Errorf("xsk: build program: %w", err)
	}
	p.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "govmm_xsk",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			// r2 = ctx->rx_queue_index (struct xdp_md, offset 16)
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
			// r1 = &xsks
			loadMap,
			// r3 = flags: the action if xsks[r2] is empty (since 5.3)
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS
			// return bpf_redirect_map(r1, r2, r3)
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("xsk: load XDP program: %w", err)
	}
	var errs []error
	for _, f := range flags {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: f})
		if err == nil {
			p.link, p.mode = l, AttachDriver
			if f == link.XDPGenericMode {
				p.mode = AttachGeneric
			}
			return p, nil
		}
		name := "driver"
		if f == link.XDPGenericMode {
			name = "generic"
		}
		errs = append(errs, fmt.Errorf("%s mode: %w", name, err))
	}
	p.Close()
	if len(errs) == 1 {
		return nil, fmt.Errorf("xsk: attach XDP program to ifindex %d: %w", ifindex, errs[0])
	}
	return nil, fmt.Errorf("xsk: attach XDP program to ifindex %d: %w; %w", ifindex, errs[0], errs[1])
}

// Mode is the hook the program got: AttachDriver or AttachGeneric.
func (p *Program) Mode() AttachMode { return p.mode }

// Register steers queue's frames to s: xsks[queue] = s.FD(). Closing s
// removes it again.
func (p *Program) Register(queue int, s *Socket) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("xsk: queue %d outside the XSKMAP (0..%d)", queue, MaxQueues-1)
	}
	if err := p.xsks.Put(uint32(queue), uint32(s.FD())); err != nil {
		return fmt.Errorf("xsk: register socket for queue %d (XSKMAP update): %w", queue, err)
	}
	return nil
}

// Unregister sends queue's frames to the kernel's stack again.
func (p *Program) Unregister(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("xsk: queue %d outside the XSKMAP (0..%d)", queue, MaxQueues-1)
	}
	if err := p.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xsk: unregister queue %d (XSKMAP delete): %w", queue, err)
	}
	return nil
}

// Close detaches the program and closes it and its map. It is idempotent.
func (p *Program) Close() error {
	var errs []error
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("xsk: detach XDP program: %w", err))
		}
		p.link = nil
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
		p.prog = nil
	}
	if p.xsks != nil {
		errs = append(errs, p.xsks.Close())
		p.xsks = nil
	}
	return errors.Join(errs...)
}
