// Package vmm is the platform: a KVM virtual machine with guest RAM, vCPUs,
// the port-I/O and MMIO buses, the PCI host bridge, interrupt routing, ACPI
// tables and the legacy devices a stock Linux needs to boot and stop. It is
// the bottom layer: device models build on it, and it takes them through
// the Device interface without importing any (package machine chooses and
// wires them).
package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/govmm/govmm/vmm/boot"
	"github.com/govmm/govmm/vmm/bus"
	"github.com/govmm/govmm/vmm/guestmem"
	"github.com/govmm/govmm/vmm/irq"
	"github.com/govmm/govmm/vmm/kvm"
	"github.com/govmm/govmm/vmm/layout"
	"github.com/govmm/govmm/vmm/pci"
)

// Config describes a machine.
type Config struct {
	KVMPath  string       // default /dev/kvm
	Kernel   *boot.Kernel // parsed bzImage; New loads it into guest RAM and keeps no reference
	Initrd   []byte       // concatenated initramfs archives (may be empty); likewise
	Cmdline  string       // kernel command line
	MemBytes uint64       // guest RAM
	CPUs     int          // vCPUs
	Console  io.Writer    // guest serial output (COM1)
	// Devices are attached in order after the platform's own devices
	// (Device.Attach); the VM closes them when it closes.
	Devices []Device
	// Placement pins vCPU threads to host CPUs and the rest off them
	// (--cpu-pin; zero value: no pinning).
	Placement Placement
	// ScratchBytes of host-only memory follow guest RAM in its mapping
	// (guestmem.NewWithScratch), for devices that register guest RAM with
	// the kernel and need their own buffers in the same range.
	ScratchBytes uint64
	// HugePages backs guest RAM with 2 MiB hugetlb pages (--mem-hugepages).
	HugePages bool
	// THP asks for transparent hugepages for guest RAM (--mem-thp).
	THP bool
	// NoCoalescedMMIO keeps devices from having KVM queue their register
	// writes (Platform.CoalesceMMIO is nil): every write exits (A/B runs).
	NoCoalescedMMIO bool
	Logger          *slog.Logger
}

// VM is a created virtual machine ready to Run.
type VM struct {
	cfg     Config
	log     *slog.Logger
	sys     *kvm.System
	vm      *kvm.VM
	Mem     *guestmem.Memory
	PIO     *bus.Bus
	MMIO    *bus.Bus
	PCI     *pci.Bridge
	IRQ     *irq.Router
	vcpus   []*kvm.VCPU
	serial  serialPort
	devices []Device // attached (Attach called), in order
	entry   boot.Entry

	stopOnce sync.Once
	stopped  chan struct{}
	outcome  Outcome
	mu       sync.Mutex // guards threads (tids of running vCPUs)
	threads  map[int]int
	probes   []*vcpuProbe // by vCPU index: exit counts, state dumps

	// coalescedPage is where each vCPU's mapping holds KVM's coalesced
	// MMIO ring (0: none); coalescedMu lets one vCPU at a time replay it.
	coalescedPage int
	coalescedMu   sync.Mutex
}

// Outcome is how a guest run ended.
type Outcome struct {
	Kind   OutcomeKind
	Reason string // for failures: one line saying why
}

// OutcomeKind classifies the end of a run.
type OutcomeKind int

// Outcomes. PowerOff and Reset are normal ends (exit status 0 for govmm run).
const (
	PowerOff OutcomeKind = iota
	Reset
	Failure
)

func (k OutcomeKind) String() string {
	return [...]string{"power-off", "reset", "failure"}[k]
}

// New creates the VM, loads the kernel and prepares every vCPU. Nothing runs
// until Run.
func New(cfg Config) (_ *VM, err error) {
	if cfg.KVMPath == "" {
		cfg.KVMPath = "/dev/kvm"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.CPUs < 1 || cfg.CPUs > layout.MaxCPUs {
		return nil, fmt.Errorf("--cpus %d: must be between 1 and %d", cfg.CPUs, layout.MaxCPUs)
	}
	if err := checkMemSize(cfg.MemBytes); err != nil {
		return nil, err
	}
	if cfg.Kernel == nil {
		return nil, errors.New("no kernel")
	}
	cfg.Devices = append([]Device(nil), cfg.Devices...)
	m := &VM{cfg: cfg, log: cfg.Logger, stopped: make(chan struct{}), threads: map[int]int{}}
	defer func() {
		// Release whatever was acquired before the failure.
		if err != nil {
			m.Close()
		}
	}()
	if m.sys, err = kvm.Open(cfg.KVMPath); err != nil {
		return nil, err
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if !cfg.NoCoalescedMMIO {
		m.coalescedPage = m.sys.CoalescedMMIOPage()
	}
	if err = m.vm.SetupX86(layout.KVMTSSAddr, layout.KVMIdentityMap); err != nil {
		return nil, err
	}
	if m.Mem, err = guestmem.Map(ramLayout(cfg.MemBytes), guestmem.Options{Scratch: cfg.ScratchBytes, HugePages: cfg.HugePages, THP: cfg.THP}); err != nil {
		return nil, err
	}
	for i, r := range m.Mem.Regions() {
		if err = m.vm.SetMemory(uint32(i), r.GPA, r.Host); err != nil {
			return nil, err
		}
	}
	if m.IRQ, err = irq.NewRouter(m.vm); err != nil {
		return nil, err
	}
	m.PIO, m.MMIO = bus.New("pio"), bus.New("mmio")
	if err = m.addPlatformDevices(); err != nil {
		return nil, err
	}
	if err = m.attachDevices(); err != nil {
		return nil, err
	}
	rsdp, err := m.writeACPI()
	if err != nil {
		return nil, err
	}
	m.entry, err = boot.Load(m.Mem, cfg.Kernel, boot.Params{
		Cmdline: cfg.Cmdline,
		Initrd:  cfg.Initrd,
		E820:    e820Map(m.Mem),
		RSDP:    rsdp,
	})
	if err != nil {
		return nil, err
	}
	// The images now live in guest RAM; holding them as well would cost
	// their size (and the GC headroom over it) for the guest's whole life.
	m.cfg.Kernel, m.cfg.Initrd, m.cfg.Devices = nil, nil, nil
	if err = m.createVCPUs(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *VM) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	tscDeadline := m.sys.TSCDeadlineTimer()
	for id := 0; id < m.cfg.CPUs; id++ {
		c, err := m.vm.CreateVCPU(id)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, c)
		m.probes = append(m.probes, newVCPUProbe())
		if err := c.SetCPUID(cpuidFor(supported, id, m.cfg.CPUs, tscDeadline)); err != nil {
			return err
		}
		if err := c.SetupLAPIC(); err != nil {
			return err
		}
	}
	// Only the boot CPU gets registers; the others wait in the in-kernel
	// LAPIC for the guest's INIT/SIPI, as on real hardware.
	return boot.SetupBootCPU(m.vcpus[0].FD(), m.entry)
}

// Close releases everything New acquired. Safe on a partial VM.
func (m *VM) Close() error {
	errs := []error{m.closeDevices()}
	for _, c := range m.vcpus {
		errs = append(errs, c.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.Mem != nil {
		errs = append(errs, m.Mem.Close())
		m.Mem = nil
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	return errors.Join(errs...)
}
