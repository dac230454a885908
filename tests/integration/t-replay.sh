#!/bin/bash
# Crash consistency by write-log replay (issue 8; spec 3.2, 4.3, 6.1-6.3):
# record every write and flush of a run (CLONEFS_WRITELOG), then check the
# DEST and META a power cut could leave at every flush and at random points
# between flushes: `md_check` clean, hydrated regions hold SOURCE's data or
# the workload's, and every fsync-acknowledged block is intact.
# REPLAY_OPS (writes per round) and REPLAY_RANDOM (random points per gap
# between flushes) scale it; the defaults replay a few thousand points.
. "$(dirname "$0")/lib.sh"

REPLAY=${REPLAY:-$TOP/tests/replay/replay}
WORKLOAD="python3 $TOP/tests/replay/workload.py"
ops=${REPLAY_OPS:-1500}
random_pts=${REPLAY_RANDOM:-2}
min_points=500

[ -x "$REPLAY" ] || die "$REPLAY is not built (make check builds it)"

# SOURCE: random data with a 1 MiB run of zeros (sparse-aware copies).
python3 - "$T/src" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.write(os.urandom(16 << 20))
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, bytes(1 << 20), 5 << 20)
os.close(fd)
EOF
src_sum=$(sha256sum < "$T/src")

total=0
round=0
for cfg in 65536:region_size=64k 4096:region_size=4k,hydration_batch_size=4 \
	   1048576:region_size=1M,hydration_batch_size=1; do
	round=$((round + 1))
	region=${cfg%%:*} opts=${cfg#*:}
	d=$T/r$round
	mkdir -p "$d"
	truncate -s 16M "$d/dest"
	# format META first, so the log starts from a valid one
	mount_clone "$T/src" "$d/dest" "$d/meta" "$d/m" "$opts,no_hydration"
	unmount_clone "$d/m" "$d/meta"
	cp --sparse=always "$d/dest" "$d/dest0"
	cp "$d/meta" "$d/meta0"

	CLONEFS_WRITELOG=$d/wlog mount_clone_fg "$T/src" "$d/dest" "$d/meta" "$d/m" \
		"$opts,hydration_rate=4M,commit_period=100ms"
	$WORKLOAD run "$d/m/image" "$d/acks" --region "$region" --ops "$ops" \
		--seed "$round" || die "round $round: workload failed"
	unmount_clone "$d/m" "$d/meta"
	log "round $round ($opts): log of $(stat -c %s "$d/wlog") bytes"

	out=$("$REPLAY" --log "$d/wlog" --source "$T/src" --dest "$d/dest0" \
		--meta "$d/meta0" --acks "$d/acks" --final-dest "$d/dest" \
		--final-meta "$d/meta" --random "$random_pts" --seed "$round") ||
		{ echo "$out"; die "round $round: replay found crash states that break an invariant"; }
	echo "$out" | tail -n 1
	n=$(echo "$out" | tail -n 1 | sed -n 's/.*; \([0-9]*\) points.*/\1/p')
	total=$((total + n))

	# The checker must still see a real ordering bug: pretend DEST is
	# flushed one flush late (after the bits are committed).
	if [ $round = 1 ]; then
		"$REPLAY" --log "$d/wlog" --source "$T/src" --dest "$d/dest0" \
			--meta "$d/meta0" --acks "$d/acks" --late-dest-flush \
			--max-failures 0 > "$d/mutant.out" &&
			die "replay missed a late DEST flush"
		log "self-test: $(tail -n 1 "$d/mutant.out" | sed 's/.* \([0-9]*\) failures/\1 failures/') with a late DEST flush, as expected"
	fi
	rm -f "$d/wlog"
done

[ "$(sha256sum < "$T/src")" = "$src_sum" ] || die "SOURCE changed"
log "replayed $total crash points in $round rounds"
[ "$total" -ge "$min_points" ] || die "only $total points replayed (want >= $min_points)"
pass
