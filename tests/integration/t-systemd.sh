#!/bin/bash
# The systemd side (issue 27), without a running systemd: the units parse
# (systemd-analyze verify), the example fstab lines make the dependencies
# mount.clonefs(8) promises (systemd-fstab-generator), and the command of
# clonefs-wait@.service returns once a real clone is fully hydrated.
. "$(dirname "$0")/lib.sh"

if ! command -v systemd-analyze > /dev/null; then
	echo "SKIP: no systemd-analyze (package systemd) to verify the units with"
	pass
	exit 0
fi
S=$TOP/systemd
verify() { systemd-analyze verify --man=no "$@" 2>&1 | grep -v 'SourcePath= path' || true; }

# Units the examples name, as stand-ins; found through SYSTEMD_UNIT_PATH
mkdir -p "$T/units"
for u in vm.service vm2.service vm3.service nbd@.service; do
	printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' > "$T/units/$u"
done
export SYSTEMD_UNIT_PATH=$T/units:

# 1. the wait template, its ExecStart pointed at this build
sed "s|@sbindir@|$(dirname "$CLONEFS")|" "$S/clonefs-wait@.service.in" > "$T/units/clonefs-wait@.service"
out=$(verify clonefs-wait@mnt-vm.service)
[ -z "$out" ] || die "clonefs-wait@.service: $out"
grep -q "^ExecStart=.*/clonefs wait " "$TOP/systemd/clonefs-wait@.service" 2>/dev/null ||
	die "the built clonefs-wait@.service has no clonefs wait (run scripts/build)"

# 2. the example .mount unit
out=$(verify "$S/mnt-vm.mount")
[ -z "$out" ] || die "mnt-vm.mount: $out"

# the man page shows the example unit as it is
man=$(sed 's/\\-/-/g' "$TOP/docs/mount.clonefs.8")
grep -v '^#' "$S/mnt-vm.mount" | while read -r line; do
	[ -z "$line" ] || grep -qxF -- "$line" <<< "$man" || die "mount.clonefs.8 lacks '$line' of mnt-vm.mount"
done

# and the fstab lines (a man page line ending in \e goes on on the next)
joined=$(python3 -c 'import sys; print(sys.stdin.read().replace("\\e\n", ""))' <<< "$man")
grep -v '^#' "$S/fstab.example" | while read -r line; do
	grep -qxF -- "$line" <<< "$joined" || die "mount.clonefs.8 lacks the fstab line '$line'"
done

# 3. the example fstab lines, through the generator systemd runs at boot
gen=/lib/systemd/system-generators/systemd-fstab-generator
if [ -x $gen ]; then
	mkdir -p "$T/gen"
	SYSTEMD_FSTAB=$S/fstab.example $gen "$T/gen" "$T/gen" "$T/gen" ||
		die "systemd-fstab-generator refused fstab.example"
	out=$(verify "$T/gen/mnt-vm.mount" "$T/gen/mnt-vm2.mount" "$T/gen/mnt-vm3.mount")
	[ -z "$out" ] || die "generated units: $out"
	m=$T/gen/mnt-vm.mount
	grep -qx 'Type=clonefs' "$m" || die "fstab line 1: not Type=clonefs"
	grep -qx 'Before=vm.service' "$m" || die "fstab line 1: not before vm.service"
	grep -qx 'RequiresMountsFor=/images /var/lib/vm' "$m" || die "fstab line 1: no RequiresMountsFor"
	[ -L "$T/gen/vm.service.requires/mnt-vm.mount" ] || die "fstab line 1: vm.service does not require it"
	m=$T/gen/mnt-vm2.mount
	grep -qx 'Requires=nbd@nbd0.service' "$m" || die "fstab line 2: x-systemd.requires= lost"
	[ -L "$T/gen/remote-fs.target.requires/mnt-vm2.mount" ] ||
		die "fstab line 2: _netdev did not make it a remote mount"
	m=$T/gen/mnt-vm3.mount
	grep -qx 'What=nbd://images.example.com/golden' "$m" || die "fstab line 3: not the NBD URI"
	grep -qx 'Before=vm3.service' "$m" || die "fstab line 3: not before vm3.service"
	[ -L "$T/gen/remote-fs.target.requires/mnt-vm3.mount" ] ||
		die "fstab line 3: _netdev did not make the NBD URI a remote mount"
	# the example unit and the first fstab line agree
	for k in What Where Type Before RequiresMountsFor; do
		a=$(grep "^$k=" "$S/mnt-vm.mount") b=$(grep "^$k=" "$T/gen/mnt-vm.mount" | grep -v local-fs)
		[ "$a" = "$b" ] || die "mnt-vm.mount and fstab.example differ: '$a' vs '$b'"
	done
else
	echo "SKIP: fstab lines: no $gen"
fi

# 4. the template's command, for a real clone: returns once all is copied
make_source "$T/src" 8
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" region_size=4k,hydration_rate=4M
inst=$(systemd-escape --path "$T/m")
out=$(verify "clonefs-wait@$inst.service")
[ -z "$out" ] || die "clonefs-wait@$inst.service: $out"
cmd=$(sed -n 's/^ExecStart=//p' "$T/units/clonefs-wait@.service")
cmd=${cmd//%f/$T/m}
log "ExecStart for clonefs-wait@$inst.service: $cmd"
timeout 60 $cmd > "$T/wait.log" || die "the unit's command failed: $(cat "$T/wait.log")"
hydrated_all "$T/m" || die "the unit's command returned before hydration finished"
unmount_clone "$T/m" "$T/meta"
cmp "$T/src" "$T/dest" || die "DEST is not a full copy"
pass
