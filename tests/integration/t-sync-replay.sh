#!/bin/bash
# Synchronous writes are durable when acknowledged (issue 22; spec 2.5a,
# 3.2), checked at every write point: record a run of O_DSYNC or RWF_DSYNC
# writes (CLONEFS_WRITELOG; no fsync until the last), each acknowledged by
# itself, then build the DEST and META a power cut right after each write
# record could leave (only what completed flushes cover) and check that
# every write acknowledged before that point reads back, with its region
# hydrated in META (tests/replay/replay --every-write). Unlike a SIGKILL
# (t-sync-matrix.sh), this also sees a DEST that was not flushed: so it
# also runs on a fully hydrated image, where no bit is left to commit and
# only DEST's flush makes a write durable (writable opens of a hydrated
# image go through the daemon; only read-only ones pass through).
# timeout: 240
. "$(dirname "$0")/lib.sh"

REPLAY=${REPLAY:-$TOP/tests/replay/replay}
WORKLOAD="python3 $TOP/tests/replay/workload.py"
ops=${SYNC_REPLAY_OPS:-120}

if [ ! -x "$REPLAY" ]; then # not built by make check: build it here (the
	# library's sources change; make knows them)
	make -s -C "$TOP" tests/replay/replay > /dev/null || die "cannot build replay"
	REPLAY=$TOP/tests/replay/replay
fi

make_source "$T/src" 4
failed=0 round=0
# SYNC:OPEN:CLONE OPTIONS[:hydrated[:THREADS]]; two with hydration
# running beside the writes, two on a fully hydrated image, two with four
# writers at once (synchronous writes may share a commit: none may be
# acknowledged by a commit that does not cover it)
for cfg in o_dsync:buffered:no_hydration,commit_period=3600 \
	   rwf_dsync:direct:no_hydration,commit_period=3600 \
	   o_dsync:direct:hydration_rate=2M,commit_period=100ms \
	   rwf_dsync:buffered:hydration_rate=2M,commit_period=100ms \
	   o_dsync:buffered:commit_period=3600:hydrated \
	   rwf_dsync:direct:commit_period=3600:hydrated \
	   o_dsync:buffered:no_hydration,commit_period=3600::4 \
	   rwf_dsync:direct:hydration_rate=2M,commit_period=100ms::4; do
	round=$((round + 1))
	IFS=: read -r sync open opts hydrated threads <<< "$cfg"
	d=$T/r$round
	mkdir -p "$d"
	truncate -s 4M "$d/dest"
	# format META first (hydrate it all, if asked), so the log starts
	# from a valid one
	mount_clone "$T/src" "$d/dest" "$d/meta" "$d/m" "$([ -n "$hydrated" ] || echo no_hydration)"
	[ -z "$hydrated" ] || poll 60 hydrated_all "$d/m" || die "round $round: hydration did not finish"
	unmount_clone "$d/m" "$d/meta"
	cp --sparse=always "$d/dest" "$d/dest0"
	cp "$d/meta" "$d/meta0"

	CLONEFS_WRITELOG=$d/wlog mount_clone_fg "$T/src" "$d/dest" "$d/meta" "$d/m" "$opts"
	$WORKLOAD run "$d/m/image" "$d/acks" --region 65536 --ops "$((ops / ${threads:-1}))" \
		--seed "$round" --threads "${threads:-1}" --sync "$sync" \
		$([ "$open" = direct ] && echo --direct) > /dev/null ||
		die "round $round: workload failed"
	unmount_clone "$d/m" "$d/meta"
	opts+=${hydrated:+, fully hydrated}${threads:+, $threads writers}
	reap "$DAEMON_PID" || die "round $round: daemon failed"

	rc=0
	out=$("$REPLAY" --log "$d/wlog" --source "$T/src" --dest "$d/dest0" \
		--meta "$d/meta0" --acks "$d/acks" --final-dest "$d/dest" \
		--final-meta "$d/meta" --every-write --random 1 --seed "$round" \
		--max-failures 3) || rc=$?
	sum=$(echo "$out" | tail -n 1)
	checks=$(echo "$sum" | sed -n 's/.*, \([0-9]*\) acknowledged-block checks.*/\1/p')
	writes=$(echo "$sum" | sed -n 's/.* \([0-9]*\) write, .*/\1/p')
	acks=$(wc -l < "$d/acks")
	if [ $rc -ne 0 ]; then
		echo "FAIL $sync/$open ($opts): $sum"
		echo "$out" | sed '$d' | sed 's/^/    /'
		failed=$((failed + 1))
	elif [ "${checks:-0}" -eq 0 ] || [ "${writes:-0}" -lt "$ops" ] || [ "$acks" -lt "$ops" ]; then
		# the checker must have had something to check
		echo "FAIL $sync/$open ($opts): vacuous: $acks acks, $sum"
		failed=$((failed + 1))
	else
		echo "ok   $sync/$open ($opts): $sum"
	fi
	rm -f "$d/wlog"
done
[ $failed -eq 0 ] || die "$failed of $round rounds lost acknowledged synchronous writes"
pass
