#!/bin/sh
# fruixops receiver: the only fruixops code that runs on a host.
#
# POSIX sh, tar, openssl (3.0+) and base utilities; no Python, no agent. It
# trusts nothing the controller says without checking it here: a manifest is
# accepted only when its Ed25519 signature verifies against a key in
# $STATE/trusted/, it names this host, has not expired and its serial is above
# the last one accepted; an item lands in /frx/store only when its archive's
# sha256 and size match that manifest, by rename from a hidden temporary
# directory on the same file system. Files that must survive a crash are
# written to a temporary file, flushed and renamed; symlinks are switched by
# renaming a new link over the old one.
#
# What the host boots is FreeBSD's loader's business: a generation becomes the
# default when /boot/loader.conf.d/fruix.conf names it (kernel=, init_exec=,
# fruix.system=, fruix.generation=), and a trial is a one-shot
# /boot/nextboot.conf (nextboot(8)). What booted is `kenv fruix.generation`.
#
# The program is installed on a host as one file, made of these parts of
# fruixops/host/ in this order (fruixops/remote/receiver.py puts them together):
#   receiver.sh  this header, common helpers, the lock
#   land.sh      manifests, items: verify and land
#   tree.sh      an item's tree: its audit, shape and listing
#   reuse.sh     files the store already holds: what to ask for, linking
#                them, an assembled item held to its listing
#   cache.sh     items from an HTTP cache (pull) or a bundle file (import)
#   loader.sh    the loader's files read as FreeBSD's loader reads them:
#                what overrides fruix.conf, a pending one-shot, the kernel
#                it loaded, whether it can reach the store
#   switch.sh    generations, loader files, boot state, the bootloader
#   gc.sh        garbage collection
#   trust.sh     trusted keys, host name
#   config.sh    activation: a system's configuration (files, accounts)
#                applied as one change; what changed since, by hand
#   secrets.sh   this host's secret key, signed deliveries of sealed
#                secrets, their decryption into place at activation
#   access.sh    restricted keys and doas/sudo: argument checks, and the
#                commands that stand in for a shell (version, reboot, check...)
#   main.sh      the command dispatch
#
# Commands (stdin, where used, carries a tar "bundle"):
#   plan [--esp DIR]   bundle: manifest, manifest.sig. Verify; print the items
#                      this host lacks, its state, its installed bootloader
#                      and the tool it would pull with. Changes nothing.
#   receive [--trial] [--deployer WHO]
#                      stdin: the manifest's lines, then "sig BASE64". Take the
#                      lock, verify, print "ready PID", then wait for "commit"
#                      while the items arrive (item, below); check and land
#                      them, record generation N+1 and make it the loader's
#                      default (--trial: the one-shot next boot instead).
#                      "ready PID TOKEN": item, listings and pull for this
#                      receive must send the line "token TOKEN" first on
#                      their stdin (the pid is no secret; the token is).
#   item PID NAME [zstd|delta|delta.zstd]
#                      stdin: the token line, then one item's archive (with
#                      "zstd": its compressed
#                      form), for the receive PID in progress: unpacked out of
#                      sight while the sha256 of the bytes as sent is taken
#                      (streamed, never stored whole); it must be the
#                      manifest's for that form. A "delta" holds only the
#                      file contents this host said it lacks; the rest is
#                      linked from the store, once every entry it holds is
#                      one its signed listing names, of the same kind. Every
#                      item, however it came, is listed here and must hash
#                      to the manifest's listing; a refused one is forgotten
#                      (it may come again whole).
#   pull [--within S] PID NAME URL tar|zstd|delta|delta.zstd [DSHA]
#                      stdin: the token line. Item NAME for the receive PID
#                      in progress (or the delta DSHA of it), fetched by this
#                      host from the cache at URL (fetch(1), curl or wget)
#                      and taken exactly as a sent one; refused, and nothing
#                      of it kept, if it is missing, cut, tampered or not
#                      fetched within S seconds (the tool is ended).
#   import FILE|-      a bundle (a file on this host -- for a root login
#                      only --, or stdin): verify its
#                      manifest for this host as receive does, take the items
#                      this host lacks from it, land them and make the new
#                      generation the loader's default.
#   listings PID [zstd]
#                      stdin: the token line, then file listings of items
#                      being received, each after
#                      a line "=NAME"; each must hash to the manifest's listing
#                      sha256. Prints, per item, "whole NAME" or "delta NAME"
#                      and the "need KIND SHA" contents this host lacks.
#   listings PID pull URL NAME...
#                      stdin: the token line. The same, the listings of
#                      items NAME fetched by this host from the cache at URL.
#   need               bundle: manifest, manifest.sig, listings. What a receive
#                      would print for `listings` (and "reuse yes" first when
#                      it would be asked at all). Changes nothing.
#   confirm N          make generation N the default (after it booted: a trial
#                      that passed its checks).
#   rollback [N]       make generation N (default: the rollback one) the default.
#   status [--esp DIR] print the state: booted (from kenv: generation,
#                      system, kernel file loaded), boot time, the loader's
#                      default, a pending one-shot, current, rollback, the
#                      loader files that override fruix.conf ("FILE:LINE:
#                      what"), whether the store is on /boot's file system,
#                      an unconfirmed trial, and one line per generation
#                      (--esp: and the installed bootloader).
#   install-bootloader N [--esp DIR]
#                      install generation N's bootloader (loader.efi on the
#                      ESP and in /boot, /boot/lua), keeping the previous copy
#                      beside it (.old). DIR (plan and status too) must be a
#                      directory only root controls: owned by root, writable
#                      by no one else, no symlink along its path.
#   verify             re-hash every item the generations refer to against the
#                      listing recorded when it landed; exit 2 on any drift.
#   gc KEEP [--dry-run] [--pin N]...
#                      delete generations beyond the newest KEEP (never the
#                      current, rollback, default, pending, trial, booted or
#                      pinned ones), then the store items no remaining generation
#                      refers to.
#   trust-init         bundle: NAME.pem files. Trust them, only if this host
#                      trusts no key yet (first contact).
#   trust-add NAME     bundle: key.pem, statement, statement.sig. Trust the
#                      key, if a key this host trusts signed the statement
#                      "add NAME <sha256 of key.pem>" for this host.
#   trust-remove NAME  bundle: statement, statement.sig. Stop trusting key
#                      NAME (never the last one), if a trusted key signed
#                      "remove NAME" for this host.
#   set-host-name NAME record the inventory name this host answers to (once).
#   version            print the installed receiver's sha256.
#   install-receiver   bundle: receiver, statement, statement.sig. Replace this
#                      program, if a trusted key signed "receiver <sha256>"
#                      for this host.
#   secrets-key [--new]
#                      print this host's secret public key (X25519; made on
#                      first use; the private key never leaves the host).
#                      --new: a new pair, the old private key kept while a
#                      kept sealed secret needs it.
#   secrets-deliver    bundle: secrets, secrets.sig. Keep the sealed secrets
#                      of a delivery signed by a trusted key for this host
#                      (unexpired, serial above the last delivery's, every
#                      MAC verified, or nothing kept), then decrypt the
#                      running system's secrets into place.
#   secrets-activate [SYSTEM]
#                      decrypt the secrets SYSTEM (a generation's closure;
#                      default: the running one) lists in config/secrets
#                      into /var/run/fruix/secrets (a tmpfs) or their
#                      declared paths, with owner and mode.
#   boottime           print kern.boottime.
#   reboot             shutdown -r now (under the lock).
#   check N NAME       run health check NAME of generation N: "booted", or one
#                      its signed manifest carries; exit with the check's status.
#   manifest N|current print generation N's (or the current) manifest.
#   activate N         apply generation N's configuration now (files, accounts,
#                      then the services whose restart key changed), when it
#                      runs the kernel and base the host runs; else print
#                      "reboot-needed WHY" and change nothing.
#   activate --boot SYSTEM
#                      the same at boot, for the booted SYSTEM, before
#                      shepherd starts (its activate script runs this).
#   config N|running   a tar of generation N's (or the running system's)
#                      config/ and etc/rc.conf, for plan and diff.
#   config-check       "edited PATH"/"missing PATH": managed files changed
#                      by hand since the last activation.
#
# Invoked as "receiver --ssh" (the forced command of a restricted deploy key),
# the command is $SSH_ORIGINAL_COMMAND, split into words. In every mode the
# words are checked before use (access.sh); anything else is refused.
#
# Exit status: 0 done; 2 refused or failed (one line on stderr says why,
# nothing changed); 3 another fruixops holds the lock (it is named).
set -eu
umask 022

