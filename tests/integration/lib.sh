# lib.sh - shared set-up for clonefs integration tests (sourced).
#
# Each test gets a private temp dir; every mount, loop device and process it
# starts is recorded and undone on exit, pass or fail. Waiting is polling
# with a deadline, never a bare sleep.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOUNT_CLONEFS=${MOUNT_CLONEFS:-$TOP/mount/mount.clonefs}
CLONEFS=${CLONEFS:-$TOP/src/clonefs}
IOMODEL="python3 $TOP/tests/integration/iomodel.py"
T=$(mktemp -d /tmp/clonefs-test.XXXXXX)
_mounts=()
_loops=()
_pids=()
_fsmounts=()
_atexit=()

log() { echo "# $*"; }
atexit() { _atexit+=("$*"); } # a command for cleanup to run
die() { echo "FAIL: $*" >&2; exit 1; }

# fusectl_up: /sys/fs/fuse/connections mounted (until exit, if we mount it):
# without systemd nothing mounts it, and a FUSE connection's settings and
# its abort switch live there, in a directory named by the mount's minor.
fusectl_up() {
	mountpoint -q /sys/fs/fuse/connections && return 0
	mount -t fusectl fusectl /sys/fs/fuse/connections || return 1
	atexit umount /sys/fs/fuse/connections
}

