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
while read -r name secs; do
	[ -n "$name" ] || continue
	WORK=/tmp/work/$name OVERLAY=$S/$name.cpio.gz
	export WORK OVERLAY
	mkdir -p "$WORK"
	echo "SCENARIO-BEGIN $name"
	t0=$(up)
	# Not a process-group leader, so busybox setsid execs in place: the group id is $!.
	(cd "$WORK" && exec setsid sh "$S/$name.sh" </dev/null 2>&1) &
	pid=$!
	# The sleep must not hold stdout: an orphaned sleep would keep pipes open after a normal exit.
	# On a timeout, every govmm dumps its device state (SIGUSR1) before the kill.
	(sleep "$secs" </dev/null >/dev/null 2>&1 && { echo "SCENARIO-TIMEOUT $name"; killall -USR1 govmm; sleep 2; kill -KILL -"$pid"; }) 2>/dev/null &
	wd=$!
	wait "$pid"
	rc=$?
	kill "$wd" 2>/dev/null
	kill -KILL -"$pid" 2>/dev/null # leftovers, e.g. a VMM the script put in the background
	# Scenarios are independent: daemons that left the group (iperf3 -D) and taps go too. Only in
	# the test host: the harness unit test runs this script on a developer's machine.
	# A killed process lets go of its tap and ports only once it has exited, which in the slow
	# test host can take seconds: wait for that (up to 20 s), or the next scenario finds tap0 busy
	# and its iperf3 server unable to bind (seen once).
	if [ -z "$SCENARIO_DIR" ]; then
		killall iperf3 2>/dev/null
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
