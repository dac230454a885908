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
comp "mount.clonefs src -o "
comp "clonefs message $MNT copy_on_read "
comp "clonefs message $MNT "
for c in status message wait check dump profile; do comp "clonefs $c --"; done
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
expect "clonefs message $T/m |enable_hydration disable_hydration hydration_threshold hydration_batch_size hydration_rate copy_on_read read_hints prefetch"
expect "clonefs message $T/m copy_on_read |on off"
expect "clonefs profile |save load merge show"
expect "clonefs profile save $T/|$T/m"
expect "mount.clonefs src -o no_read|no_read_hints"
expect "clonefs message $T/m hydration_r|hydration_rate"
expect "mount.clonefs src -o um|umask="
expect "mount.clonefs src -o dest=/x,region_s|/x,region_size="
expect "mount.clonefs src -o no_hydration,region_size=6|64k"
expect "mount.clonefs -|-o -f -d --help --version"

# Every word the programs take is completed, the lists read from them:
# what completes LINE, one word a line
completed() { grep -F -- "$1|" <<< "$out" | cut -d'|' -f2- | tr ' ' '\n'; }
# missing WHAT LINE WORDS...: die naming the WORDS that LINE does not complete
missing() {
	local what=$1 line=$2 w miss=; shift 2
	for w in "$@"; do
		completed "$line" | grep -qxF -- "$w" || miss+=" $w"
	done
	[ -z "$miss" ] || die "$what not completed:$miss"
	log "$what: all $# completed"
}
# the subcommands clonefs --help lists
cmds=$("$CLONEFS" --help | sed -n 's/^  clonefs \([a-z]*\).*/\1/p')
[ "$(wc -l <<< "$cmds")" -ge 6 ] || die "clonefs --help lists too few commands: $cmds"
missing "subcommands" "clonefs " $cmds
# each subcommand's long options, from its --help
for c in $cmds; do
	opts=$("$CLONEFS" "$c" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u || true)
	[ -z "$opts" ] || missing "options of clonefs $c" "clonefs $c --" $opts
done
# the messages the daemon takes (src/control.c's table)
msgs=$(grep -oE '^\s*\{ "[a-z_]+", MSG_' "$TOP/src/control.c" | cut -d'"' -f2)
[ "$(wc -l <<< "$msgs")" -ge 7 ] || die "too few messages read from control.c: $msgs"
missing "messages" "clonefs message $T/m " $msgs
# the -o options src/options.c and mount/mount.c parse (value options end in
# "="), and those mount.clonefs --help lists
vals=$(sed -n '/^static int apply_value/,/^}/p' "$TOP/src/options.c" |
	grep -oE 'strcmp\(name, "[a-z_]+"' | cut -d'"' -f2 | sed 's/$/=/' | sort -u)
flags=$(sed -n '/^static int apply_flag/,/^}/p' "$TOP/src/options.c" |
	grep -oE '(\{ |strcmp\(name, )"[a-z_]+"' | cut -d'"' -f2 | sort -u)
daemon=$(sed -n '/^static int take_opts/,/^}/p' "$TOP/mount/mount.c" |
	grep -oE 'str(n)?cmp\(o, "[a-z_=]+"' | cut -d'"' -f2 | sort -u)
helped=$("$MOUNT_CLONEFS" --help | sed -n 's/^  \([a-z_]*=\?\)[A-Z]*  .*/\1/p')
for l in vals flags daemon helped; do
	[ "$(wc -w <<< "${!l}")" -ge 3 ] || die "too few options read ($l): ${!l}"
done
missing "mount options" "mount.clonefs src -o " $vals $flags $daemon $helped
pass