# Abort a FUSE mount whose daemon is gone or stuck, so nothing hangs.
_abort_fuse() {
	local dev minor
	dev=$(mountpoint -d "$1" 2>/dev/null) || return 0
	minor=${dev#*:}
	fusectl_up 2>/dev/null || return 0
	[ -e /sys/fs/fuse/connections/$minor/abort ] &&
		echo 1 > /sys/fs/fuse/connections/$minor/abort 2>/dev/null || true
}

cleanup() {
	local rc=$?
	set +e
	for m in "${_fsmounts[@]}"; do # filesystems on loops, before the loops
		mountpoint -q "$m" || continue
		timeout 30 umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	for l in "${_loops[@]}"; do losetup -d "$l" 2>/dev/null; done
	for m in "${_mounts[@]}"; do
		mountpoint -q "$m" || continue
		timeout 10 umount "$m" 2>/dev/null || { _abort_fuse "$m"; umount -l "$m" 2>/dev/null; }
	done
	for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${_pids[@]}"; do wait "$p" 2>/dev/null; done
	for c in "${_atexit[@]}"; do eval "$c"; done
	# CLONEFS_KEEP=DIR: a failed test's files are moved there to look at
	if [ $rc -ne 0 ] && [ -n "${CLONEFS_KEEP:-}" ]; then
		mkdir -p "$CLONEFS_KEEP" && mv "$T" "$CLONEFS_KEEP/" && echo "# kept $T in $CLONEFS_KEEP"
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# poll SECONDS COMMAND...: until COMMAND succeeds, or fail.
poll() {
	local deadline=$((SECONDS + $1)); shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

# stop_process PID: SIGSTOP, then wait until every thread of PID has stopped.
# A signal is only acted on when each thread next runs: until then a daemon
# thread may still take a request and answer it.
stop_process() {
	kill -STOP "$1" || return 1
	poll 10 _all_stopped "$1"
}
_all_stopped() {
	local stat line
	for stat in /proc/"$1"/task/*/stat; do
		read -r line < "$stat" || return 1
		line=${line##*) }
		[ "${line%% *}" = T ] || return 1
	done
}

# has_passthrough: the kernel has FUSE passthrough (Linux >= 6.9).
has_passthrough() { [ "$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')" -ge 6009 ]; }

# reap PID: wait for a child of the test, which then leaves _pids, so that
# cleanup never signals the PID once someone else may have it.
reap() {
	local p keep=() rc=0
	wait "$1" || rc=$?
	for p in "${_pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	_pids=("${keep[@]}")
	return $rc
}

# mount_clone SOURCE DEST META MNT [OPTIONS]: mount and wait for the image.
mount_clone() {
	mkdir -p "$4"
	_mounts+=("$4")
	"$MOUNT_CLONEFS" "$1" "$2" "$3" "$4" ${5:+-o "$5"}
	poll 10 test -e "$4/image" || die "image did not appear in $4"
}

# mount_clone_fg SOURCE DEST META MNT [OPTIONS [FLAGS...]]: a foreground
# daemon whose PID is in $DAEMON_PID (for tests that kill it), its stderr
# in $T/daemon.log; FLAGS go to mount.clonefs as they are (-d: libfuse's
# log of every request).
mount_clone_fg() {
	mkdir -p "$4"
	_mounts+=("$4")
	"$MOUNT_CLONEFS" "$1" "$2" "$3" "$4" -f ${5:+-o "$5"} "${@:6}" 2>>"$T/daemon.log" &
	DAEMON_PID=$!
	_pids+=("$DAEMON_PID")
	poll 10 mountpoint -q "$4" ||
		die "mount of $4 did not appear; the daemon said: $(tail -n 3 "$T/daemon.log")"
}

# unmount_clone MNT META: unmount and wait until the daemon has committed and
# let go of META (it holds a lock on META for its life).
unmount_clone() {
	umount "$1"
	timeout 30 flock "$2" true || die "daemon for $2 did not exit"
}

# make_source FILE MIB: random content.
make_source() {
	head -c "$(($2 * 1024 * 1024))" /dev/urandom > "$1"
}

# new_loop FILE [losetup options]: attach; the device is in $LOOP. (Not
# meant for $(...): a subshell could not record the device for cleanup.)
new_loop() {
	LOOP=$(losetup -f --show "${@:2}" "$1") || die "losetup ${*:2} $1 failed"
	_loops+=("$LOOP")
}

free_loop() {
	losetup -d "$1"
	local keep=()
	for l in "${_loops[@]}"; do [ "$l" = "$1" ] || keep+=("$l"); done
	_loops=("${keep[@]}")
}

# mount_fs DEV DIR [OPTIONS]: mount a filesystem (say ext4 on a loop device
# over the image); cleanup unmounts it before it detaches loops.
mount_fs() {
	mkdir -p "$2"
	mount ${3:+-o "$3"} "$1" "$2"
	_fsmounts+=("$2")
}

umount_fs() {
	umount "$1"
	local keep=()
	for m in "${_fsmounts[@]}"; do [ "$m" = "$1" ] || keep+=("$m"); done
	_fsmounts=("${keep[@]}")
}

# loop_released FILE: no loop device holds FILE any more.
loop_released() { [ -z "$(losetup -j "$1")" ]; }

# status_field MNT N: the Nth field of the status line.
status_field() {
	getfattr --absolute-names --only-values -n user.clonefs.status "$1/image" | awk -v n="$2" '{print $n}'
}

hydrated_all() { # hydrated_all MNT
	local h
	h=$(status_field "$1" 4)
	[ "${h%/*}" = "${h#*/}" ]
}

pass() { echo "PASS: $(basename "$0")"; }

# message MNT WORDS...: send a control message (spec 5.2) without the tool.
message() {
	local m=$1; shift
	setfattr -n user.clonefs.message -v "$*" "$m/image"
}

# json_field MNT KEY: one field of the JSON status.
json_field() {
	getfattr --absolute-names --only-values -n user.clonefs.json "$1/image" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

hydrated_count() { local h; h=$(status_field "$1" 4); echo "${h%/*}"; }
# daemon_alive MNT [CONTEXT]: the daemon ($DAEMON_PID, from mount_clone_fg)
# still runs, MNT is mounted and status answers.
daemon_alive() {
	kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon died ${2:-}"
	mountpoint -q "$1" || die "$1 is no longer mounted ${2:-}"
	timeout 30 getfattr --absolute-names --only-values -n user.clonefs.status \
		"$1/image" > /dev/null || die "status does not answer ${2:-}"
}

# For poll: conditions re-evaluated on every try.
hydrated_at_least() { [ "$(hydrated_count "$1")" -ge "$2" ]; }
none_in_flight() { [ "$(status_field "$1" 5)" = 0 ]; }

# ---- NBD sources (issue 24) ----

# nbd_serve FILE [NAME [nbdkit ARGS...]]: nbdkit serving FILE read-only on
# the unix socket $T/NAME.sock (NAME: nbd), in the foreground as our child:
# its PID in $NBD_PID, the URI in $NBD_URI, its log in $T/NAME.nbdkit.log.
# ARGS: --filter=F options, and KEY=VALUE parameters of the filters. The
# socket is removed first, so a server restarted on it is waited for.
nbd_serve() {
	local file=$1 name=${2:-nbd} a opts=() params=()
	for a in "${@:3}"; do
		case $a in -*) opts+=("$a") ;; *) params+=("$a") ;; esac
	done
	NBD_SOCK=$T/$name.sock
	rm -f "$NBD_SOCK" "$T/$name.pid"
	nbdkit -f -r -U "$NBD_SOCK" -P "$T/$name.pid" "${opts[@]}" file "$file" "${params[@]}" \
		2>>"$T/$name.nbdkit.log" &
	NBD_PID=$!
	_pids+=("$NBD_PID")
	# the pid file is written once the server accepts connections
	poll 10 test -s "$T/$name.pid" || die "nbdkit did not come up (see $T/$name.nbdkit.log)"
	NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
}

# nbd_stop PID: stop a server we started, as a crash would, and reap it
# (nbdkit leaves SIGTERM pending while a client stays connected).
nbd_stop() {
	kill -KILL "$1" 2>/dev/null || true
	reap "$1" || true
}

# serve_source FILE: $SRC is FILE, or with CLONEFS_TEST_NBD=1 an NBD URI
# for it (nbdkit), so that a test runs against a local or an NBD SOURCE.
serve_source() {
	SRC=$1
	[ "${CLONEFS_TEST_NBD:-0}" = 1 ] || return 0
	nbd_serve "$1" srcnbd
	SRC=$NBD_URI
	log "SOURCE over NBD: $SRC"
}

# source_json MNT KEY: a member of the JSON status's "source" object.
source_json() {
	getfattr --absolute-names --only-values -n user.clonefs.json "$1/image" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["source"][sys.argv[1]])' "$2"
}

# regions_equal SRC DEST LIST SIZE: the regions listed (one number a line)
# hold the same SIZE bytes in SRC and DEST.
regions_equal() {
	python3 - "$@" <<'PY'
import sys
s, d, size = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb'), int(sys.argv[4])
for r in map(int, open(sys.argv[3])):
    s.seek(r * size); d.seek(r * size)
    if s.read(size) != d.read(size):
        sys.exit("region %d differs" % r)
PY
}

# use_build_helper: mount(8) runs /sbin/mount.clonefs; make it this build's
# until exit. An installed helper (make install's, the package's) is put
# aside meanwhile and put back after.
use_build_helper() {
	local helper=/sbin/mount.clonefs
	if [ -e "$helper" ] || [ -L "$helper" ]; then
		mv "$helper" "$T/helper.before"
		atexit "rm -f $helper; mv $T/helper.before $helper"
	else
		atexit rm -f "$helper"
	fi
	ln -s "$MOUNT_CLONEFS" "$helper"
}
