# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): how a command reaches it,
# and the commands that replace a shell for a deploy key that has none.
#
# A restricted deploy key (authorized_keys: restrict,command="RECEIVER
# --ssh") runs this program whatever the client asked; what it asked is
# $SSH_ORIGINAL_COMMAND, one line of words. Through doas or sudo, the
# words are this program's arguments. Either way every word is checked here
# before any command sees it: letters, digits and . _ : @ = + / - only, no
# "..", and the command must be one of ours. Anything else is refused with
# one line, and the refusal goes to syslog (logger), where the host's
# administrator looks.

RECEIVER=$STATE/receiver
COMMANDS="plan need receive item pull import listings confirm rollback status install-bootloader verify gc \
trust-init trust-add trust-remove set-host-name version install-receiver boottime reboot \
check manifest activate config config-check secrets-key secrets-deliver secrets-activate"

# refuse_access WHY: an attempt at something the receiver does not offer.
refuse_access() {
    if command -v logger >/dev/null 2>&1; then
        logger -t fruixops-receiver -p auth.warning \
            "refused for ${SUDO_USER:-${DOAS_USER:-${USER:-?}}}${SSH_CLIENT:+ from ${SSH_CLIENT%% *}}: $1" \
            2>/dev/null || :
    fi
    die "$1"
}

# forced_words: $SSH_ORIGINAL_COMMAND, checked, as FORCED_WORDS (split by
# the caller with globbing off). No command at all is a shell, or scp/sftp
# asking for one: refused.
forced_words() {
    if [ -z "${SSH_ORIGINAL_COMMAND+set}" ] || [ -z "$SSH_ORIGINAL_COMMAND" ]; then
        refuse_access "this key runs the fruixops receiver only (no shell)"
    fi
    case $SSH_ORIGINAL_COMMAND in
        *[!A-Za-z0-9._:@=+/\ -]*)
            refuse_access "not a receiver command line (characters outside A-Za-z0-9._:@=+/- and space)" ;;
    esac
    FORCED_WORDS=$SSH_ORIGINAL_COMMAND
}

# check_words WORD...: the command is one of ours; no word is empty, holds a
# character outside the set, or a "..".
check_words() {
    found=
    for c in $COMMANDS; do [ "$c" = "${1:-}" ] && found=1; done
    if [ -z "$found" ]; then
        shown=$(printf '%.40s' "${1:-}" | tr -c 'A-Za-z0-9._:@=+/-' '?')
        refuse_access "unknown command '$shown' ($COMMANDS)"
    fi
    for w in "$@"; do
        case $w in
            ''|*[!A-Za-z0-9._:@=+/-]*) refuse_access "bad argument to $1 (characters outside A-Za-z0-9._:@=+/-)" ;;
            *..*) refuse_access "bad argument to $1 ('..' is not allowed)" ;;
        esac
    done
}

# version: the installed receiver's version (the sha256 of its text).
cmd_version() {
    [ $# -eq 0 ] || die "usage: version"
    openssl dgst -sha256 -r "$RECEIVER" | cut -c1-64
}

# install-receiver: stdin: a bundle of "receiver", "statement" and
# "statement.sig". A new receiver is code that will run as root for every
# later command, so it is installed only on a statement "receiver <sha256>"
# for this host, signed by a key this host trusts (as for trust changes):
# a deploy key alone cannot change what it runs.
cmd_install_receiver() {
    [ $# -eq 0 ] || die "usage: install-receiver"
    lock "install-receiver"
    new_tmp
    verify_trust receiver "-"
    new=$TMP/bundle/receiver
    sh -n "$new" 2>/dev/null || die "the new receiver is not a shell program"
    chmod 755 "$new"
    mkdir -p "$STATE"
    tmp=$(temp_beside "$RECEIVER")
    cp "$new" "$tmp"
    chmod 755 "$tmp"
    flush "$tmp"
    mv -f "$tmp" "$RECEIVER"
    flush "$STATE"
    openssl dgst -sha256 -r "$RECEIVER" | cut -c1-64
    echo "signed-by $SIGNER"
}

# boottime: kern.boottime as sysctl prints it.
cmd_boottime() {
    [ $# -eq 0 ] || die "usage: boottime"
    sysctl -n kern.boottime
}

# reboot: shutdown(8) -r now, never in the middle of a deploy another
# fruixops holds: the lock is taken, then let go before the reboot (one held
# across it would be left behind, stale, on the disk).
cmd_reboot() {
    [ $# -eq 0 ] || die "usage: reboot"
    lock "reboot"
    rm -f "$LOCK"
    HOLDING=
    echo "rebooting"
    shutdown -r now >/dev/null 2>&1 </dev/null || die "shutdown -r now failed"
}

# generation_arg N: N names a generation this host has (its manifest).
generation_arg() {
    case ${1:-} in ''|*[!0-9]*) die "bad generation '${1:-}'" ;; esac
    [ -f "$GENS/$1/manifest" ] || die "no generation $1"
}

# check N NAME: run the health check NAME of generation N: "booted" (the
# loader booted generation N's closure, as kenv says) or one that
# generation N's signed manifest carries ("check NAME BASE64-COMMAND").
# The check's own exit status and output are the answer; the controller
# judges them. A check no trusted key signed for that generation never runs.
cmd_check() {
    [ $# -eq 2 ] || die "usage: check GENERATION NAME"
    generation_arg "$1"
    case $2 in ''|*[!A-Za-z0-9._-]*) die "bad check name '$2'" ;; esac
    if [ "$2" = booted ]; then
        closure=$(readlink "$GENS/$1/closure" 2>/dev/null) || die "generation $1 has no closure"
        [ "$(kenv -q fruix.system 2>/dev/null)" = "$closure" ] &&
            [ "$(kenv -q fruix.generation 2>/dev/null)" = "$1" ]
        return
    fi
    code=$(awk -v n="$2" '$1 == "check" && $2 == n && NF == 4 { print $3; exit }' "$GENS/$1/manifest")
    [ -n "$code" ] || die "generation $1's signed manifest has no check '$2'"
    script=$(printf '%s\n' "$code" | openssl base64 -d -A) || die "check '$2' does not decode"
    cd /
    exec sh -c "$script" </dev/null
}

# manifest N|current: print generation N's signed manifest (for plan, diff).
cmd_manifest() {
    [ $# -eq 1 ] || die "usage: manifest GENERATION|current"
    if [ "$1" = current ]; then
        [ -f "$SYSTEM/current/manifest" ] || return 0
        cat "$SYSTEM/current/manifest"
        return
    fi
    generation_arg "$1"
    cat "$GENS/$1/manifest"
}
