#!/usr/bin/env bash
# tests/leftover-processes.sh RUN_ID: fails if a process of the test run RUN_ID is still alive.
# `make test` runs every test step with SYSTEM_TESTS_RUN_ID=RUN_ID in its environment, which every
# process those steps start inherits (DynamoDB Local, transcoder-local, ffmpeg, chromium…), so this
# finds that run's processes by /proc/PID/environ, and nobody else's. Those still there after a
# grace period (a process killed a moment ago takes that long to go) are listed and killed.
set -u
run_id=${1:?usage: tests/leftover-processes.sh RUN_ID}
marker="SYSTEM_TESTS_RUN_ID=$run_id"

left() {
	local environ pid
	for environ in /proc/[0-9]*/environ; do
		pid=${environ#/proc/}
		pid=${pid%/environ}
		# A NUL-separated entry equal to the marker; unreadable (another user's, gone) is not ours.
		grep -qzxF -- "$marker" "$environ" 2>/dev/null && echo "$pid"
	done
}

for _ in $(seq 50); do
	pids=$(left)
	[ -z "$pids" ] && exit 0
	sleep 0.2
done
echo "processes the tests started are still running (test run $run_id):" >&2
for pid in $pids; do
	echo "  $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" >&2
done
# They would pile up on a developer's machine: this run's own, so killed.
kill -KILL $pids 2>/dev/null
exit 1
