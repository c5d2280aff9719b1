package harness

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A scenario that timed out with a network guest leaves two views of the
// same device: the guest's (HEARTBEAT lines every 10 s: packets and the
// interrupts it took per virtqueue, from /proc/interrupts) and govmm's (the
// SIGUSR1 state dump the driver asks for at the timeout: ring indices and
// the interrupts it sent per queue). StallVerdict sets them side by side.

type heartbeat struct {
	rxPackets, txPackets int64
	rxIRQs, txIRQs       int64 // summed over the virtio input/output vectors
}

var (
	heartbeatRE = regexp.MustCompile(`HEARTBEAT rx_packets (\d+) tx_packets (\d+)(?: irqs(.*))?`)
	dumpRE      = regexp.MustCompile(`^\s*(rx|tx): (.*?); interrupts sent (\d+)`)
	ringRE      = regexp.MustCompile(`avail\.idx=(\d+) used\.idx=(\d+)`)
	// vcpuRE: govmm's dump of one vCPU (exits, last exit, where it is).
	vcpuRE = regexp.MustCompile(`(vcpu\d+): exits (\d+), last (\S+); (?:rip=(0x[0-9a-f]+))?`)
	// progressRE: the guest's own progress lines (init markers, results).
	progressRE = regexp.MustCompile(`(GOVMM-GUEST|RESULT|HOSTILE|LIFE): .*`)
)

// vcpuSummary gives the vCPU lines of the last state dump, short: where
// a guest that stopped printing was.
func vcpuSummary(output string) string {
	last := map[string]string{}
	var order []string
	for _, line := range strings.Split(output, "\n") {
		m := vcpuRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, seen := last[m[1]]; !seen {
			order = append(order, m[1])
		}
		v := fmt.Sprintf("%s %s exits, last %s", m[1], m[2], m[3])
		if m[4] != "" {
			v += " at rip " + m[4]
		}
		last[m[1]] = v
	}
	var out []string
	for _, id := range order {
		out = append(out, last[id])
	}
	return strings.Join(out, ", ")
}

// lastProgress returns the guest's last progress line.
func lastProgress(output string) string {
	p := ""
	for _, line := range strings.Split(output, "\n") {
		if m := progressRE.FindString(line); m != "" {
			p = strings.TrimSpace(m)
		}
	}
	return p
}

func parseHeartbeats(output string) []heartbeat {
	var out []heartbeat
	for _, line := range strings.Split(output, "\n") {
		m := heartbeatRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		h := heartbeat{}
		h.rxPackets, _ = strconv.ParseInt(m[1], 10, 64)
		h.txPackets, _ = strconv.ParseInt(m[2], 10, 64)
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch {
			case strings.Contains(f[i], "input"):
				h.rxIRQs += n
			case strings.Contains(f[i], "output"):
				h.txIRQs += n
			}
		}
		out = append(out, h)
	}
	return out
}

// queueDump is one queue's line of govmm's last state dump.
type queueDump struct {
	ok          bool
	sent        int64
	avail, used int64 // the driver-visible ring indices; -1 if unreadable
	state       string
}

func parseDump(output string) (rx, tx queueDump) {
	for _, line := range strings.Split(output, "\n") {
		m := dumpRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		q := queueDump{ok: true, avail: -1, used: -1, state: m[2]}
		q.sent, _ = strconv.ParseInt(m[3], 10, 64)
		if r := ringRE.FindStringSubmatch(m[2]); r != nil {
			q.avail, _ = strconv.ParseInt(r[1], 10, 64)
			q.used, _ = strconv.ParseInt(r[2], 10, 64)
		}
		if m[1] == "rx" {
			rx = q
		} else {
			tx = q
		}
	}
	return rx, tx
}

// StallVerdict reads a timed-out network scenario's output and says which
// side stopped: the guest (no heartbeat), govmm's interrupts not reaching
// the guest, or a device that has the guest's buffers and publishes
// nothing. It returns "" when the output holds neither view.
func StallVerdict(output string) string {
	v := stallVerdict(output)
	if v == "" {
		return ""
	}
	if p := lastProgress(output); p != "" {
		v += fmt.Sprintf("; the guest's last progress line: %q", p)
	}
	if c := vcpuSummary(output); c != "" {
		v += "; " + c
	}
	return v
}

func stallVerdict(output string) string {
	hbs := parseHeartbeats(output)
	rx, tx := parseDump(output)
	if len(hbs) == 0 && !rx.ok {
		return ""
	}
	if len(hbs) == 0 {
		// Not every scenario prints heartbeats; the progress line says how
		// far it got.
		return "no guest heartbeat (govmm's device: " +
			fmt.Sprintf("rx interrupts sent %d, tx %d)", rx.sent, tx.sent)
	}
	last := hbs[len(hbs)-1]
	counts := fmt.Sprintf("guest: rx_packets %d tx_packets %d, took rx/tx interrupts %d/%d",
		last.rxPackets, last.txPackets, last.rxIRQs, last.txIRQs)
	if !rx.ok {
		return "no govmm state dump (govmm had exited or did not answer SIGUSR1); " + counts
	}
	counts += fmt.Sprintf("; govmm: sent rx/tx interrupts %d/%d; rx ring [%s]; tx ring [%s]", rx.sent, tx.sent, rx.state, tx.state)
	if len(hbs) < 2 || last != hbs[len(hbs)-2] {
		return "the guest's network still moved between its last two heartbeats: slow, not stalled; " + counts
	}
	// Frozen for a heartbeat period. An interrupt that arrives while the
	// last is still pending merges with it, so the guest may count fewer
	// than were sent under load; once traffic stops, every one sent after
	// the guest's last count must have been taken.
	switch {
	case rx.sent > last.rxIRQs || tx.sent > last.txIRQs:
		return "interrupt lost or still pending between govmm and the guest (govmm sent more than the guest took, and nothing moves); " + counts
	case tx.used >= 0 && tx.avail >= 0 && tx.used != tx.avail:
		// Posted rx buffers are normal on an idle link; posted frames that
		// are never completed are not.
		return fmt.Sprintf("device stuck: %d frames the guest posted for transmit were never completed, and every interrupt arrived; ",
			uint16(tx.avail-tx.used)) + counts
	}
	return "guest stuck: every interrupt govmm sent arrived and nothing moves; " + counts
}
