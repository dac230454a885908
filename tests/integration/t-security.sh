#!/bin/bash
# Security properties (issue 8; spec 1.2, 1.4): SOURCE is opened read-only
# and never written; DEST/META that are SOURCE (or each other) by any name
# are refused, and so are symlinks with -o nofollow; META and a created DEST
# are 0600; allow_other only when asked, and then with default_permissions;
# offsets near 2^63 fail cleanly; a flood of concurrent requests neither
# crashes the daemon nor grows its threads without bound.
. "$(dirname "$0")/lib.sh"

IMG_MIB=32
make_source "$T/src" $IMG_MIB
src_sum=$(sha256sum < "$T/src")
src_mtime=$(stat -c %Y.%y "$T/src")

alive() { daemon_alive "$T/m" "($*)"; }

# --- refusals: nothing mounted, nothing created, one clear line -------------
# refuse WHY DEST META [OPTIONS]: the mount fails and names the problem.
refuse() {
	local why=$1 out rc=0
	mkdir -p "$T/r"
	out=$(timeout 60 "$MOUNT_CLONEFS" "$T/src" "$2" "$3" "$T/r" ${4:+-o "$4"} 2>&1) || rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || { mountpoint -q "$T/r" && umount "$T/r"; die "mounted with $why"; }
	mountpoint -q "$T/r" && die "$why: refused but mounted"
	echo "$out" | grep -q "$5" || die "$why: message does not say '$5': $out"
	[ "$(echo "$out" | wc -l)" -eq 1 ] || die "$why: more than one line: $out"
	log "refused $why: $out"
}

ln "$T/src" "$T/src-link"
ln -s "$T/src" "$T/src-symlink"
refuse "DEST = SOURCE" "$T/src" "$T/meta" "" "same file as the source"
refuse "DEST = hard link to SOURCE" "$T/src-link" "$T/meta" "" "same file as the source"
refuse "DEST = symlink to SOURCE" "$T/src-symlink" "$T/meta" "" "same file as the source"
refuse "META = SOURCE" "$T/dest" "$T/src" "" "same file as the source"
refuse "META = hard link to SOURCE" "$T/dest" "$T/src-link" "" "same file as the source"
truncate -s ${IMG_MIB}M "$T/dest"
ln "$T/dest" "$T/dest-link"
refuse "META = DEST" "$T/dest" "$T/dest" "" "same file as the dest"
refuse "META = hard link to DEST" "$T/dest" "$T/dest-link" "" "same file as the dest"
ln -s "$T/dest" "$T/dest-symlink"
touch "$T/meta-target"
ln -s "$T/meta-target" "$T/meta-symlink"
refuse "DEST symlink with nofollow" "$T/dest-symlink" "$T/meta" nofollow "symbolic link"
refuse "META symlink with nofollow" "$T/dest" "$T/meta-symlink" nofollow "symbolic link"
[ ! -e "$T/meta" ] || die "a refused mount created META"
[ ! -s "$T/meta-target" ] || die "a refused mount wrote through the META symlink"
rm -f "$T/dest" "$T/dest-link" "$T/src-link"

# --- modes of created files (whatever the umask) ------------------------------
(umask 000 && mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration)
[ "$(stat -c %a "$T/meta")" = 600 ] || die "META created with mode $(stat -c %a "$T/meta")"
[ "$(stat -c %a "$T/dest")" = 600 ] || die "DEST created with mode $(stat -c %a "$T/dest")"
opts=$(awk -v m="$T/m" '$2 == m {print $4}' /proc/mounts)
log "mount options without allow_other: $opts"
case ",$opts," in *,allow_other,*) die "allow_other without being asked" ;; esac
chmod 711 "$T"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups cat "$T/m/image" 2>&1 >/dev/null) &&
	die "another user read the image without allow_other"
log "another user without allow_other: $out"
unmount_clone "$T/m" "$T/meta"

# --- allow_other adds default_permissions -------------------------------------
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" allow_other,no_hydration
opts=$(awk -v m="$T/m" '$2 == m {print $4}' /proc/mounts)
log "mount options with allow_other: $opts"
case ",$opts," in *,allow_other,*) ;; *) die "allow_other missing: $opts" ;; esac
case ",$opts," in *,default_permissions,*) ;; *) die "default_permissions missing: $opts" ;; esac
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# the image is the mounting user's, 0600: allow_other lets nobody else in
# by itself, even where SOURCE is readable by all (spec 1.6)
[ "$(stat -c %a:%u:%g "$T/m/image")" = "600:$(id -u):$(id -g)" ] ||
	die "image is $(stat -c %a:%u:%g "$T/m/image"), not 600 and the mounting user's"
