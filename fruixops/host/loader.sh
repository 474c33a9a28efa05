# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): the loader's files read as
# FreeBSD's loader reads them (stand/lua/config.lua: config.readConf and
# config.parse), to say what decides the next boot.
#
# The walk, in the loader's order: /boot/defaults/loader.conf; each file of
# the loader_conf_files a file sets, right after that file (recursively,
# each file once); at the top level then every name ending in "conf" (any
# character before it, hidden names too) in each loader_conf_dirs
# directory, in directory order (readdir, as lfs.dir: `ls -f`); then
# local_loader_conf_files. FreeBSD 14.0's loader has no
# local_loader_conf_files step (its defaults list loader.conf.local in
# loader_conf_files, so it is read before loader.conf.d); 14.1 and later
# read it last. The host's version (freebsd-version -k, else uname -r on
# FreeBSD; anything else, the lab, counts as 15) picks which.
#
# A line is what config.parse accepts: NAME="VALUE" (no " inside) or
# NAME=WORD (letters, digits, - _ .), then spaces and an optional comment;
# a VALUE's backslash escapes and $NAME / ${NAME} are expanded as
# processEnvVar does. Anything else (single quotes, a path as a bare word)
# is a malformed line the loader skips.

# loader_version_local: "yes" when this host's loader reads
# local_loader_conf_files after loader.conf.d (FreeBSD 14.1 and later).
loader_version_local() {
    v=$(freebsd-version -k 2>/dev/null) || v=
    if [ -z "$v" ] && [ "$(uname -s 2>/dev/null)" = FreeBSD ]; then v=$(uname -r); fi
    case $v in
        '') echo yes ;;                              # not FreeBSD: the lab models 15
        [0-9].*|1[0-3].*|14.0-*|14.0) echo no ;;
        *) echo yes ;;
    esac
}

