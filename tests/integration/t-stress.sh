#!/bin/bash
# timeout: 480
# Stress (issue 8): fio writes with crc32c verification, background
# hydration and remounts in random combinations, for STRESS_SECONDS
# (180 in CI, to keep the whole check under 15 minutes; 1800 for the long mode). Every round's data must verify
# after a remount, and DEST must verify once hydration is done. 0 errors.
. "$(dirname "$0")/lib.sh"

seconds=${STRESS_SECONDS:-180}
seed=${STRESS_SEED:-$RANDOM}
RANDOM=$seed
log "stress for $seconds s, seed $seed"
make_source "$T/src" 192
verified=0 rounds=0 remounts=0

# fio_job MODE IMAGE ROUND: write (mode w) or verify (mode v) round ROUND's
# blocks: the same seed and layout in both, so verify knows what to expect.
fio_job() {
	local args=(--name=r$3 --filename="$2" --rw=randwrite --bsrange=4k-64k
		--size=64m --offset=$((($3 % 2) * 64))m --io_size=24m --randseed=$3
		--verify=crc32c --verify_fatal=1 --fallocate=none --verify_state_save=0
		--output-format=json --output="$T/fio.json")
	if [ $(($3 % 3)) = 0 ]; then
		args+=(--ioengine=libaio --direct=1 --iodepth=16 --bs=4k --bsrange=4k-4k)
	else
		args+=(--ioengine=psync --end_fsync=1)
	fi
	[ "$1" = v ] && args+=(--verify_only)
	[ "$1" = w ] && args+=(--do_verify=0)
	fio "${args[@]}" > "$T/fio.out" 2>&1 || die "round $3 fio $1: $(head -n 5 "$T/fio.out")"
	python3 - "$T/fio.json" "$1" <<'PY' || die "round $3: fio $1 reported errors"
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
sys.exit(1 if j["error"] else 0)
PY
}

start=$SECONDS
opts_for() {
	local rs=(4k 64k 1M) bs=(1 4 16 64) rate=(0 16M 64M)
	echo "region_size=${rs[$1]},hydration_batch_size=${bs[RANDOM % 4]},hydration_rate=${rate[RANDOM % 3]}"
}
while [ $((SECONDS - start)) -lt "$seconds" ]; do
	# a fresh clone with random geometry every few rounds
	rm -f "$T/dest" "$T/meta"
	geo=$((RANDOM % 3))
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "$(opts_for $geo)"
	first=$((rounds + 1))
	for _ in 1 2 3; do
		rounds=$((rounds + 1))
		fio_job w "$T/m/image" $rounds
		# the writes persist through an unmount and remount, mid-hydration
		if [ $((RANDOM % 2)) = 0 ]; then
			unmount_clone "$T/m" "$T/meta"
			mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "$(opts_for $geo)"
			remounts=$((remounts + 1))
		fi
		fio_job v "$T/m/image" $rounds
		verified=$((verified + 24))
	done
	# the newest round per offset half must verify in DEST after hydration
	message "$T/m" hydration_rate 0
	poll 120 hydrated_all "$T/m" || die "hydration did not finish"
	unmount_clone "$T/m" "$T/meta"
	$CLONEFS check "$T/meta" >/dev/null || die "check failed after round $rounds"
	for r in $((rounds - 1)) $rounds; do
		[ $r -ge $first ] || continue
		fio_job v "$T/dest" $r
		verified=$((verified + 24))
	done
done
log "$rounds rounds, $remounts remounts, $((verified / 1024)).$((verified % 1024 * 10 / 1024)) GiB verified, 0 errors"
pass
