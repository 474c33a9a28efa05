# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): activation, a system's
# configuration (config/ in its item, fruixops/system/config/render.py) applied to
# this host as one change.
#
# Managed files are regular files, copied into place with their owner and
# mode (a daemon may need a file owned by its account, 0600), and recorded in
# $CONF/installed with their sha256. A change is a transaction:
#   1. every new file is staged beside its target (mktemp), root's, 0600, and
#      checked by its validate command (sshd -t -f, nginx -t -c, ...) against
#      the staged copy; any failure removes the staged files: nothing changed;
#   2. a journal ($TXN) lists each target's backup (or that it did not
#      exist), the accounts' backups and the directories made, flushed;
#   3. accounts (master.passwd through pwd_mkdb under its lock, group), then
#      directories, files and links are switched by rename;
#   4. "committed" is written to the journal, then $CONF/installed, then the
#      journal is removed.
# A failure in 3 undoes the journal at once; a crash before 4 is undone by
# the next receiver (or the next boot's activation) before anything else: the
# previous configuration stays in force. A crash after "committed" is rolled
# forward.
#
# A managed file whose content on the host is not what was installed was
# edited by hand: it is copied to $CONF/kept/STAMP/PATH before it is replaced
# or removed, and named ("kept PATH COPY"). A file that was on the host
# before fruixops first managed it is kept in $CONF/originals/PATH, and put
# back when no generation manages it any more.
#
# Accounts: fruixops changes only the users and groups it manages
# ($CONF/accounts: the config/accounts it last applied) and the memberships
# it added to groups it does not manage; an account of the same name that it
# does not manage is taken over only when its number is the declared one.

CONF=$STATE/config
TXN=$CONF/txn
TAB=$(printf '\t')

conf_sha() { openssl dgst -sha256 -r "$1" | cut -c1-64; }

# file_meta FILE: "MODE UID GID" (mode in octal, no leading 0).
file_meta() {
    stat -f '%Lp %u %g' "$1" 2>/dev/null | grep -x '[0-7]* [0-9]* [0-9]*' ||
        stat -c '%a %u %g' "$1" 2>/dev/null
}

# want_meta MODE OWNER GROUP: what file_meta must say (empty when an account
# does not exist yet: the file is staged, and given to it once it does).
want_meta() {
    u=$(id -u "$2" 2>/dev/null) || return 0
    g=$(awk -F: -v g="$3" '$1 == g { print $3; exit }' /etc/group)
    [ -n "$g" ] || return 0
    echo "$(printf %o "0$1") $u $g"
}

# managed_path PATH: a path activation may write (checked on the controller
# too): absolute, plain characters, no . or .. parts, outside the store,
# fruixops's state and the loader's files; every symlink along it root's.
managed_path() {
    case $1 in
        /*) ;; *) die "config: $1 is not an absolute path" ;;
    esac
    case $1 in
        *[!A-Za-z0-9._@+,=:/-]*|*/./*|*/../*|*/.|*/..|*//*) die "config: bad path $1" ;;
        /frx|/frx/*|/var/lib/fruix|/var/lib/fruix/*|/boot|/boot/*|/dev/*|/proc/*) die "config: $1 is not fruixops's to write" ;;
    esac
    p=
    rest=${1#/}
    while [ -n "$rest" ]; do
        part=${rest%%/*}
        p=$p/$part
        case $rest in */*) rest=${rest#*/} ;; *) rest= ;; esac
        [ -z "$rest" ] && break
        if [ -L "$p" ] && [ -z "$(find "$p" -maxdepth 0 -type l -user 0 2>/dev/null)" ]; then
            die "config: $p (on the way to $1) is a symlink root does not own"
        fi
    done
}

# journal LINE: append to the open transaction's journal.
journal() { printf '%s\n' "$*" >>"$TXN/journal"; }