STORE=/frx/store
GCROOTS=/frx/var/fruix/gcroots
SUMS=/frx/var/fruix/items
SYSTEM=/var/lib/fruix/system
GENS=$SYSTEM/generations
STATE=/var/lib/fruix/fruixops
LOCK=$STATE/lock
BOOT=/boot
# shellcheck disable=SC2034 # used by switch.sh, a part of the same program
LOADER_CONF=$BOOT/loader.conf.d/fruix.conf
# shellcheck disable=SC2034
NEXTBOOT_CONF=$BOOT/nextboot.conf
TMP=
HOLDING=
# shellcheck disable=SC2034 # set by main.sh, read by cache.sh
RESTRICTED=     # set when a restricted deploy key runs this (--ssh)

die() { echo "refused: $*" >&2; exit 2; }

# A full store file system fails whichever step writes next (tar, sort, cut,
# mkdir...), each in its own words: any failure is explained here, once.
# (No answer from df, as for a store not made yet, is not "full".)
store_full() { df -Pk "$STORE" 2>/dev/null | awk 'NR == 2 { full = $4 < 1024 } END { exit !full }'; }

# remove_tree PATH...: delete trees that may hold read-only directories. Only
# directories are made writable: a file may be a hard link shared with an item
# that stays, and its mode must not change.
remove_tree() {
    for t in "$@"; do
        if [ -d "$t" ] && [ ! -L "$t" ]; then
            find "$t" -type d -exec chmod u+w {} + 2>/dev/null || :
        fi
        rm -rf "$t"
    done
}

