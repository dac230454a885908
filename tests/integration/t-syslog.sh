#!/bin/bash
# Logging (issue 5): a backgrounded daemon logs to syslog (/dev/log); one in
# the foreground (-f) logs to stderr; -o debug adds detail.
. "$(dirname "$0")/lib.sh"

# Listen on /dev/log ourselves, unless a syslog daemon owns it (then the
# messages are its business and this part cannot look at them).
[ -e /dev/log ] && { log "a syslog daemon owns /dev/log: skipping the syslog part"; have_log=0; } || have_log=1
if [ $have_log = 1 ]; then
	python3 - "$T/syslog.txt" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
out = open(sys.argv[1], "ab", buffering=0)
s.settimeout(60)
try:
    while True:
        out.write(s.recv(8192) + b"\n")
except socket.timeout:
    pass
PY
	_pids+=($!)
	atexit rm -f /dev/log
	poll 10 test -S /dev/log || die "could not listen on /dev/log"
fi

make_source "$T/src" 8
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m"
poll 30 hydrated_all "$T/m" || die "hydration did not finish"
message "$T/m" hydration_threshold 7
unmount_clone "$T/m" "$T/meta"
if [ $have_log = 1 ]; then
	poll 10 grep -q "hydration complete" "$T/syslog.txt" || die "no 'hydration complete' in syslog"
	grep -q "clonefs\[[0-9]*\]: mounted $T/src on $T/m" "$T/syslog.txt" || die "no mount line in syslog"
	grep -q "message: hydration_threshold 7" "$T/syslog.txt" || die "message not logged"
fi

# foreground: stderr, and debug detail only with -o debug
rm -f "$T/dest" "$T/meta"
"$MOUNT_CLONEFS" "$T/src" "$T/dest" "$T/meta" "$T/m" -f 2> "$T/fg.txt" &
_pids+=($!)
poll 10 test -e "$T/m/image" || die "no foreground mount"
poll 30 hydrated_all "$T/m" || die "hydration did not finish (fg)"
unmount_clone "$T/m" "$T/meta"
grep -q "hydration complete" "$T/fg.txt" || die "foreground daemon did not log to stderr"
grep -q "DEBUG" "$T/fg.txt" && die "debug lines without -o debug"
rm -f "$T/dest" "$T/meta"
"$MOUNT_CLONEFS" "$T/src" "$T/dest" "$T/meta" "$T/m" -f -o debug 2> "$T/dbg.txt" &
_pids+=($!)
poll 10 test -e "$T/m/image" || die "no debug mount"
unmount_clone "$T/m" "$T/meta"
grep -q "DEBUG" "$T/dbg.txt" || die "-o debug logged no detail: $(cat "$T/dbg.txt")"
pass