# loader_walk: the walk above, as lines:
#   override FILE:LINE: WHAT   (escaped) something that overrides or
#                              suppresses fruix.conf or the one-shot
#   fruixconf-unparsed LINE WHY  fruix.conf is not as fruixops writes it
#   env NAME VALUE             the final nextboot_enable / nextboot_conf
loader_walk() {
    LC_ALL=C awk -v defaults="$BOOT/defaults/loader.conf" -v fruix="$LOADER_CONF" \
        -v with_local="$(loader_version_local)" '
    function esc(s,    i, c, o) {
        o = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (c == "\\") o = o "\\\\"
            else if (ord[c] < 32 || ord[c] > 126) o = o sprintf("\\x%02x", ord[c])
            else o = o c
        }
        return o
    }
    function sq(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
    function is(kind, p) { return system("test -" kind " " sq(p)) == 0 }
    # processEnvVar: escapes and $NAME, ${NAME}; ERR says why it failed.
    function expand(v,    i, n, c, o, rest, m, name) {
        o = ""; i = 1; n = length(v); ERR = ""
        while (i <= n) {
            c = substr(v, i, 1)
            if (c == "\\") {
                if (i == n) { ERR = "stray escape at end of line"; return "" }
                o = o substr(v, i + 1, 1); i += 2
            } else if (c == "$") {
                if (i == n) { ERR = "unescaped $ at end of line"; return "" }
                rest = substr(v, i + 1)
                if (substr(rest, 1, 1) == "{") {
                    m = index(rest, "}")
                    if (m < 3) { ERR = "malformed variable expression"; return "" }
                    name = substr(rest, 2, m - 2); i += 1 + m
                } else {
                    if (!match(rest, /^[A-Za-z0-9][-A-Za-z0-9_.]*/)) {
                        ERR = "malformed variable expression"; return ""
                    }
                    name = substr(rest, 1, RLENGTH); i += 1 + RLENGTH
                }
                o = o ((name in env) ? env[name] : "")
            } else { o = o c; i++ }
        }
        return o
    }
    function rel(file) { return file == fruix ? 1 : 0 }
    # one line of FILE, as config.parse reads it
    function parse(file, n, line,    name, rest, v, raw, q) {
        if (line ~ /^[[:space:]]*$/ || line ~ /^[[:space:]]*#/) return
        if (!match(line, /^[[:space:]]*[A-Za-z0-9][-A-Za-z0-9_.]*[[:space:]]*=[[:space:]]*/)) {
            bad(file, n, "not a loader line"); return
        }
        name = substr(line, 1, RLENGTH); rest = substr(line, RLENGTH + 1)
        sub(/^[[:space:]]*/, "", name); sub(/[[:space:]]*=[[:space:]]*$/, "", name)
        q = 0
        if (match(rest, /^"[^"]*"/)) { raw = substr(rest, 2, RLENGTH - 2); q = 1 }
        else if (match(rest, /^[-A-Za-z0-9][-A-Za-z0-9_.]*/)) raw = substr(rest, 1, RLENGTH)
        else { bad(file, n, "a value the loader does not accept"); return }
        rest = substr(rest, RLENGTH + 1)
        if (rest !~ /^[[:space:]]*(#.*)?$/) { bad(file, n, "text after the value"); return }
        if (name == "exec" && q) { set(file, n, "exec", raw, raw); return }
        if (name ~ /_(load|name|type|flags|before|after|error)$/) {
            set(file, n, name, raw, raw); return        # module lines: not expanded
        }
        v = expand(raw)
        if (ERR != "") { bad(file, n, ERR); return }
        if (v != raw && file == fruix) unparsed(n, "a value the loader expands ($ or a backslash)")
        set(file, n, name, v, raw)
    }
    function bad(file, n, why) { if (file == fruix) unparsed(n, why " (the loader skips the line)") }
    function unparsed(n, why) { print "fruixconf-unparsed " n " " esc(why) }
    function set(file, n, name, v, raw) {
        if (name != "exec") env[name] = v
        if (file == defaults) dflt[name] = v
        nset++; sfile[nset] = file; sline[nset] = n; sname[nset] = name; sval[nset] = v
        sorder[nset] = nread
    }
    function readconf(file, top,    line, n, r, lcf, words, w, nw, dirs, d, nd, cmd, e, p, ne, entries) {
        if (file in loaded) return
        delete env["loader_conf_files"]     # config.readConf clobbers it per file
        n = 0
        r = (getline line < file)
        if (r >= 0) {
            nread++
            if (file == fruix) fruix_at = nread
            while (r > 0) {
                n++; sub(/\r$/, "", line)
                parse(file, n, line)
                r = (getline line < file)
            }
            close(file)
        }
        loaded[file] = 1
        lcf = ("loader_conf_files" in env) ? env["loader_conf_files"] : ""
        if (lcf != "") {
            nw = split(lcf, words, /[[:space:]]+/)
            for (w = 1; w <= nw; w++) if (words[w] != "") readconf(words[w], 0)
        }
        if (!top) return
        nd = split(("loader_conf_dirs" in env) ? env["loader_conf_dirs"] : "", dirs, /[[:space:]]+/)
        for (d = 1; d <= nd; d++) {
            if (dirs[d] == "" || !is("d", dirs[d])) continue
            cmd = "ls -f " sq(dirs[d])
            ne = 0
            while ((cmd | getline e) > 0) entries[++ne] = e
            close(cmd)
            for (w = 1; w <= ne; w++) {
                e = entries[w]
                if (e !~ /.conf$/ || length(e) < 5) continue
                p = dirs[d] "/" e
                if (is("f", p)) { if (!(p in fdir)) fdir[p] = dirs[d]; readconf(p, 0) }
            }
        }
        if (with_local == "yes" && ("local_loader_conf_files" in env)) {
            nw = split(env["local_loader_conf_files"], words, /[[:space:]]+/)
            for (w = 1; w <= nw; w++) if (words[w] != "") readconf(words[w], 0)
        }
    }
    BEGIN {
        for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
        readconf_top()
        after = fruix_at > 0
        for (i = 1; i <= nset; i++) {
            f = sfile[i]; name = sname[i]; v = sval[i]
            where = esc(f) ":" sline[i] ": "
            if (f == defaults) continue
            if (name ~ /^(loader_conf_dirs|local_loader_conf_files)$/ && v != dflt[name]) {
                print "override " where "sets " name "=\"" esc(v) "\", changing the files the loader reads" \
                    (fruix_at ? "" : ": " esc(fruix) " is never read")
            } else if (name == "loader_conf_files" && f != fruix) {
                print "override " where "sets loader_conf_files=\"" esc(v) "\", read next" \
                    (fruix_at ? "" : ": " esc(fruix) " is never read")
            } else if (name == "nextboot_enable") {
                print "override " where "sets nextboot_enable=\"" esc(v) "\": " \
                    (v == "NO" ? "no one-shot is applied" : "a nextboot file is applied at every boot")
            } else if (name == "nextboot_conf" && v != dflt[name]) {
                print "override " where "sets nextboot_conf=\"" esc(v) "\": the one-shot is read there"
            } else if (fruix_at && sorder[i] > fruix_at && f != fruix &&
                       (name ~ /^(kernel|bootfile|init_exec|exec)$/ || name ~ /^fruix\./)) {
                print "override " where "sets " name "=\"" esc(v) "\" after fruix.conf"
            } else if (fruix_at && sorder[i] < fruix_at && (f in fdir) && (fruix in fdir) &&
                       fdir[f] == fdir[fruix] &&
                       (name ~ /^(kernel|bootfile|init_exec|exec)$/ || name ~ /^fruix\./)) {
                print "override " where "sets " name "=\"" esc(v) "\" before fruix.conf " \
                    "in directory order: in another order it wins"
            }
        }
        if (!fruix_at && is("f", fruix)) {
            found = 0
            for (i = 1; i <= nset; i++)
                if (sfile[i] != defaults && sname[i] ~ /^(loader_conf_dirs|loader_conf_files)$/) found = 1
            if (!found) print "override " esc(fruix) ":0: never read by the loader"
        }
        print "env nextboot_enable " (("nextboot_enable" in env) ? esc(env["nextboot_enable"]) : "")
        print "env nextboot_conf " (("nextboot_conf" in env) ? esc(env["nextboot_conf"]) : "")
    }
    function readconf_top() {
        readconf(defaults, 1)
    }
    '
}

# conf_generation FILE: the fruix.generation a loader file sets (the last one).
conf_generation() {
    [ -f "$1" ] || return 0
    sed -n 's/^[[:space:]]*fruix\.generation[[:space:]]*=[[:space:]]*"\{0,1\}\([0-9][0-9]*\)"\{0,1\}[[:space:]]*\(#.*\)\{0,1\}$/\1/p' \
        "$1" | tail -n 1
}

loader_default() { conf_generation "$LOADER_CONF"; }

# LOADER_WALK: loader_walk's answer, once per run of the receiver (the
# files do not change under the lock; status and plan read it twice).
LOADER_WALK=
loader_walked() {
    [ -n "$LOADER_WALK" ] || LOADER_WALK=$(loader_walk; echo .)
    printf '%s\n' "${LOADER_WALK%.}"
}

# loader_overrides: "FILE:LINE: what" for each setting, in the files the
# loader reads, that overrides or suppresses fruix.conf or the one-shot.
loader_overrides() {
    loader_walked | sed -n 's/^override //p'
    loader_walked | sed -n "s|^fruixconf-unparsed \\([0-9]*\\) \\(.*\\)\$|$LOADER_CONF:\\1: \\2|p"
}

# fruix_conf_unparsed: say (on stdout) why fruix.conf is not a file
# fruixops can read as the loader does (a $ expansion, an escape, a line the
# loader skips); nothing when it is one.
fruix_conf_unparsed() { loader_walked | sed -n 's/^fruixconf-unparsed //p' | head -n 1; }

# pending_generation: the generation of a one-shot the loader will apply at
# the next boot, as config.lua's checkNextboot decides: none when a loader
# file sets nextboot_enable="NO"; else the file nextboot_conf names, unless
# its first line begins nextboot_enable="NO" (when no loader file set
# nextboot_enable at all: set to anything else, the file is applied whatever
# its first line says).
pending_generation() {
    enable=$(loader_walked | sed -n 's/^env nextboot_enable //p')
    file=$(loader_walked | sed -n 's/^env nextboot_conf //p')
    [ -n "$file" ] || file=$NEXTBOOT_CONF
    [ "$enable" != NO ] || return 0
    [ -f "$file" ] || return 0
    if [ -z "$enable" ] && head -n 1 "$file" | grep -q '^nextboot_enable="NO"'; then return 0; fi
    conf_generation "$file"
}

# fs_id PATH: the device PATH's file system is on (stat(1): BSD -f %d, GNU
# -c %d); bind mounts of one file system share it.
fs_id() { stat -f %d "$1" 2>/dev/null | grep -x '[0-9][0-9]*' || stat -c %d "$1" 2>/dev/null; }

# boot_fs: "same" when the store is on /boot's file system (the only one
# FreeBSD's loader reads a kernel from: on UFS, the partition it booted
# from), else "differs STORE-DEV BOOT-DEV"; nothing when a side is missing.
boot_fs() {
    [ -d "$STORE" ] && [ -d "$BOOT" ] || return 0
    s=$(fs_id "$STORE") b=$(fs_id "$BOOT")
    [ -n "$s" ] && [ -n "$b" ] || return 0
    if [ "$s" = "$b" ]; then echo same; else echo "differs $s $b"; fi
}

# generation_kernel_file N: the kernel file the loader loads for generation
# N (kenv kernelname once it booted it); nothing if N's system has no kernel.
generation_kernel_file() {
    c=$(readlink "$GENS/$1/closure" 2>/dev/null) || return 0
    k=$(readlink "$c/kernel" 2>/dev/null) || return 0
    echo "$k/boot/kernel/kernel"
}

# booted_kernel: the kernel file the loader loaded (kenv kernelname, its
# slashes squeezed), or nothing when the kernel does not say.
booted_kernel() { kenv -q kernelname 2>/dev/null | tr -s / | head -n 1 || :; }
