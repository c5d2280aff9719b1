package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/devices/virtionet"
	"github.com/govmm/govmm/machine"
	"github.com/govmm/govmm/vmm"
	"github.com/govmm/govmm/vmm/boot"
	"github.com/govmm/govmm/vmm/legacy"
	"github.com/govmm/govmm/vmm/seccomp"
)

// RunCmd is `govmm run`.
type RunCmd struct {
	Kernel      string   `help:"Linux bzImage to boot." required:"" type:"path" placeholder:"PATH"`
	Initrd      []string `sep:"none" help:"Initramfs (cpio, optionally compressed). Repeat to append archives; the kernel unpacks them in order." type:"path" placeholder:"PATH"`
	Cmdline     string   `help:"Kernel command line." default:"console=ttyS0 panic=-1" placeholder:"STR"`
	Mem         string   `help:"Guest RAM: a number with an optional K, M or G suffix (default unit MiB)." default:"512M" placeholder:"SIZE"`
	CPUs        int      `help:"Number of vCPUs (1-32)." default:"1" name:"cpus" placeholder:"N"`
	Net         []string `sep:"none" help:"Network interface: tap=NAME|xdp=IFNAME[,queue=N][,mode=auto|zerocopy|copy][,mac=MAC][,mtu=N][,mrg-rxbuf=on|off][,offloads=on|off][,path=zerocopy|copy][,queues=N][,pin-limit=SIZE][,tx-poll=DURATION][,tx-linger=DURATION][,rx-coalesce=DURATION][,model=virtio|ixgbe][,rx-bytes=RATE][,tx-bytes=RATE][,rx-ops=RATE][,tx-ops=RATE][,rx-burst=N][,tx-burst=N]. Repeatable. The tap is created if missing (and removed at exit). path=zerocopy (default): guest rx buffers are registered with an emulated Intel 82599 that writes frames straight into them; pin-limit caps the guest memory registered with it (default 1M, per queue pair). queues=N: N virtio-net queue pairs (VIRTIO_NET_F_MQ, the control queue), each on its own queue of a multi-queue tap with its own zero-copy model; the guest sets how many it uses (ethtool -L). path=copy: the plain tap model. tx-poll (default 0, off): how long virtio-net keeps polling the transmit ring with the guest's kicks off after its last frame. tx-linger (default 50us, 0 none): the one look after the last frame, which also defers its completion interrupt. rx-coalesce (default 0, off): the least time between two receive interrupts under load. xdp=IFNAME: virtio-net on an AF_XDP socket on the host interface's receive queue N (default 0) with guest RAM as its UMEM: the host NIC writes received frames straight into the guest's buffers (mode=zerocopy needs driver support, copy has the kernel copy, auto picks); it pins all guest RAM (RLIMIT_MEMLOCK). offloads=off: virtio-net offers no checksum or segmentation offload (default on: whatever the model can honour). model=ixgbe: the guest sees the emulated 82599 itself (its ixgbe driver binds) instead of virtio-net. rx-/tx-bytes and -ops: token-bucket rate limits per direction, bytes or frames per second (k, M, G: powers of 1000), refilled every 100ms; rx-/tx-burst: extra bytes allowed once, at the start (as Firecracker's one-time burst). Frames over a transmit limit wait in the guest's ring; over a receive limit, no buffers are lent until the bucket refills." placeholder:"SPEC"`
	Stats       string   `help:"Write per-NIC statistics as JSON to FILE every second and at exit (rx/tx frames, zero-copy vs copied, pinned bytes)." placeholder:"FILE"`
	KVM         string   `help:"KVM device." default:"/dev/kvm" name:"kvm" placeholder:"PATH"`
	NoReboot    bool     `help:"Exit when the guest resets instead of booting it again." name:"no-reboot"`
	HugePages   bool     `help:"Back guest RAM with 2 MiB hugepages from the host's pool (/proc/sys/vm/nr_hugepages): a zero-copy AF_XDP NIC can then DMA into any guest buffer (a 2 KiB chunk crosses a 4 KiB page, rarely a 2 MiB one)." name:"mem-hugepages"`
	THP         bool     `help:"Ask for transparent hugepages for guest RAM (2 MiB-aligned, MADV_HUGEPAGE), as QEMU does: fewer nested page faults; advice the host may ignore." name:"mem-thp"`
	NoCoalesced bool     `help:"Have every device register write exit to govmm: no KVM coalesced MMIO (on by default for the guest-visible 82599's receive tail registers), for A/B runs." name:"no-coalesced-mmio"`
	CPUPin      string   `help:"Pin vCPU threads to host CPUs and keep govmm's other threads off them: off, auto (the last CPUs, one per vCPU; the other threads are moved off them only if a CPU is left), or a list (one CPU per vCPU, e.g. 3,5)." default:"off" name:"cpu-pin" env:"GOVMM_CPU_PIN" placeholder:"off|auto|LIST"`
	SchedBatch  bool     `help:"Run govmm's threads other than the vCPUs' as SCHED_BATCH, so that a device thread's wake-up never preempts a running vCPU (it waits for the vCPU to block or for the scheduler tick). For hosts where vCPUs share CPUs with govmm's other threads." name:"sched-batch" env:"GOVMM_SCHED_BATCH"`
	CPUPinScope string   `help:"With --cpu-pin, which other threads are kept off the vCPUs' CPUs: pollers (the virtio-net queue workers, whose poll timers would interrupt a vCPU), all (every other thread), vcpus (none)." default:"pollers" name:"cpu-pin-scope" env:"GOVMM_CPU_PIN_SCOPE" placeholder:"pollers|all|vcpus"`
	Seccomp     string   `help:"System-call filter once the machine is built: on (a call off govmm's allow-list stops it with SIGSYS), log (allowed, and logged by the kernel: dmesg audit type=1326; to find what a new code path needs), off." default:"on" name:"seccomp" placeholder:"on|log|off"`
	Profile     string   `help:"Write a CPU profile of govmm itself (Go pprof format, all boots) to FILE at exit: see where the VMM spends its time under load." name:"cpuprofile" type:"path" placeholder:"FILE"`
}

