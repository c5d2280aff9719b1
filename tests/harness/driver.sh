#!/bin/sh
# Scenario driver, run by the nested test host's init as /scenario/run.sh (busybox sh).
# /scenario/list has one "NAME TIMEOUT_SECS" line per scenario; each runs /scenario/NAME.sh with the
# harness's environment, in its own session so that a timeout kills everything it started.
# Markers parsed by the harness: SCENARIO-BEGIN NAME / SCENARIO-TIMEOUT NAME / SCENARIO-END NAME rc=N secs=S
S=${SCENARIO_DIR:-/scenario} # overridable for the harness unit test
export GOVMM=$S/govmm KERNEL=/guest/bzImage INITRD=/guest/initramfs.cpio.gz
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
up() { cut -d' ' -f1 /proc/uptime; }
# Tun/tap interfaces, from sysfs: the plain "ip" here is busybox's, which has no "tuntap show"
# (the cleanup below silently deleted nothing for that reason).
taps() { for f in /sys/class/net/*/tun_flags; do [ -e "$f" ] && basename "$(dirname "$f")"; done; }
# KVM's tracepoints in the test host, in a small ring buffer (the last half second or so): when
# a guest triple-faults, the exits and injections that led to it are printed as L1-TRACE lines.
T=/sys/kernel/tracing
if [ -z "$SCENARIO_DIR" ]; then
	[ -e $T/events ] || mount -t tracefs tracefs $T 2>/dev/null
	[ -w $T/events/kvm/enable ] || T=
fi
[ -n "$SCENARIO_DIR" ] && T=
trace_start() { [ -n "$T" ] || return 0; echo 0 >$T/tracing_on; echo 256 >$T/buffer_size_kb; echo >$T/trace; echo 1 >$T/events/kvm/enable; echo 1 >$T/tracing_on; }
trace_check() {
	[ -n "$T" ] || return 0
	echo 0 >$T/tracing_on
	if grep -qi 'kvm_exit.*reason.*shutdown' $T/trace; then
		echo "L1-TRACE: a guest shut down (triple fault); KVM's last events before it:"
		grep -v '^#' $T/trace | awk '{ l[NR] = $0 } /kvm_exit.*reason.*[Ss][Hh][Uu][Tt][Dd][Oo][Ww][Nn]/ { s = NR } END { for (i = (s > 300 ? s - 300 : 1); i <= s; i++) print "L1-TRACE: " l[i] }'
	fi
	echo 0 >$T/events/kvm/enable
}
# trace_tail prints KVM's last events of a scenario that timed out (the dump above has the vCPUs'
# registers; these say what KVM did with the guest since: exits in a loop, or nothing at all).
trace_tail() {
	[ -n "$T" ] || return 0
	echo 0 >$T/tracing_on
	echo "L1-TRACE: the scenario timed out; KVM's last events:"
	grep -v '^#' $T/trace | tail -200 | sed 's/^/L1-TRACE: /'
	echo 1 >$T/tracing_on
}
while read -r name secs; do
	[ -n "$name" ] || continue
	WORK=/tmp/work/$name OVERLAY=$S/$name.cpio.gz
	export WORK OVERLAY
	mkdir -p "$WORK"
	echo "SCENARIO-BEGIN $name"
	trace_start
	t0=$(up)
	# Not a process-group leader, so busybox setsid execs in place: the group id is $!.
	(cd "$WORK" && exec setsid sh "$S/$name.sh" </dev/null 2>&1) &
	pid=$!
	# The sleep must not hold stdout: an orphaned sleep would keep pipes open after a normal exit.
	# On a timeout, every govmm dumps its device state (SIGUSR1) before the kill.
	# KVM's last events go with it: whether the guest still exits (and how), or sits silent in KVM_RUN.
	(sleep "$secs" </dev/null >/dev/null 2>&1 && { echo "SCENARIO-TIMEOUT $name"; killall -USR1 govmm; sleep 2; trace_tail; kill -KILL -"$pid"; }) 2>/dev/null &
	wd=$!
	wait "$pid"
	rc=$?
	kill "$wd" 2>/dev/null
	kill -KILL -"$pid" 2>/dev/null # leftovers, e.g. a VMM the script put in the background
	trace_check
	# The test host's root is RAM: a scenario's files (256 MiB transfers) must not stay and
	# squeeze the next scenarios' guests.
	[ -n "$SCENARIO_DIR" ] || rm -rf "$WORK"
	# Scenarios are independent: daemons that left the group (iperf3 -D) and taps go too. Only in
	# the test host: the harness unit test runs this script on a developer's machine.
	# A killed process lets go of its tap and ports only once it has exited, which in the slow
	# test host can take seconds: wait for that (up to 20 s), or the next scenario finds tap0 busy
	# and its iperf3 server unable to bind (seen once).
	if [ -z "$SCENARIO_DIR" ]; then
		killall iperf3 2>/dev/null
		# Network namespaces and veth pairs a scenario made (the AF_XDP far end).
		for ns in $(/sbin/ip netns list 2>/dev/null | cut -d' ' -f1); do /sbin/ip netns del "$ns"; done
		for v in $(/sbin/ip -o link show type veth 2>/dev/null | cut -d: -f2 | cut -d@ -f1); do /sbin/ip link del "$v" 2>/dev/null; done
		i=0
		while [ $i -lt 40 ]; do
			for tap in $(taps); do /sbin/ip link del "$tap" 2>/dev/null; done
			pidof iperf3 govmm qemu-system-x86_64 >/dev/null 2>&1 || [ -n "$(taps)" ] || break
			sleep 0.5
			i=$((i+1))
		done
		[ $i -lt 40 ] || echo "SCENARIO-CLEANUP $name: still there after 20 s: $(pidof iperf3 govmm qemu-system-x86_64) $(taps)"
	fi
	echo "SCENARIO-END $name rc=$rc secs=$(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.2f", b-a}')"
done <$S/list