# txn_undo: put back what the journal says was there (newest first).
txn_undo() {
    [ -f "$TXN/journal" ] || { rm -rf "$TXN"; return 0; }
    awk '{ l[NR] = $0 } END { for (i = NR; i > 0; i--) print l[i] }' "$TXN/journal" |
    while IFS="$TAB" read -r what a b; do
        case $what in
            stage) rm -f "$a" ;;
            restore) [ -e "$b" ] || [ -L "$b" ] && mv -f "$MVNOFOLLOW" "$b" "$a" ;;
            remove) rm -f "$a" ;;
            rmdir) rmdir "$a" 2>/dev/null || : ;;
            accounts)
                if [ -f "$TXN/group" ] && ! cmp -s "$TXN/group" /etc/group; then
                    cp -p "$TXN/group" /etc/.group.undo && mv -f /etc/.group.undo /etc/group
                fi
                if [ -f "$TXN/master.passwd" ] && ! cmp -s "$TXN/master.passwd" /etc/master.passwd; then
                    cp -p "$TXN/master.passwd" /etc/.master.passwd.undo &&
                        pwd_mkdb -p -d /etc /etc/.master.passwd.undo
                fi ;;
        esac
    done
    rm -rf "$TXN"
}

# txn_recover: a transaction a killed receiver left: forward if it had
# committed, else undone.
txn_recover() {
    [ -d "$TXN" ] || return 0
    if [ -f "$TXN/committed" ]; then
        [ -f "$TXN/installed" ] && mv -f "$TXN/installed" "$CONF/installed"
        [ -f "$TXN/accounts" ] && mv -f "$TXN/accounts" "$CONF/accounts"
        rm -rf "$TXN"
        echo "note: completed an activation a killed receiver had committed" >&2
    else
        txn_undo
        echo "note: undid an activation a killed receiver left unfinished" >&2
    fi
}

# conf_fail WHY: undo the open transaction and refuse.
conf_fail() {
    txn_undo
    die "$*"
}

# installed_of PATH: the line of $CONF/installed for PATH (empty if none).
installed_of() { awk -F "$TAB" -v p="$1" '$2 == p { print; exit }' "$CONF/installed" 2>/dev/null; }

# backup TARGET: record in the journal how to put TARGET back.
backup() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        n=$(wc -l <"$TXN/journal" | tr -d ' ')
        cp -pP "$1" "$TXN/b.$n" || conf_fail "config: cannot back up $1"
        journal "restore$TAB$1$TAB$TXN/b.$n"
    else
        journal "remove$TAB$1"
    fi
}

# keep_aside PATH WHY: a copy of PATH under $CONF/kept/STAMP, named on stdout.
keep_aside() {
    copy=$CONF/kept/$STAMP$1
    mkdir -p "$(dirname "$copy")"
    cp -pP "$1" "$copy"
    printf 'kept\t%s\t%s\t%s\n' "$1" "$copy" "$2"
}

# make_parents DIR: make DIR (root's, 0755) and its missing parents,
# journaled for undo.
make_parents() {
    [ -d "$1" ] && return 0
    make_parents "$(dirname "$1")"
    mkdir -m 755 "$1" || conf_fail "config: cannot make $1"
    journal "rmdir$TAB$1"
}

# stage_file PATH SHA SOURCE VALIDATE: a copy of SOURCE beside PATH (root,
# 0600), checked against SHA and by VALIDATE; its name on stdout.
stage_file() {
    make_parents "$(dirname "$1")"
    t=$(mktemp "$(dirname "$1")/.$(basename "$1").fruix.XXXXXX") || conf_fail "config: cannot stage $1"
    journal "stage$TAB$t"
    chmod 600 "$t"
    cat "$3" >"$t" || conf_fail "config: cannot stage $1"
    [ "$(conf_sha "$t")" = "$2" ] || conf_fail "config: $1 in the system does not match its sha256"
    if [ "$4" != - ]; then
        line=$(printf '%s\n' "$4" | awk -v f="$t" '{ gsub(/%s/, f); print }')
        if ! out=$(cd / && sh -c "$line" 2>&1 </dev/null); then
            last=$(printf '%s\n' "$out" | grep . | tail -n 1 | tr -c '[:print:]\n' '?')
            conf_fail "config: validate $1 failed ($4): ${last:-no output}; the previous configuration stays"
        fi
    fi
    echo "$t"
}

