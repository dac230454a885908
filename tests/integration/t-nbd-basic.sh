#!/bin/bash
# SOURCE as an NBD URI (spec 1.7, issue 24), nbdkit's file plugin over a
# unix socket: the image reads as SOURCE before hydration; hydration copies
# it with holes and zero extents left as holes (base:allocation); the JSON
# status shows the source; mount.clonefs's two-argument form, mount -t
# clonefs and an fstab line take a URI; TLS with a
# pre-shared key; bad input
# (bad URI, no server, empty export, TLS refused) fails in one line.
# timeout: 120
. "$(dirname "$0")/lib.sh"

# 24 MiB + an odd tail: data, a hole, written zeros, data, short last region
python3 - "$T/src" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, (24 << 20) + 12345)
os.pwrite(fd, os.urandom(6 << 20), 0)
os.pwrite(fd, bytes(4 << 20), 12 << 20)          # allocated zeros
os.pwrite(fd, os.urandom((8 << 20) + 12345), 16 << 20)
os.close(fd)
PY
nbd_serve "$T/src"

# 1. unhydrated: every byte from the server, 4 KiB and big reads alike
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m" no_hydration
cmp "$T/src" "$T/m/image" || die "unhydrated image differs from source"
dd if="$T/m/image" bs=4k skip=1000 count=1 status=none | cmp - <(dd if="$T/src" bs=4k skip=1000 count=1 status=none) ||
	die "4 KiB read differs"
[ "$(source_json "$T/m" state)" = connected ] || die "source not connected"
[ "$(source_json "$T/m" multi_conn)" = True ] || die "nbdkit's multi-conn not seen"
[ "$(hydrated_count "$T/m")" = 0 ] || die "regions hydrated with no_hydration"
# a write into an unhydrated region copies the rest of it from the server
printf 'over nbd' | dd of="$T/m/image" bs=1 seek=70000 conv=notrunc status=none
cp "$T/src" "$T/model"
printf 'over nbd' | dd of="$T/model" bs=1 seek=70000 conv=notrunc status=none
cmp "$T/model" "$T/m/image" || die "image differs from the model after a write"

# 2. hydration: DEST equals SOURCE (and the write); the hole is skipped
# (block status), it and the written zeros stay holes in DEST
message "$T/m" enable_hydration
poll 60 hydrated_all "$T/m" || die "hydration did not finish"
zb=$(source_json "$T/m" zero_bytes)
[ "$zb" -ge $((6 << 20)) ] || die "block status skipped only $zb bytes"
[ "$(json_field "$T/m" copy_errors)" = 0 ] || die "copy errors"
unmount_clone "$T/m" "$T/meta"
cmp "$T/model" "$T/dest" || die "dest differs from source"
alloc=$(( $(stat -c %b "$T/dest") * 512 ))
[ "$alloc" -le $(( 15 << 20 )) ] ||
	die "dest allocates $alloc bytes: holes or zeros were written"

# 3. the mount(8) form, two arguments and -o dest=,meta= (what fstab runs)
rm -f "$T/dest" "$T/meta"
mkdir -p "$T/m2"
_mounts+=("$T/m2")
"$MOUNT_CLONEFS" "$NBD_URI" "$T/m2" -o "dest=$T/dest,meta=$T/meta,source_timeout=10"
poll 10 test -e "$T/m2/image" || die "no image with the mount(8) form"
grep -q "^nbd+unix:///?socket=$T/nbd.sock $T/m2 fuse.clonefs " /proc/mounts ||
	die "the URI is not the mount's device: $(grep " $T/m2 " /proc/mounts)"
poll 60 hydrated_all "$T/m2" || die "hydration did not finish"
unmount_clone "$T/m2" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source (mount(8) form)"

