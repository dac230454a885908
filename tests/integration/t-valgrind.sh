#!/bin/bash
# A short mount session under valgrind memcheck: writes, reads, fsync,
# hydration, status, unmount; zero errors and no definite leaks.
. "$(dirname "$0")/lib.sh"
command -v valgrind >/dev/null || die "valgrind is not installed"

make_source "$T/src" 8
cp "$T/src" "$T/model"
mkdir -p "$T/m"
_mounts+=("$T/m")
valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	--log-file="$T/vg.log" "$MOUNT_CLONEFS" "$T/src" "$T/dest" "$T/meta" "$T/m" -f \
	-o hydration_rate=4M 2>/dev/null &
vg=$!
_pids+=("$vg")
poll 60 test -e "$T/m/image" || die "no image under valgrind"
$IOMODEL random "$T/m/image" "$T/model" --ops 300 --seed 5 --fsync-every 50
status_field "$T/m" 4 > /dev/null
message "$T/m" hydration_rate 0
poll 120 hydrated_all "$T/m" || die "hydration did not finish under valgrind"
umount "$T/m"
rc=0; wait "$vg" || rc=$?
cat "$T/vg.log"
[ $rc = 0 ] || die "valgrind exit $rc (99 = errors found)"
[ ! -s "$T/vg.log" ] || die "valgrind reported: $(head -5 "$T/vg.log")"
cmp "$T/dest" "$T/model" || die "dest differs from model"
pass