# --- accounts -----------------------------------------------------------------

# accounts_plan NEW OLD OUTDIR: OUTDIR/group and OUTDIR/master.passwd as they
# must become (from the host's current files), or refused on a conflict with
# an account fruixops does not manage.
accounts_plan() {
    awk -F "$TAB" -v out="$3" -v oldf="$2" '
        function fail(msg) { print "refused: config: " msg > "/dev/stderr"; bad = 1; exit 2 }
        BEGIN {
            while ((getline l < oldf) > 0) {
                split(l, f, "\t")
                if (f[1] == "group") oldg[f[2]] = 1
                else if (f[1] == "user") oldu[f[2]] = 1
                else if (f[1] == "member") oldm[f[2] SUBSEP f[3]] = 1
            }
        }
        $1 == "group" { g[$2] = $3; gm[$2] = $4; gorder[++ng] = $2 }
        $1 == "user" { u[$2] = $0; uorder[++nu] = $2 }
        $1 == "member" { m[$2 SUBSEP $3] = 1 }
        END {
            if (bad) exit 2
            FS = ":"
            n = 0
            while ((getline l < "/etc/group") > 0) {
                split(l, f, ":")
                name = f[1]
                if (name in g) {
                    if (!(name in oldg) && f[3] != g[name]) fail("group " name " exists on this host with gid " f[3] " and is not fruixops'"'"'s (declare gid: " f[3] " to take it over)")
                    seeng[name] = 1
                    grp[++n] = name ":*:" g[name] ":" gm[name]; continue
                }
                if (name in oldg) continue
                for (x in g) if (g[x] == f[3]) fail("gid " f[3] " of group " x " is group " name "'"'"'s on this host")
                # memberships fruixops added to a group it does not manage
                cnt = split(f[4], mem, ",")
                list = ""
                for (i = 1; i <= cnt; i++) {
                    if (mem[i] == "" || ((name SUBSEP mem[i]) in oldm && !((name SUBSEP mem[i]) in m))) continue
                    list = list (list == "" ? "" : ",") mem[i]; have[name SUBSEP mem[i]] = 1
                }
                for (k in m) { split(k, p, SUBSEP); if (p[1] == name && !(k in have)) list = list (list == "" ? "" : ",") p[2]; done[k] = 1 }
                grp[++n] = f[1] ":" f[2] ":" f[3] ":" list
                gidof[name] = f[3]
            }
            for (k in m) if (!(k in done)) { split(k, p, SUBSEP); fail("user " p[2] " is declared in group " p[1] ", which this host does not have") }
            for (i = 1; i <= ng; i++) { gidof[gorder[i]] = g[gorder[i]]; if (!(gorder[i] in seeng)) grp[++n] = gorder[i] ":*:" g[gorder[i]] ":" gm[gorder[i]] }
            for (i = 1; i <= n; i++) print grp[i] > (out "/group")
            n = 0
            while ((getline l < "/etc/master.passwd") > 0) {
                if (l ~ /^#/ || l == "") { pw[++n] = l; continue }
                split(l, f, ":")
                name = f[1]
                if (name in u) {
                    split(u[name], d, "\t")
                    if (!(name in oldu) && f[3] != d[3]) fail("user " name " exists on this host with uid " f[3] " and is not fruixops'"'"'s (declare uid: " f[3] " to take it over)")
                    seenu[name] = 1; oldpw[name] = f[2]; continue
                }
                if (name in oldu) continue
                for (x in u) { split(u[x], d, "\t"); if (d[3] == f[3]) fail("uid " f[3] " of user " x " is user " name "'"'"'s on this host") }
                pw[++n] = l
            }
            for (i = 1; i <= nu; i++) {
                split(u[uorder[i]], d, "\t")
                if (!(d[4] in gidof)) fail("user " d[2] ": no group " d[4] " on this host")
                pass = (d[2] in oldpw) ? oldpw[d[2]] : "*"
                pw[++n] = d[2] ":" pass ":" d[3] ":" gidof[d[4]] "::0:0:" d[7] ":" d[5] ":" d[6]
            }
            for (i = 1; i <= n; i++) print pw[i] > (out "/master.passwd")
        }' "$1"
}

# accounts_install DIR: DIR/group and DIR/master.passwd become the host's,
# under the locks FreeBSD's pw(8) and vipw(8) take (flock on the file), each
# only if the file is still what was read (else someone changed it meanwhile).
accounts_install() {
    if ! cmp -s "$1/group" /etc/group; then
        g=$(temp_beside /etc/group 644)
        journal "stage$TAB$g"
        cat "$1/group" >"$g"
        flush "$g"
        # shellcheck disable=SC2016 # the inner shell expands them
        lockf -k -t 30 /etc/group sh -c 'cmp -s "$1" /etc/group && mv -f "$2" /etc/group' \
            sh "$TXN/group" "$g" || conf_fail "config: /etc/group changed meanwhile, or is locked"
    fi
    if ! cmp -s "$1/master.passwd" /etc/master.passwd; then
        p=$(temp_beside /etc/master.passwd 600)
        journal "stage$TAB$p"
        cat "$1/master.passwd" >"$p"
        flush "$p"
        # shellcheck disable=SC2016 # the inner shell expands them
        lockf -k -t 30 /etc/master.passwd sh -c \
            'cmp -s "$1" /etc/master.passwd && pwd_mkdb -p -d /etc "$2"' \
            sh "$TXN/master.passwd" "$p" >/dev/null 2>&1 ||
            conf_fail "config: pwd_mkdb failed, or /etc/master.passwd changed meanwhile"
    fi
}

# --- activation -----------------------------------------------------------------

# activate_config SYSTEM: apply SYSTEM's config/ (see the head of this file).
# Prints what changed: "changed PATH", "removed PATH", "restored PATH",
# "kept PATH COPY WHY", "accounts".
activate_config() {
    sys=$1
    mkdir -p "$CONF"
    chmod 700 "$CONF"
    txn_recover
    new=$sys/config/files
    [ -f "$new" ] || new=/dev/null
    touch "$CONF/installed"
    STAMP=$(date +%Y%m%dT%H%M%S).$$
    rm -rf "$TXN"
    mkdir -m 700 "$TXN"
    : >"$TXN/journal"
    : >"$TXN/installed"
    : >"$TXN/plan"
    while IFS="$TAB" read -r kind path mode owner group sha validate; do
        [ -n "$kind" ] || continue
        managed_path "$path"
        case $kind in
            file)
                printf 'file\t%s\t%s\t%s\t%s\t%s\n' "$path" "$mode" "$owner" "$group" "$sha" >>"$TXN/installed"
                if [ -L "$path" ] || { [ -e "$path" ] && [ ! -f "$path" ]; }; then
                    conf_fail "config: $path is not a regular file; not changed"
                fi
                now=
                [ -f "$path" ] && now=$(conf_sha "$path")
                old=$(installed_of "$path")
                oldsha=$(printf '%s\n' "$old" | awk -F "$TAB" '{ print $6 }')
                if [ -n "$now" ] && [ -n "$old" ] && [ "$now" != "$oldsha" ] && [ "$now" != "$sha" ]; then
                    keep_aside "$path" "edited by hand" >>"$TXN/plan"
                fi
                if [ -n "$now" ] && [ -z "$old" ] && [ "$now" != "$sha" ] && [ ! -e "$CONF/originals$path" ]; then
                    mkdir -p "$(dirname "$CONF/originals$path")"
                    cp -p "$path" "$CONF/originals$path"
                fi
                meta=$(file_meta "$path" 2>/dev/null) || meta=
                want=$(want_meta "$mode" "$owner" "$group")
                if [ "$now" = "$sha" ] && [ -n "$want" ] && [ "$meta" = "$want" ]; then continue; fi
                t=$(stage_file "$path" "$sha" "$sys/config/root$path" "$validate") || exit 2
                printf 'put\t%s\t%s\t%s\t%s\t%s\n' "$path" "$t" "$mode" "$owner" "$group" >>"$TXN/plan" ;;
            dir)
                printf 'dir\t%s\t%s\t%s\t%s\n' "$path" "$mode" "$owner" "$group" >>"$TXN/installed"
                printf 'mkdir\t%s\t%s\t%s\t%s\n' "$path" "$mode" "$owner" "$group" >>"$TXN/plan" ;;
            link)
                target=$mode
                printf 'link\t%s\t%s\n' "$path" "$target" >>"$TXN/installed"
                [ -L "$path" ] && [ "$(readlink "$path")" = "$target" ] && continue
                if [ -e "$path" ] && [ -z "$(installed_of "$path")" ] && [ ! -e "$CONF/originals$path" ]; then
                    mkdir -p "$(dirname "$CONF/originals$path")"
                    cp -pP "$path" "$CONF/originals$path"
                fi
                printf 'ln\t%s\t%s\n' "$path" "$target" >>"$TXN/plan" ;;
            *) conf_fail "config: unknown entry '$kind' in $new" ;;
        esac
    done <"$new"
    # What the last activation managed and this one does not.
    while IFS="$TAB" read -r kind path mode owner group sha; do
        [ "$kind" = file ] || [ "$kind" = link ] || continue
        awk -F "$TAB" -v p="$path" '$2 == p { f = 1 } END { exit !f }' "$TXN/installed" && continue
        if [ "$kind" = file ] && [ -f "$path" ] && [ "$(conf_sha "$path")" != "$sha" ]; then
            keep_aside "$path" "edited by hand" >>"$TXN/plan"
        fi
        printf 'drop\t%s\n' "$path" >>"$TXN/plan"
    done <"$CONF/installed"
    # Accounts: planned against the host's files as they are now.
    accounts=$sys/config/accounts
    [ -f "$accounts" ] || accounts=/dev/null
    if [ -s "$accounts" ] || [ -s "$CONF/accounts" ]; then
        mkdir "$TXN/new"
        accounts_plan "$accounts" "$CONF/accounts" "$TXN/new" || conf_fail "config: accounts not changed"
        cp -p /etc/group "$TXN/group"
        cp -p /etc/master.passwd "$TXN/master.passwd" 2>/dev/null || : >"$TXN/master.passwd"
        cp "$accounts" "$TXN/accounts"
    fi
    # The switch: everything staged and checked; the journal is what undoes it.
    flush "$TXN/journal"
    if [ -d "$TXN/new" ] && { ! cmp -s "$TXN/new/group" /etc/group ||
            ! cmp -s "$TXN/new/master.passwd" /etc/master.passwd; }; then
        journal "accounts"
        flush "$TXN/journal"
        accounts_install "$TXN/new"
        echo "accounts"
    fi
    while IFS="$TAB" read -r what path a b c d; do
        case $what in
            kept) echo "kept $path $a $b" ;;
            mkdir)
                if [ ! -d "$path" ]; then
                    make_parents "$(dirname "$path")"
                    mkdir "$path" || conf_fail "config: cannot make $path"
                    journal "rmdir$TAB$path"
                fi
                { chown "$b:$c" "$path" && chmod "$a" "$path"; } ||
                    conf_fail "config: cannot set $b:$c $a on $path" ;;
            put)
                { chown "$c:$d" "$a" && chmod "$b" "$a"; } ||
                    conf_fail "config: cannot give $path to $c:$d ($b)"
                backup "$path"
                flush "$a"
                mv -f "$a" "$path" || conf_fail "config: cannot put $path in place"
                echo "changed $path" ;;
            ln)
                t=$(dirname "$path")/.$(basename "$path").fruix.$$
                rm -f "$t"
                ln -s "$a" "$t" && journal "stage$TAB$t"
                backup "$path"
                mv -f "$MVNOFOLLOW" "$t" "$path" || conf_fail "config: cannot link $path"
                echo "changed $path" ;;
            drop)
                backup "$path"
                if [ -e "$CONF/originals$path" ] || [ -L "$CONF/originals$path" ]; then
                    { cp -pP "$CONF/originals$path" "$path.fruix.orig.$$" &&
                        mv -f "$MVNOFOLLOW" "$path.fruix.orig.$$" "$path"; } ||
                        conf_fail "config: cannot restore $path"
                    rm -f "$CONF/originals$path"
                    echo "restored $path"
                else
                    rm -f "$path"
                    echo "removed $path"
                fi ;;
        esac
    done <"$TXN/plan"
    # Commit: from here on the new configuration is the one in force.
    : >"$TXN/committed"
    flush "$TXN/committed" "$TXN"
    mv -f "$TXN/installed" "$CONF/installed"
    if [ -f "$TXN/accounts" ]; then mv -f "$TXN/accounts" "$CONF/accounts"; fi
    flush "$CONF/installed" "$CONF"
    rm -rf "$TXN"
}