# 3a. a server without multi-conn: one hydration connection, all of the
# window on it
main_uri=$NBD_URI main_pid=$NBD_PID
nbd_serve "$T/src" single --filter=multi-conn multi-conn-mode=disable
rm -f "$T/dest" "$T/meta"
mount_clone "$NBD_URI" "$T/dest" "$T/meta" "$T/m"
poll 60 hydrated_all "$T/m" || die "hydration without multi-conn did not finish"
[ "$(source_json "$T/m" multi_conn)" = False ] || die "multi-conn seen where disabled"
c=$(source_json "$T/m" connections)
[ "$c" -le 2 ] || die "$c connections to a server without multi-conn (1 + 1 expected)"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source (no multi-conn)"
nbd_stop "$NBD_PID"
NBD_URI=$main_uri NBD_PID=$main_pid

# 3b. mount -t clonefs and an fstab line with the URI as SOURCE
use_build_helper
mount -t clonefs "$NBD_URI" "$T/m2" -o "dest=$T/dest,meta=$T/meta,no_hydration"
poll 10 test -e "$T/m2/image" || die "no image after mount -t clonefs URI"
cmp "$T/src" "$T/m2/image" || die "image differs (mount -t)"
unmount_clone "$T/m2" "$T/meta"
echo "$NBD_URI $T/m2 clonefs dest=$T/dest,meta=$T/meta,_netdev,nofail,source_timeout=5 0 0" > "$T/fstab"
mount --fstab "$T/fstab" "$T/m2" || die "mount via fstab failed"
poll 10 test -e "$T/m2/image" || die "no image after the fstab mount"
grep -q "^nbd+unix:///?socket=$T/nbd.sock $T/m2 fuse.clonefs " /proc/mounts ||
	die "fstab: not the URI: $(grep " $T/m2 " /proc/mounts)"
unmount_clone "$T/m2" "$T/meta"
rm -f /sbin/mount.clonefs # done with mount(8); exit puts back any installed one

# 4. TLS with a pre-shared key (nbds+unix://USER@, tls-psk-file=)
printf 'alice:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$T/keys.psk"
nbd_serve "$T/src" tls --tls=require --tls-psk="$T/keys.psk"
tls_uri="nbds+unix://alice@/?socket=$NBD_SOCK&tls-psk-file=$T/keys.psk"
rm -f "$T/dest" "$T/meta"
mount_clone "$tls_uri" "$T/dest" "$T/meta" "$T/m"
cmp "$T/src" "$T/m/image" || die "image over TLS differs from source"
poll 60 hydrated_all "$T/m" || die "hydration over TLS did not finish"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "dest differs from source (TLS)"
nbd_stop "$NBD_PID"

# 5. bad input: one line naming SOURCE and the problem, non-zero exit
rm -f "$T/dest" "$T/meta"
bad() { # bad URI WHAT-TO-FIND [options]
	local out rc=0
	out=$("$MOUNT_CLONEFS" "$1" "$T/dest" "$T/meta" "$T/m" -o "source_timeout=5${3:+,$3}" 2>&1) || rc=$?
	[ $rc != 0 ] || die "mount of $1 succeeded"
	[ "$(echo "$out" | wc -l)" = 1 ] || die "more than one line for $1: $out"
	echo "$out" | grep -qF "source $1" || die "error does not name the source: $out"
	echo "$out" | grep -qiE "$2" || die "error for $1 does not say '$2': $out"
	[ ! -e "$T/dest" ] && [ ! -e "$T/meta" ] || die "files created for a bad source $1"
	mountpoint -q "$T/m" && die "$1 got mounted"
	log "refused: $out"
}
bad "nbd+unix:///?socket=$T/nothing.sock" "no such file|connect"
bad "nbd://[bad" "uri|pars|invalid"
truncate -s 0 "$T/empty"
nbd_serve "$T/empty" empty
bad "$NBD_URI" "empty"
nbd_stop "$NBD_PID"
bad "nbds+unix:///?socket=$T/nbd.sock" "tls"
pass
