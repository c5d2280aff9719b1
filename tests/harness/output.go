package harness

import (
	"regexp"
	"strconv"
	"strings"
)

// ParseValues collects "RESULT: key value..." lines into key -> rest of line (trimmed; the last one wins).
// The marker may appear mid-line so that prefixes added by consoles or loggers do not hide it.
func ParseValues(output string) map[string]string {
	values := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		i := strings.Index(line, "RESULT: ")
		if i < 0 {
			continue
		}
		fields := strings.Fields(line[i+len("RESULT: "):])
		if len(fields) == 0 {
			continue
		}
		values[fields[0]] = strings.Join(fields[1:], " ")
	}
	return values
}

// segment is one scenario's part of the test host's console output, between the driver's markers.
type segment struct {
	Output   string
	RC       int
	Secs     float64
	Ended    bool // SCENARIO-END seen
	TimedOut bool // the driver's watchdog killed the scenario
}

var (
	beginRE = regexp.MustCompile(`^SCENARIO-BEGIN (\S+)$`)
	// Unanchored: output without a final newline runs into the END marker.
	endRE = regexp.MustCompile(`SCENARIO-END (\S+) rc=(-?\d+) secs=([0-9.]+)$`)
)

// splitScenarios splits the console output of a driver run (see driver.sh) per scenario name. A scenario
// that began but never ended (the host hung or was killed) gets its partial output with Ended false.
func splitScenarios(output string) map[string]*segment {
	segs := map[string]*segment{}
	var cur *segment
	var buf strings.Builder
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := beginRE.FindStringSubmatch(line); m != nil {
			cur = &segment{}
			segs[m[1]] = cur
			buf.Reset()
			continue
		}
		if m := endRE.FindStringSubmatchIndex(line); m != nil && cur != nil {
			if m[0] > 0 {
				buf.WriteString(line[:m[0]])
			}
			cur.Output = strings.TrimSuffix(buf.String(), "\n")
			cur.Ended = true
			cur.RC, _ = strconv.Atoi(line[m[4]:m[5]])
			cur.Secs, _ = strconv.ParseFloat(line[m[6]:m[7]], 64)
			cur = nil
			continue
		}
		if cur == nil {
			continue
		}
		if strings.HasPrefix(line, "SCENARIO-TIMEOUT ") {
			cur.TimedOut = true
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		cur.Output = buf.String()
	}
	return segs
}

// cleanLine drops carriage returns and terminal escape sequences (SeaBIOS clears the screen) for logging.
var escRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[a-zA-Z]|\r`)

func cleanLine(s string) string { return escRE.ReplaceAllString(s, "") }