// Run boots the guest and returns when it powers off (nil), or fails
// (error). A guest that resets is booted again, as a PC reboots, unless
// --no-reboot: a new machine with the same configuration, fresh RAM and
// devices, attached to the same taps.
func (r *RunCmd) Run() error {
	cfg, err := r.config()
	if err != nil {
		return usageError{err}
	}
	filter, err := seccomp.ParseMode(r.Seccomp)
	if err != nil {
		return usageError{err}
	}
	// The guest console is written from the vCPU thread, byte by byte: a
	// ring and a drainer keep a slow stdout reader from stalling the guest.
	// Flushed before govmm's own last line, so that line comes after it.
	console := legacy.NewConsoleBuffer(os.Stdout, 0)
	cfg.Console = console
	defer func() {
		if err := console.Close(5 * time.Second); err != nil {
			slog.Warn("guest console", "err", err)
		}
	}()
	if r.Profile != "" {
		stop, err := startCPUProfile(r.Profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The session outlives each boot: signals, the terminal and the stats
	// file follow whichever machine runs now.
	var cur atomic.Pointer[machine.Machine]
	var stoppedBy atomic.Value // unix.Signal
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGINT, unix.SIGTERM, unix.SIGUSR1)
	defer signal.Stop(sig)
	go func() {
		for s := range sig {
			m := cur.Load()
			if s == unix.SIGUSR1 {
				// A state dump for whoever debugs a stalled guest network.
				if m != nil {
					fmt.Fprintf(os.Stderr, "govmm: state dump (SIGUSR1)\n%s%s", m.DebugVCPUs(time.Second), m.DebugState())
				}
				continue
			}
			stoppedBy.Store(s.(unix.Signal))
			if m != nil {
				m.Stop(vmm.Outcome{Kind: vmm.Failure, Reason: "stopped by signal " + s.String()})
			}
		}
	}()
	restore := attachTerminal(func() *machine.Machine { return cur.Load() })
	defer restore()

	for boot := 1; ; boot++ {
		if boot > 1 {
			if err := r.loadImages(&cfg); err != nil {
				machine.ReleaseTaps(cfg)
				return err
			}
		}
		m, err := machine.New(cfg)
		cfg.Kernel, cfg.Initrd = nil, nil
		if err != nil {
			machine.ReleaseTaps(cfg)
			return err
		}
		// The boot's transient buffers (the images, read and copied into
		// guest RAM) are garbage now: give their pages back to the host
		// instead of leaving them to the scavenger.
		debug.FreeOSMemory()
		if boot == 1 {
			// Set-up is done: from here on govmm runs under the allow-list
			// (later boots build their machines under it too).
			var features []seccomp.Feature
			for _, n := range cfg.Nets {
				if n.XDP != "" {
					features = append(features, seccomp.AFXDP)
					break
				}
			}
			if err := seccomp.Install(filter, features...); err != nil {
				m.Close()
				return err
			}
		}
		cur.Store(m)
		if _, stopped := stoppedBy.Load().(unix.Signal); stopped {
			// The signal came between two boots.
			m.Stop(vmm.Outcome{Kind: vmm.Failure, Reason: "stopped by signal"})
		}
		var stats *statsWriter
		if r.Stats != "" {
			stats = startStats(r.Stats, m.Stats)
		}
		out, err := m.Run()
		if stats != nil {
			if serr := stats.Close(); serr != nil && err == nil {
				err = fmt.Errorf("--stats: %w", serr)
			}
		}
		_, stopped := stoppedBy.Load().(unix.Signal)
		reboot := err == nil && !stopped && out.Kind == vmm.Reset && !r.NoReboot
		if reboot {
			cfg = m.RebootConfig()
		}
		cur.Store(nil)
		// Everything is torn down in order: devices stopped, stats written,
		// a tap govmm created removed (kept over a reboot).
		if cerr := m.Close(); cerr != nil {
			slog.Warn("closing the machine", "err", cerr)
		}
		if s, ok := stoppedBy.Load().(unix.Signal); ok {
			return signalExit{s}
		}
		if err != nil {
			return err
		}
		if !reboot {
			slog.Info("guest ended", "outcome", out.Kind.String(), "boots", boot)
			return nil
		}
		// One line whatever the log level, like the NIC activation line.
		fmt.Fprintf(os.Stderr, "govmm: guest reset (%s): rebooting, boot %d\n", out.Reason, boot+1)
	}
}

// startCPUProfile profiles the whole process until the returned func runs.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Warn("--cpuprofile: writing the profile", "err", err)
		}
	}, nil
}