cleanup() {
    status=$?
    # A controller gone mid-command (SIGPIPE on a write) still gets its lock
    # and temporary files cleaned up: what is written from here may fail.
    trap '' PIPE
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ] && store_full; then
        echo "refused: disk full on $STORE" >&2
    fi
    if [ -n "$TMP" ]; then remove_tree "$TMP"; fi
    if [ -n "${SECRETS_TMP:-}" ]; then rm -rf "$SECRETS_TMP"; fi
    if [ -n "$HOLDING" ]; then rm -f "$LOCK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# A write to a controller that went away ends the receiver through its EXIT
# trap (by default SIGPIPE would kill it outright, leaving the lock). Commands
# it runs get SIGPIPE's default again.
trap 'exit 141' PIPE

# --- files and links ------------------------------------------------------

# flush PATH...: PATH's data (a file's, or a directory's entries) on stable
# storage. FreeBSD has fsync(1); GNU coreutils' sync takes file names.
flush() {
    if command -v fsync >/dev/null 2>&1; then fsync "$@"; else sync "$@" 2>/dev/null || sync; fi
}

# flush_tree DIR...: every file and directory below DIR on stable storage. One
# syncfs(2) where GNU sync offers it (-f); else fsync(1) of each, as on FreeBSD.
flush_tree() {
    if sync -f "$1" 2>/dev/null; then return 0; fi
    find "$@" \( -type f -o -type d \) -exec fsync {} +
}

# temp_beside FILE [MODE]: a new empty temporary file beside FILE, made by
# mktemp (O_EXCL: never a name someone could have planted a link at), MODE
# (default 0644).
temp_beside() {
    t=$(mktemp "$(dirname "$1")/.$(basename "$1").new.XXXXXX") ||
        die "cannot make a temporary file beside $1"
    chmod "${2:-644}" "$t"
    echo "$t"
}

# publish FILE [MODE]: stdin becomes FILE (MODE, default 0644), all or
# nothing: a temporary file beside it, flushed, renamed over FILE, the
# directory flushed.
publish() {
    d=$(dirname "$1")
    mkdir -p "$d"
    new=$(temp_beside "$1" "${2:-644}")
    cat >"$new"
    flush "$new"
    mv -f "$new" "$1"
    flush "$d"
}

# Unpacking never restores extended attributes (file capabilities), ACLs or
# file flags, nor owners: store items are plain files, links and directories.
# shellcheck disable=SC2034 # used by land.sh
if tar --version 2>/dev/null | grep -q bsdtar; then
    TAR_SAFE="--no-same-owner --no-xattrs --no-acls --no-fflags"
else
    TAR_SAFE="--no-same-owner --no-xattrs --no-acls --no-selinux"
fi

# GNU mv needs -T and BSD mv needs -h to rename over a symlink to a directory
# instead of moving into it.
if mv --help 2>&1 | grep -q -- '-T'; then MVNOFOLLOW=-T; else MVNOFOLLOW=-h; fi

# replace_link TARGET LINK: point LINK at TARGET by renaming a new link over it.
replace_link() {
    new="$(dirname "$2")/.$(basename "$2").new.$$"
    rm -f "$new"
    ln -s "$1" "$new"
    mv -f "$MVNOFOLLOW" "$new" "$2"
}

# --- lock -------------------------------------------------------------------

# boottime: when this host booted, "SEC.USEC" from kern.boottime (empty if
# the kernel does not say). It changes at every boot.
boottime() {
    sysctl -n kern.boottime 2>/dev/null |
        sed -n 's/^{ *sec = \([0-9]*\), *usec = \([0-9]*\) *}.*/\1.\2/p'
}

# started PID: when process PID started (ps's lstart, spaces as _), or empty.
started() { ps -o lstart= -p "$1" 2>/dev/null | tr -s ' ' '_' | sed 's/^_//; s/_$//'; }

