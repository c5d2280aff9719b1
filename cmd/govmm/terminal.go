package main

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/machine"
	"github.com/govmm/govmm/vmm"
)

// attachTerminal forwards stdin to the guest's serial port when stdin is a
// terminal, in raw mode so keys reach the guest unprocessed. Ctrl-A x stops
// the VM (as in QEMU). machine returns the machine running now (nil
// between two boots of a rebooting guest). It returns a function that
// restores the terminal.
func attachTerminal(machine func() *machine.Machine) func() {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {} // not a terminal: the guest gets no input
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return func() {}
	}
	go func() {
		buf := make([]byte, 256)
		ctrlA := false
		for {
			n, err := os.Stdin.Read(buf)
			if err != nil {
				return
			}
			m := machine()
			if m == nil {
				continue // rebooting: keys typed now are lost, as on a PC
			}
			for _, b := range buf[:n] {
				if ctrlA && b == 'x' {
					m.Stop(vmm.Outcome{Kind: vmm.PowerOff, Reason: "Ctrl-A x"})
					return
				}
				ctrlA = b == 0x01
			}
			m.ConsoleInput(buf[:n])
		}
	}()
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
