#!/bin/bash
# fio with crc32c verification on the image while background hydration runs
# (spec 2.1-2.4, 3.1): a buffered random-write job and a direct=1 libaio one,
# side by side, then their verify phases; zero mismatches. After a remount
# the data still verifies, and once hydration is done it verifies in DEST.
. "$(dirname "$0")/lib.sh"

M=$((1024 * 1024))
make_source "$T/src" 256

# Each job writes half its 128 MiB in random blocks; background hydration
# copies what they do not touch, racing the writes.
cat > "$T/verify.fio" <<EOF
[global]
filename=\${IMAGE}
rw=randwrite
size=128m
io_size=64m
verify=crc32c
do_verify=1
verify_fatal=1
randrepeat=1
fallocate=none
verify_state_save=0

[buffered]
ioengine=psync
bs=4k
offset=0

[direct]
ioengine=libaio
direct=1
iodepth=32
bs=4k
offset=128m
EOF

# run_fio IMAGE [ARGS]: both jobs succeed, every byte written or verified
run_fio() {
	local image=$1; shift
	IMAGE=$image fio --output-format=json --output="$T/fio.json" "$@" "$T/verify.fio" \
		> "$T/fio.out" 2>&1 || die "fio $*: $(head -n 20 "$T/fio.out"; grep '"error"' "$T/fio.json")"
	! grep -qi 'verify' "$T/fio.out" || die "fio $*: $(cat "$T/fio.out")"
	python3 - "$T/fio.json" "$*" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
want = 64 << 20  # --verify_only counts the writes it skips too
for j in jobs:
    w, r = j["write"]["io_bytes"], j["read"]["io_bytes"]
    print(f"# {j['jobname']}: error {j['error']}, wrote {w >> 20} MiB, verified {r >> 20} MiB")
    if j["error"] or r != want or w != want:
        sys.exit(f"FAIL: fio job {j['jobname']}: error {j['error']}, wrote {w}, read {r}")
if len(jobs) != 2:
    sys.exit("FAIL: expected two fio jobs")
PY
}

# round REGION-SIZE: fio on a fresh clone, a remount, DEST after hydration
round() {
	local total=$((256 * M / $1)) before after copied

	log "region size $1"
	rm -f "$T/dest" "$T/meta"
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "region_size=$1,hydration_rate=8M"
	before=$(hydrated_count "$T/m")
	run_fio "$T/m/image"
	after=$(hydrated_count "$T/m")
	copied=$(json_field "$T/m" bytes_copied)
	log "hydrated regions: $before before fio, $after after, of $total; $((copied / M)) MiB copied"
	[ "$before" -lt "$total" ] || die "hydration was done before fio started"
	# 4 KiB regions: every fio write covers whole regions, so all copies
	# are background ones, and they must still be going on at the end
	if [ "$1" = 4096 ]; then
		[ "$after" -lt "$total" ] || die "hydration finished before fio did"
		[ "$copied" -gt 0 ] || die "no background copies during fio"
	fi
	unmount_clone "$T/m" "$T/meta"

	# a fresh mount (no page cache): everything verifies
	mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" "region_size=$1"
	run_fio "$T/m/image" --verify_only
	poll 90 hydrated_all "$T/m" || die "hydration did not finish"
	unmount_clone "$T/m" "$T/meta"
	# and DEST alone holds it
	run_fio "$T/dest" --verify_only
}

# 64 KiB regions: the 4k writes are partial, so they hydrate first
round 65536
round 4096
# the check itself catches damage: zero 1 MiB of DEST and it fails
dd if=/dev/zero of="$T/dest" bs=1M count=1 seek=1 conv=notrunc status=none
IMAGE=$T/dest fio --verify_only "$T/verify.fio" > "$T/fio.out" 2>&1 &&
	die "fio --verify_only accepted a damaged image"
grep -qi 'verify' "$T/fio.out" || die "fio failed, but not on verification: $(tail "$T/fio.out")"
pass
