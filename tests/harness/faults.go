package harness

import (
	"os"
	"regexp"
	"strings"
)

// faultRE matches a kernel's own report that something broke: a panic, an
// oops, a BUG, a lockup, an RCU stall or a hung task. A healthy run prints
// none of these, so one such line is a failure, not noise to retry away.
var faultRE = regexp.MustCompile(`Kernel panic|Oops|BUG:|soft lockup|hard LOCKUP|rcu.{0,40}stall|hung_task|blocked for more than [0-9]+ seconds`)

// HostKmsgPrefix marks the test host's own kernel messages in the console
// stream: its init follows /dev/kmsg and prints errors and faults with it,
// while the L1 kernel console itself goes to a second serial port (a file
// next to the serial log). Unprefixed lines come from the scenario, that
// is from a guest console or the scripts.
const HostKmsgPrefix = "L1-KMSG: "

// scanFaults returns the fault lines of a scenario's output: guest for the
// lines the scenario printed (its VMM's guest console), host for the test
// host kernel's.
func scanFaults(output string) (guest, host []string) {
	for _, line := range strings.Split(output, "\n") {
		if !faultRE.MatchString(line) {
			continue
		}
		if strings.Contains(line, HostKmsgPrefix) {
			host = append(host, strings.TrimSpace(line))
		} else {
			guest = append(guest, strings.TrimSpace(line))
		}
	}
	return guest, host
}

// hostKernelFaults reads the fault lines of the test host's kernel console
// log (the second serial port): after a hang, the one place where an L1
// soft lockup or panic is still visible.
func hostKernelFaults(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines, _ := scanFaults(cleanLine(string(b))) // the file has no prefix
	for i := range lines {
		lines[i] = HostKmsgPrefix + lines[i]
	}
	return lines
}

// quote joins up to five fault lines for a failure message.
func quote(lines []string) string {
	const most = 5
	s := strings.Join(lines[:min(len(lines), most)], "\n\t")
	if len(lines) > most {
		s += "\n\t..."
	}
	return "\n\t" + s
}