// signalExit ends govmm run after SIGINT or SIGTERM stopped the guest:
// exit status 128+signal, as a shell reports a process killed by it.
type signalExit struct{ sig unix.Signal }

func (e signalExit) Error() string { return "guest stopped by signal " + e.sig.String() }

func (r *RunCmd) config() (machine.Config, error) {
	mem, err := ParseSize(r.Mem)
	if err != nil {
		return machine.Config{}, fmt.Errorf("--mem: %w", err)
	}
	if mem == 0 {
		return machine.Config{}, errors.New("--mem must be greater than 0")
	}
	if host := hostMemory(); host != 0 && mem > host {
		return machine.Config{}, fmt.Errorf("--mem %d MiB is more than this host's %d MiB of RAM", mem>>20, host>>20)
	}
	if r.CPUs < 1 || r.CPUs > 32 {
		return machine.Config{}, fmt.Errorf("--cpus %d: must be between 1 and 32", r.CPUs)
	}
	place, err := vmm.ParsePlacement(r.CPUPin, r.CPUs)
	if err != nil {
		return machine.Config{}, err
	}
	if place.Scope, err = vmm.ParseScope(r.CPUPinScope); err != nil {
		return machine.Config{}, err
	}
	place.BatchDevices = r.SchedBatch
	var nets []machine.NetConfig
	for i, spec := range r.Net {
		nc, err := parseNetSpec(spec)
		if err != nil {
			return machine.Config{}, err
		}
		name := fmt.Sprintf("net%d", i)
		nc.OnActivate = func(model string, features uint64) {
			// One line per NIC, whatever the log level: what the guest got.
			where := "tap " + nc.Tap
			if nc.XDP != "" {
				where = fmt.Sprintf("xdp %s queue %d", nc.XDP, nc.XDPQueue)
			}
			fmt.Fprintf(os.Stderr, "govmm: %s: %s, model %s, features %s\n", name, where, model, virtionet.FeatureString(features))
		}
		nets = append(nets, nc)
	}
	cfg := machine.Config{
		Config: vmm.Config{
			KVMPath:         r.KVM,
			Cmdline:         r.Cmdline,
			MemBytes:        mem,
			HugePages:       r.HugePages,
			THP:             r.THP,
			CPUs:            r.CPUs,
			NoCoalescedMMIO: r.NoCoalesced,
			Console:         os.Stdout,
			Placement:       place,
			Logger:          slog.Default(),
		},
		Nets: nets,
	}
	if err := r.loadImages(&cfg); err != nil {
		return machine.Config{}, err
	}
	return cfg, nil
}

// loadImages reads the kernel and initramfs into cfg. It runs before every
// boot: a machine drops the images once they are in guest RAM, so govmm
// does not hold their size for the guest's life.
func (r *RunCmd) loadImages(cfg *machine.Config) error {
	kernel, err := os.ReadFile(r.Kernel)
	if err != nil {
		return fmt.Errorf("--kernel: %w", err)
	}
	parsed, err := boot.ParseBzImage(kernel)
	if err != nil {
		return fmt.Errorf("--kernel %s: %w", r.Kernel, err)
	}
	// Sized up front: growing a buffer archive by archive would leave
	// garbage of about twice the initramfs size.
	size := 0
	for _, p := range r.Initrd {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("--initrd: %w", err)
		}
		size += int(st.Size()) + 3
	}
	initrd := make([]byte, 0, size)
	for _, p := range r.Initrd {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("--initrd: %w", err)
		}
		// Each archive starts 4-byte aligned, as the kernel's unpacker expects.
		for len(initrd)%4 != 0 {
			initrd = append(initrd, 0)
		}
		initrd = append(initrd, b...)
	}
	cfg.Kernel, cfg.Initrd = parsed, initrd
	return nil
}

// ParseSize parses "512", "512M", "1G", "65536K" (a bare number is MiB).
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mult := uint64(1 << 20)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult, s = 1<<10, s[:n-1]
		case 'M':
			mult, s = 1<<20, s[:n-1]
		case 'G':
			mult, s = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (examples: 256M, 1G)", s)
	}
	if v > (1<<63)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v * mult, nil
}

// hostMemory returns MemTotal from sysinfo, or 0 if unknown.
func hostMemory() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}
