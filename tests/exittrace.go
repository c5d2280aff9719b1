package tests

// exitTraceScript defines tracewin, which the profile host script runs in
// the middle of an iperf3 run when TRACEWIN=1 (make experiment
// TRACE=1): for two seconds it traces, in the test host, every KVM exit
// and entry, the host's interrupt vectors, hrtimer expiries, wake-ups and
// context switches, then attributes each external-interrupt exit of the
// guest to what interrupted it (the L1 timer tick, a sleeping thread's
// hrtimer and whom it woke, a rescheduling IPI and whom it was for, a
// device interrupt) and prints the tally as "XTRACE dir: ..." lines.
//
// Order in the trace: the interrupt is taken (and traced) on the vCPU's
// CPU before KVM traces the exit it caused, so the first interrupt event
// after a kvm_entry on a CPU is the cause of that CPU's next
// "interrupt" exit.
const exitTraceScript = `
tracewin() {
	T=/sys/kernel/tracing
	[ -w $T/events/irq_vectors/enable ] || { echo "XTRACE $1: no irq_vectors tracepoints"; return 0; }
	ev="kvm/kvm_exit kvm/kvm_entry irq_vectors/local_timer_entry irq_vectors/reschedule_entry irq_vectors/call_function_entry irq_vectors/call_function_single_entry irq/irq_handler_entry timer/hrtimer_expire_entry sched/sched_wakeup sched/sched_switch"
	echo 0 >$T/tracing_on; echo 0 >$T/events/enable; echo 8192 >$T/buffer_size_kb; echo >$T/trace
	for e in $ev; do echo 1 >$T/events/$e/enable; done
	echo 1 >$T/tracing_on; sleep 2; echo 0 >$T/tracing_on
	echo 0 >$T/events/enable
	awk -v dir="$1" '` + exitTraceAwk + `' $T/trace
	echo 256 >$T/buffer_size_kb; echo >$T/trace; echo 1 >$T/events/kvm/enable; echo 1 >$T/tracing_on
}
`

const exitTraceAwk = `
function val(k,   m) { if (match($0, k "=[^ ]+")) return substr($0, RSTART + length(k) + 1, RLENGTH - length(k) - 1); return "" }
function comm(k,   s, e) { s = index($0, k "="); if (!s) return ""; s += length(k) + 1; e = index(substr($0, s), " " (k == "prev_comm" ? "prev_pid" : k == "next_comm" ? "next_pid" : "pid") "="); return substr($0, s, e - 1) }
function thread(c, p) { return (c ~ /^govmm$/ ? "govmm:" p : c) }
/^#/ { next }
{
	cpu = -1
	for (i = 1; i <= NF; i++) if ($i ~ /^\[[0-9]+\]$/) { cpu = substr($i, 2, length($i) - 2) + 0; break }
	if (cpu < 0) next
	for (j = i + 1; j <= NF; j++) if ($i ~ /^\[/ && $j ~ /^[0-9]+\.[0-9]+:$/) break
	e = $(j + 1); sub(/:$/, "", e)
	if (t0 == "") t0 = $j + 0
	t1 = $j + 0
}
e == "kvm_entry" { ing[cpu] = 1; cause[cpu] = ""; st[cpu] = 0; next }
e == "kvm_exit" {
	r = $0; sub(/.* reason /, "", r); sub(/ .*/, "", r); exits++; reasons[r]++
	if (r ~ /^(interrupt|EXIT_INTR|EXTERNAL_INTERRUPT)$/) { intr++; tally[cause[cpu] == "" ? "(no interrupt traced)" : cause[cpu]]++ }
	ing[cpu] = 0; next
}
e == "local_timer_entry" { if (ing[cpu] && cause[cpu] == "") { cause[cpu] = "timer"; st[cpu] = 1 }; ticks[cpu]++; next }
e == "hrtimer_expire_entry" {
	f = val("function"); fns[f]++
	if (f == "hrtimer_wakeup") tw[cpu] = 1
	if (ing[cpu] && st[cpu] == 1) { if (f == "hrtimer_wakeup") { cause[cpu] = "timer: sleep ends"; st[cpu] = 2 } else { cause[cpu] = "timer: " f; st[cpu] = 0 } }
	next
}
e == "sched_wakeup" {
	w = thread(comm("comm"), val("pid")); tc = val("target_cpu") + 0; wakes[w]++
	wk = $1; for (k = 2; k < i; k++) wk = wk " " $k; sub(/-[0-9]+$/, "", wk); if (wk == "govmm") { wk = $1; sub(/^.*-/, "govmm:", wk) }
	wby[w " by " (tw[cpu] ? "its timer" : wk)]++; tw[cpu] = 0
	if (ing[cpu] && st[cpu] == 2) { cause[cpu] = "timer: sleep ends: " w; st[cpu] = 0 }
	if (tc != cpu) { last[tc] = w } 
	next
}
e == "reschedule_entry" { if (ing[cpu] && cause[cpu] == "") cause[cpu] = "resched IPI: wakes " last[cpu]; next }
e ~ /^call_function/ { if (ing[cpu] && cause[cpu] == "") cause[cpu] = "call-function IPI"; next }
e == "irq_handler_entry" { if (ing[cpu] && cause[cpu] == "") cause[cpu] = "irq " val("name"); next }
e == "sched_switch" {
	p = comm("prev_comm"); s = val("prev_state")
	if (p ~ /^(vcpu[0-9]+|CPU [0-9]+\/KVM)$/) { sw++; if (s ~ /^R/) pre[thread(comm("next_comm"), val("next_pid"))]++ }
	next
}
END {
	secs = t1 - t0; if (secs <= 0) secs = 1
	printf "XTRACE %s: %.2f s traced, %d exits (%.0f/s), %d external-interrupt exits (%.0f/s); vCPU thread switched out %d times\n", dir, secs, exits, exits / secs, intr, intr / secs, sw
	for (k in reasons) printf "XTRACE %s: exit %-22s %6.0f/s\n", dir, k, reasons[k] / secs
	for (k in tally) printf "XTRACE %s: ext-int cause %-50s %6.0f/s\n", dir, k, tally[k] / secs
	for (k in pre) printf "XTRACE %s: vCPU preempted by %-30s %6.0f/s\n", dir, k, pre[k] / secs
	for (k in wakes) if (wakes[k] / secs >= 20) printf "XTRACE %s: woken %-30s %6.0f/s\n", dir, k, wakes[k] / secs
	for (k in wby) if (wby[k] / secs >= 50) printf "XTRACE %s: woken %-50s %6.0f/s\n", dir, k, wby[k] / secs
	for (k in fns) if (fns[k] / secs >= 20) printf "XTRACE %s: hrtimer %-30s %6.0f/s\n", dir, k, fns[k] / secs
	for (k in ticks) printf "XTRACE %s: local timer interrupts on cpu%d %6.0f/s\n", dir, k, ticks[k] / secs
}
`
