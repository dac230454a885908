#!/bin/bash
# The bash completion (issue 27) loads through bash-completion, for clonefs
# and for mount.clonefs, and completes subcommands, options, messages,
# clonefs mount points and the -o list of mount.clonefs.
. "$(dirname "$0")/lib.sh"

BC=/usr/share/bash-completion/bash_completion
[ -f $BC ] || die "no $BC: scripts/deps installs bash-completion"

make_source "$T/src" 1
mount_clone "$T/src" "$T/dest" "$T/meta" "$T/m" no_hydration

cat > "$T/complete.sh" <<'SH'
. /usr/share/bash-completion/bash_completion
# what the installed file does: completions/NAME is loaded on first use
BASH_COMPLETION_USER_DIR=$DIR
__load_completion clonefs || exit 1
complete -p clonefs mount.clonefs | sed 's/^/complete: /'
# comp LINE: what completes LINE with the cursor at its end; words split
# as bash splits them (blanks, and "=" as a word of its own)
comp() {
	local w f
	COMP_LINE=$1 COMP_POINT=${#1} COMP_WORDS=() COMPREPLY=()
	for w in $1; do
		while [[ $w == *=* ]]; do COMP_WORDS+=("${w%%=*}" "="); w=${w#*=}; done
		COMP_WORDS+=("$w")
	done
	[[ $1 == *' ' ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	f=$(complete -p "${COMP_WORDS[0]}" | awk '{ print $3 }')
	$f "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
	echo "$1|${COMPREPLY[*]}"
}
comp "clonefs st"
comp "clonefs "
comp "clonefs wait --t"
comp "clonefs status ${MNT%m}"
comp "clonefs message $MNT "
comp "clonefs message $MNT hydration_r"
comp "mount.clonefs src -o um"
comp "mount.clonefs src -o dest=/x,region_s"
comp "mount.clonefs src -o no_hydration,region_size=6"
comp "mount.clonefs -"
comp "clonefs profile "
comp "clonefs profile save ${MNT%m}"
comp "mount.clonefs src -o no_read"
SH
# the completion from the checkout, as bash-completion finds an installed one
mkdir -p "$T/bc/completions"
cp "$TOP/completion/clonefs" "$T/bc/completions/clonefs"
out=$(DIR=$T/bc MNT=$T/m bash "$T/complete.sh" 2>&1) || die "completion did not load: $out"
echo "$out"
expect() { grep -qxF -- "$1" <<< "$out" || die "expected '$1'"; }
expect "complete: complete -F _clonefs clonefs"
expect "complete: complete -F _mount_clonefs mount.clonefs"
expect "clonefs st|status"
expect "clonefs |status message wait check dump profile --help --version"
expect "clonefs wait --t|--timeout"
expect "clonefs status $T/|$T/m"
expect "clonefs message $T/m |enable_hydration disable_hydration hydration_threshold hydration_batch_size hydration_rate read_hints prefetch"
expect "clonefs profile |save load merge show"
expect "clonefs profile save $T/|$T/m"
expect "mount.clonefs src -o no_read|no_read_hints"
expect "clonefs message $T/m hydration_r|hydration_rate"
expect "mount.clonefs src -o um|umask="
expect "mount.clonefs src -o dest=/x,region_s|/x,region_size="
expect "mount.clonefs src -o no_hydration,region_size=6|64k"
expect "mount.clonefs -|-o -f -d --help --version"
pass