# config_drift: "edited PATH" for each managed file whose content is not what
# the last activation installed, "missing PATH" for each that is gone.
config_drift() {
    [ -f "$CONF/installed" ] || return 0
    while IFS="$TAB" read -r kind path mode owner group sha; do
        [ "$kind" = file ] || continue
        if [ ! -f "$path" ]; then echo "missing $path"
        elif [ "$(conf_sha "$path")" != "$sha" ]; then echo "edited $path"; fi
    done <"$CONF/installed"
}

# services_changed OLD NEW: "restart NAME", "start NAME", "stop NAME" from
# two systems' config/services (restart keys).
services_changed() {
    o=$1/config/services; n=$2/config/services
    [ -f "$o" ] || o=/dev/null
    [ -f "$n" ] || n=/dev/null
    awk -F "$TAB" 'FNR == NR { old[$1] = $2; next }
        { if (!($1 in old)) print "start " $1; else if (old[$1] != $2) print "restart " $1; seen[$1] = 1 }
        END { for (s in old) if (!(s in seen)) print "stop " s }' "$o" "$n" | sort
}

# live_blocker RUNNING NEW: why NEW cannot replace RUNNING without a reboot
# (empty when it can): another kernel, base or loader tunables.
live_blocker() {
    [ -d "$1" ] || { echo "this host runs no Fruix system"; return; }
    for part in kernel runtime bootloader; do
        if [ "$(readlink "$1/$part")" != "$(readlink "$2/$part")" ]; then
            echo "its $part differs"; return
        fi
    done
    if ! cmp -s "$1/config/loader-tunables" "$2/config/loader-tunables" 2>/dev/null &&
            { [ -s "$1/config/loader-tunables" ] || [ -s "$2/config/loader-tunables" ]; }; then
        echo "its loader tunables differ"
    fi
}