# One fruixops at a time. The lock is a symlink in $STATE whose target names
# the holder (pid, boot time, since, who, the process's start time). It is
# stale when the host has booted since it was taken (FreeBSD's /var is no
# tmpfs: a reboot does not clear it), or its process is gone, or that pid now
# belongs to a process that started at another time (a reused pid); a stale
# lock is taken over under a short recovery lock, after checking again that
# it is still the same stale lock.
lock() {
    mkdir -p "$STATE"
    who=$(printf '%s' "${1:-?}" | tr -c 'A-Za-z0-9@._:-' '_')
    BOOTTIME=$(boottime)
    holder="pid=$$,boot=${BOOTTIME:-?},since=$(date +%s),by=$who,cmd=$CMD,start=$(started $$)"
    if ln -s "$holder" "$LOCK" 2>/dev/null; then HOLDING=1; return 0; fi
    old=$(readlink "$LOCK" 2>/dev/null) || old=
    oldpid=${old#pid=}; oldpid=${oldpid%%,*}
    case $oldpid in ''|*[!0-9]*) oldpid= ;; esac
    case $old in *,boot=*) oldboot=${old#*,boot=}; oldboot=${oldboot%%,*} ;; *) oldboot='?' ;; esac
    case $old in *,start=?*) oldstart=${old##*,start=} ;; *) oldstart= ;; esac
    stale=
    if [ -n "$oldpid" ] && ! kill -0 "$oldpid" 2>/dev/null; then stale=1; fi
    if [ -n "$oldpid" ] && [ -n "$oldstart" ] && [ "$(started "$oldpid")" != "$oldstart" ]; then
        stale=1
    fi
    if [ -n "$BOOTTIME" ] && [ "$oldboot" != '?' ] && [ "$oldboot" != "$BOOTTIME" ]; then
        stale=1
    fi
    if [ -n "$stale" ] && recovery_lock; then
        if [ "$(readlink "$LOCK" 2>/dev/null)" = "$old" ]; then
            rm -f "$LOCK"
            echo "note: recovered a stale lock ($old)" >&2
        fi
        rm -f "$LOCK.recover"
        if ln -s "$holder" "$LOCK" 2>/dev/null; then HOLDING=1; return 0; fi
        old=$(readlink "$LOCK" 2>/dev/null) || old=
    fi
    echo "locked: another deploy holds this host ($old)" >&2
    exit 3
}

# recovery_lock: the short lock under which a stale lock is taken over. It
# names its holder too, so that one left by a receiver killed while
# recovering is itself recovered.
recovery_lock() {
    if ln -s "pid=$$" "$LOCK.recover" 2>/dev/null; then return 0; fi
    r=$(readlink "$LOCK.recover" 2>/dev/null) || r=
    rpid=${r#pid=}
    case $rpid in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$rpid" 2>/dev/null && return 1
    [ "$(readlink "$LOCK.recover" 2>/dev/null)" = "$r" ] && rm -f "$LOCK.recover"
    ln -s "pid=$$" "$LOCK.recover" 2>/dev/null
}

# Holding the lock, no other receiver runs: temporary files are leftovers of
# killed ones (none of them is visible as a store item, a generation or a
# loader file).
clean_leftovers() {
    for old in "$STORE"/.fruixops-tmp.*; do
        # plan and verify work unlocked in a directory of their own: not a leftover
        # while its process lives.
        pid=${old##*.}
        case $pid in ''|*[!0-9]*) continue ;; esac
        if [ "$pid" != $$ ] && kill -0 "$pid" 2>/dev/null; then continue; fi
        remove_tree "$old"
    done
    for old in "$STORE"/.gc-* "$GENS"/.new.* "$GENS"/.gc.* \
            "$SUMS"/.*.sums.new "$SYSTEM"/.*.new.* "$GCROOTS"/.*.new.* "$STATE"/.*.new.* \
            "$STATE"/trusted/.*.new.* \
            "$BOOT"/loader.conf.d/.*.new.* "$BOOT"/.*.new.*; do
        if [ -e "$old" ] || [ -L "$old" ]; then remove_tree "$old"; fi
    done
    # A gc killed between taking a generation away and removing its gcroot
    # leaves the gcroot: no generation refers to it, so it goes now (else
    # Fruix's collector would keep its closure for good).
    for r in "$GCROOTS"/system-*; do
        n=${r##*/system-}
        case $n in ''|*[!0-9]*) continue ;; esac
        if [ -L "$r" ] && [ ! -d "$GENS/$n" ]; then rm -f "$r"; fi
    done
    bootloader_recover
}

new_tmp() {
    mkdir -p "$STORE"
    TMP=$STORE/.fruixops-tmp.$$
    rm -rf "$TMP"
    mkdir -m 700 "$TMP"
}