as_nobody head -c 4096 "$T/m/image" > /dev/null 2>&1 &&
	die "allow_other: another user read a 0600 image"
as_nobody dd if=/dev/zero of="$T/m/image" bs=4096 count=1 conv=notrunc 2>/dev/null &&
	die "another user wrote the image (0600, owned by root)"
as_nobody setfattr -n user.clonefs.message -v enable_hydration "$T/m/image" 2>/dev/null &&
	die "another user sent a control message"
unmount_clone "$T/m" "$T/meta"

# umask= widens on purpose: others read, and still cannot write
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" allow_other,no_hydration,umask=022,commit_period=3600
[ "$(stat -c %a "$T/m/image")" = 644 ] || die "umask=022 gave $(stat -c %a "$T/m/image")"
as_nobody head -c 4096 "$T/m/image" > /dev/null || die "umask=022: others cannot read"
as_nobody dd if=/dev/zero of="$T/m/image" bs=4096 count=1 conv=notrunc 2>/dev/null &&
	die "umask=022: another user wrote the image"
# the status commits first only for the image's owner and root (issue 22):
# another user reads the counts in core and writes nothing to META, or
# reading it in a loop would force a commit each time
h=$(hydrated_count "$T/m") # committed: nothing pending
printf 'x' | dd of="$T/m/image" bs=1 seek=$((5 * 65536 + 100)) conv=notrunc status=none
before=$(sha1sum < "$T/meta")
for f in status json; do
	as_nobody getfattr --only-values -n user.clonefs.$f "$T/m/image" > "$T/st.$f" ||
		die "another user cannot read the $f status"
done
[ "$(awk '{print $4}' "$T/st.status")" = "$((h + 1))/$((IMG_MIB * 16))" ] ||
	die "another user's status misses the new bit: $(cat "$T/st.status")"
[ "$(sha1sum < "$T/meta")" = "$before" ] || die "another user's status read committed META"
status_field "$T/m" 4 > /dev/null
[ "$(sha1sum < "$T/meta")" != "$before" ] || die "the owner's status read committed nothing"
unmount_clone "$T/m" "$T/meta"

# uid=/gid= hand the image to another user, who may then write it
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" allow_other,no_hydration,uid=65534,gid=65534
[ "$(stat -c %a:%u:%g "$T/m/image")" = 600:65534:65534 ] ||
	die "uid=,gid= gave $(stat -c %a:%u:%g "$T/m/image")"
as_nobody dd if=/dev/zero of="$T/m/image" bs=4096 count=1 conv=notrunc,fsync 2>/dev/null ||
	die "uid=65534: its owner cannot write the image"
# the prefetch message makes the daemon read a file: only one its sender may read
"$CLONEFS" profile save "$T/m" "$T/root.profile" > /dev/null || die "profile save failed"
chmod 600 "$T/root.profile"
as_nobody setfattr -n user.clonefs.message -v "prefetch $T/root.profile" "$T/m/image" 2>/dev/null &&
	die "nobody had the daemon read root's 0600 profile"
as_nobody setfattr -n user.clonefs.message -v "prefetch $T/none.profile" "$T/m/image" 2> "$T/err" &&
	die "a missing profile was accepted"
grep -q "Permission denied" "$T/err" || die "a missing file's error tells it is missing: $(cat "$T/err")"
chmod 644 "$T/root.profile"
as_nobody setfattr -n user.clonefs.message -v "prefetch $T/root.profile" "$T/m/image" ||
	die "nobody cannot prefetch a profile anyone may read"
setfattr -n user.clonefs.message -v "prefetch $T/root.profile" "$T/m/image" ||
	die "root cannot prefetch a profile"
unmount_clone "$T/m" "$T/meta"
chmod 700 "$T"