# herd_run ARGS: shepherd's herd, as root.
herd_run() { herd "$@" >/dev/null 2>&1; }

# cmd_activate N | --boot SYSTEM: make generation N's configuration the one
# in force, live (the services whose restart key changed are restarted, new
# ones started, gone ones stopped), or, at boot, the booted SYSTEM's (before
# shepherd starts). N must be the loader's default or the running system.
cmd_activate() {
    if [ "${1:-}" = --boot ]; then
        [ $# -eq 2 ] || die "usage: activate --boot SYSTEM"
        mode=boot; sys=$2
        case $sys in "$STORE"/*) ;; *) die "activate: $sys is not in $STORE" ;; esac
        found=
        for g in "$GENS"/*; do
            [ "$(readlink "$g/closure" 2>/dev/null)" = "$sys" ] && found=1
        done
        [ -n "$found" ] || die "activate: $sys is no generation's system"
    else
        [ $# -eq 1 ] || die "usage: activate GENERATION | --boot SYSTEM"
        generation_arg "$1"
        mode=live; sys=$(readlink "$GENS/$1/closure") || die "generation $1 has no closure"
    fi
    [ -d "$sys" ] || die "activate: $sys is not in the store"
    mkdir -p /run/fruix
    lock "activate"
    running=$(readlink /run/current-system 2>/dev/null) || running=
    if [ "$mode" = live ]; then
        why=$(live_blocker "$running" "$sys")
        if [ -n "$why" ]; then echo "reboot-needed $why"; return 0; fi
    fi
    if ! applied=$(activate_config "$sys"); then
        echo "failed $sys: configuration not applied" >/run/fruix/activated
        exit 2
    fi
    [ -z "$applied" ] || printf '%s\n' "$applied"
    # The system's secrets (secrets.sh), decrypted into place before any
    # service that needs them (re)starts; one not placed is named, the
    # previous value stays.
    if ! secrets_activate "$sys"; then echo "failed secrets: $FIRST_FAILURE"; fi
    if [ "$mode" = live ]; then
        changes=$(services_changed "$running" "$sys")
        ln -sfn "$sys" /run/.current-system.new
        mv -f "$MVNOFOLLOW" /run/.current-system.new /run/current-system
        if printf '%s\n' "$applied" | grep -qx 'changed /etc/sysctl.conf'; then
            sysctl -f /etc/sysctl.conf >/dev/null 2>&1 || echo "note: sysctl -f /etc/sysctl.conf reported errors" >&2
        fi
        # The configuration is in force from here: a service that shepherd
        # cannot load or restart is reported ("failed ..."), not undone.
        if [ -n "$changes" ] && ! herd_run load root "$sys/etc/shepherd/config.scm"; then
            echo "failed load $sys/etc/shepherd/config.scm"
        elif [ -n "$changes" ]; then
            # herd restart exits 0 even when the new definition fails to
            # start (Shepherd 0.10): its status says.
            printf '%s\n' "$changes" | while read -r act svc; do
                case $act in
                    restart|start)
                        herd_run "$act" "$svc"
                        herd status "$svc" 2>/dev/null | grep -q '^  It is running' ||
                            echo "failed $act $svc" ;;
                    stop) herd_run stop "$svc"; herd_run unload root "$svc" || : ;;
                esac
                echo "$act $svc"
            done
        fi
    fi
    echo "activated $sys" >/run/fruix/activated
    echo "activated $sys"
}

# config [N|running]: generation N's (or the running system's) configuration
# as a tar on stdout: config/ and etc/rc.conf of its system, for plan and diff.
cmd_config() {
    [ $# -eq 1 ] || die "usage: config GENERATION|running"
    if [ "$1" = running ]; then
        sys=$(readlink /run/current-system 2>/dev/null) || sys=
        [ -n "$sys" ] && [ -d "$sys" ] || return 0
    else
        generation_arg "$1"
        sys=$(readlink "$GENS/$1/closure") || die "generation $1 has no closure"
    fi
    set --
    for f in config etc/rc.conf; do [ -e "$sys/$f" ] && set -- "$@" "$f"; done
    [ $# -gt 0 ] || return 0
    (cd "$sys" && tar -cf - "$@")
}

# config-check: the managed files edited by hand since the last activation.
cmd_config_check() {
    [ $# -eq 0 ] || die "usage: config-check"
    config_drift
}