# --- the daemon's own view: SOURCE's fd is O_RDONLY ---------------------------
# Hydration stays off until the flood: an image hydrated in full would pass
# its opens through to DEST, where the kernel, not the daemon, stops writes
# at the end.
mount_clone_fg "$T/src" "$T/dest" "$T/meta" "$T/m" "hydration_rate=64M,no_hydration"
src_real=$(readlink -f "$T/src")
found=0
for fd in /proc/$DAEMON_PID/fd/*; do
	[ "$(readlink "$fd")" = "$src_real" ] || continue
	flags=$(awk '/^flags:/ {print $2}' "/proc/$DAEMON_PID/fdinfo/${fd##*/}")
	[ $((8#$flags & 3)) -eq 0 ] || die "SOURCE fd ${fd##*/} has flags $flags (not O_RDONLY)"
	found=$((found + 1))
done
[ $found -ge 1 ] || die "no SOURCE fd found in the daemon"
log "SOURCE open read-only in the daemon ($found fd)"

# --- offsets and lengths at the edges -----------------------------------------
python3 - "$T/m/image" $((IMG_MIB << 20)) <<'EOF' || die "edge offsets"
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
def expect_err(what, fn, ok_errnos):
    try:
        r = fn()
    except OSError as e:
        if e.errno not in ok_errnos:
            sys.exit("%s: errno %d" % (what, e.errno))
        return
    if what.startswith("read") and r in (b"", 0):
        return  # reading past the end: end of file
    sys.exit("%s: succeeded (%r)" % (what, r if not isinstance(r, bytes) else len(r)))
big = [2**63 - 4096, 2**63 - 1, 2**62, size, size + 4096]
for off in big:
    expect_err("read at %d" % off, lambda: os.pread(fd, 4096, off), {errno.EINVAL, errno.EFBIG})
    expect_err("write at %d" % off, lambda: os.pwrite(fd, b"x" * 4096, off),
               {errno.EFBIG, errno.ENOSPC, errno.EINVAL, errno.EPERM})
# fallocate: KEEP_SIZE|PUNCH_HOLE and KEEP_SIZE|ZERO_RANGE, ranges that reach
# or overflow past 2^63
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
for off, ln in [(2**63 - 4096, 4096), (size - 4096, 2**63 - size), (2**62, 2**62),
                (size - 1, 2**63 - size), (0, 2**63 - 1)]:
    for mode in (0x01 | 0x02, 0x01 | 0x10):
        r = libc.fallocate(fd, mode, off, ln)
        e = ctypes.get_errno()
        if r != 0 and e not in (errno.EINVAL, errno.EFBIG, errno.EPERM, errno.EOPNOTSUPP):
            sys.exit("fallocate(%#x, %d, %d): errno %d" % (mode, off, ln, e))
# a read and a write crossing the end are cut at the end
assert len(os.pread(fd, 8192, size - 4096)) == 4096
n = os.pwrite(fd, b"y" * 8192, size - 4096)
assert n == 4096, n
# truncation and growth are refused (spec 2.8)
for newsize in (0, size + 4096, 2**63 - 1):
    try:
        os.ftruncate(fd, newsize)
        sys.exit("ftruncate(%d) succeeded" % newsize)
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.EFBIG, errno.EINVAL), e
print("edges: ok")
EOF
alive "edge offsets"
for msg in "hydration_threshold 99999999999999999999999" "hydration_rate 18446744073709551616" \
	   "hydration_batch_size -1" "$(head -c 3000 /dev/zero | tr '\0' a)" "copy_on_read maybe"; do
	message "$T/m" "$msg" 2>/dev/null && die "bad message accepted: ${msg:0:40}"
done
setfattr -n user.clonefs.status -v x "$T/m/image" 2>/dev/null && die "status is writable"
alive "bad messages"

# --- a flood of concurrent requests ---------------------------------------------
message "$T/m" enable_hydration
max_tasks=0
count_tasks() {
	local n
	n=$(ls "/proc/$DAEMON_PID/task" 2>/dev/null | wc -l)
	[ "$n" -gt "$max_tasks" ] && max_tasks=$n
	return 0
}
fio --name=flood --filename="$T/m/image" --direct=1 --ioengine=libaio --rw=randrw \
	--bs=4k --iodepth=32 --numjobs=32 --time_based --runtime=5 --size=${IMG_MIB}M \
	--group_reporting --minimal > "$T/fio.out" 2>&1 &
fio_pid=$!
_pids+=("$fio_pid")
while kill -0 $fio_pid 2>/dev/null; do
	count_tasks
	sleep 0.2
done
wait $fio_pid || { tail -n 5 "$T/fio.out"; die "fio failed"; }
ios=$(awk -F";" '{print $6 + $47}' "$T/fio.out")
[ "${ios:-0}" -gt 0 ] || die "fio did no I/O: $(head -c 300 "$T/fio.out")"
alive "after the flood"
nfds=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
log "flood: $ios I/Os, at most $max_tasks daemon threads, $nfds fds afterwards"
# 32 FUSE threads, 4 hydration workers, scheduler, committer, main, glib's
[ "$max_tasks" -le 64 ] || die "daemon threads grew to $max_tasks"
[ "$nfds" -le 100 ] || die "daemon holds $nfds fds"

poll 60 hydrated_all "$T/m" || die "hydration did not finish"
unmount_clone "$T/m" "$T/meta"
"$CLONEFS" check -n "$T/meta" > /dev/null || die "META not clean"

[ "$(sha256sum < "$T/src")" = "$src_sum" ] || die "SOURCE content changed"
[ "$(stat -c %Y.%y "$T/src")" = "$src_mtime" ] || die "SOURCE mtime changed"
log "SOURCE unchanged (sha256 and mtime) after writes, a flood and full hydration"
pass
