#!/bin/sh
# The lab's model of FreeBSD's boot loader (stand/lua/config.lua and the C
# loader's `load` and `boot`), run by the lab's boot.sh against the host's
# own /boot. It is checked against FreeBSD's own config.lua by
# tests/test_loader_oracle.py (../shared/freebsd-oracle). What it does, in
# the loader's order:
#
#   1. readConf: /boot/defaults/loader.conf, then each file its
#      loader_conf_files names (recursively, each file once), then every
#      entry of each loader_conf_dirs directory whose name matches the Lua
#      pattern ".conf$" (any character, then "conf": hidden names such as
#      .fruix.conf and .x.conf count) in on-disk order -- the order readdir
#      returns, as `ls -f` lists it -- then local_loader_conf_files. A later
#      assignment wins.
#   2. Each line as config.parse reads it: comments; NAME="value" or
#      NAME=word and nothing after it but a comment (single quotes are a
#      malformed line); $name and ${name} expanded and backslash escapes
#      removed (a stray $ or \ at the end fails the line); module lines
#      (NAME_load/_name/_type/_flags/...) set without expansion, _load upper-
#      cased; exec="..." runs the loader commands set, unset and echo.
#   3. checkNextboot: unless nextboot_enable is "NO" already, nextboot_conf
#      is applied when nextboot_enable is set at all or its text does not
#      begin with nextboot_enable="NO"; its first line is then overwritten in
#      place (never extending the file) with nextboot_enable="NO" -- before
#      the kernel loads, so a kernel that never comes up is not tried twice.
#   4. loadKernel: bootfile (then "kernel") searched in /boot/$kernel, then in
#      $kernel as a directory, then $kernel as a file; only an ELF image
#      loads, and the file loaded is recorded as kernelname (what `kenv
#      kernelname` shows). No kernel: the machine stops at the loader prompt
#      (here: exit 3, the host halts until power-cycled).
#
# Not modelled: loading modules (they never stop a boot), exec commands other
# than set/unset/echo, product_vars, menus, /boot/lua/local.lua, ZFS boot
# environments and nvstore. Those are reported and skipped.
#
# Usage: loader.sh ENVFILE
#   ENVFILE receives the resulting kernel environment, one name="value" per
#   line (what `kenv` shows on the booted system).
set -eu
ENV=$1
cd /                                  # relative paths are from the boot root
: >"$ENV"
exec awk -v envfile="$ENV" '
function say(s) { print "loader: " s | "cat 1>&2" }
function q(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }

# The environment (libsa) and config.lua getEnv/setEnv: what config lines
# set is also remembered in CHG, and config.lua reads loader_conf_* from
# there; loader_conf_files is never handed to the kernel.
function setenv(k, v) { if (!(k in ORDERED)) { ORDERED[k] = 1; ORDER[++norder] = k }; ENV[k] = v }
function env(k) { return (k in ENV) ? ENV[k] : "" }
function unsetenv(k) { delete ENV[k] }
function setEnv(k, v) { CHG[k] = v; if (k != "loader_conf_files") setenv(k, v) }
function getEnv(k) {
    if (k in CHG) { GOT = CHG[k]; return 1 }
    if (k == "loader_conf_files") return 0
    if (k in ENV) { GOT = ENV[k]; return 1 }
    return 0
}

# processEnvVar: expansion and escapes; sets PV, or returns 0 (PERR says why).
function expand(v,    out, i, n, c, name, rest) {
    out = ""; n = length(v)
    for (i = 1; i <= n; i++) {
        c = substr(v, i, 1)
        if (c == "\\") {
            if (i == n) { PERR = "Stray escape at end of line"; return 0 }
            out = out substr(v, i + 1, 1); i++
        } else if (c == "\"") { PERR = "Stray quote"; return 0 }
        else if (c == "$") {
            if (i == n) { PERR = "Unescaped $ at end of line"; return 0 }
            rest = substr(v, i + 1)
            if (substr(rest, 1, 1) == "{") {
                if (!match(substr(rest, 2), /^[^}]+}/)) { PERR = "Malformed variable expression"; return 0 }
                name = substr(rest, 2, RLENGTH - 1); i += RLENGTH + 1
            } else {
                if (!match(rest, /^[A-Za-z0-9][-A-Za-z0-9_.]*/)) { PERR = "Malformed variable expression"; return 0 }
                name = substr(rest, 1, RLENGTH); i += RLENGTH
            }
            if (name in ENV) out = out ENV[name]
        } else out = out c
    }
    PV = out; return 1
}

# The value after NAME= (leading blanks gone): "quoted" first, then a word.
# Sets VAL and the rest of the line, TAIL; 0 when neither matches.
function value(s) {
    if (match(s, /^"[^"]*"/)) { VAL = substr(s, 2, RLENGTH - 2) }
    else if (match(s, /^[-A-Za-z0-9][-A-Za-z0-9_.]*/)) { VAL = substr(s, 1, RLENGTH) }
    else return 0
    TAIL = substr(s, RLENGTH + 1); sub(/^[ \t\r\v\f]+/, "", TAIL)
    return 1
}
function comment_ok(t) { return t ~ /^[ \t\r\v\f]*(#.*)?$/ }

# config.parse, one line: the first entry of its pattern table whose name and
# value match decides; its trailing text must be a comment.
function parse_line(line, file, n,    s, head, name, suf) {
    if (line ~ /^[ \t\r\v\f]*$/ || line ~ /^[ \t\r\v\f]*#/) return
    s = line; sub(/^[ \t\r\v\f]+/, "", s)
    if (match(s, /^[-A-Za-z0-9_.]+_(load|name|type|flags|before|after|error)[ \t\r\v\f]*=[ \t\r\v\f]*/)) {
        head = substr(s, 1, RLENGTH)
        if (value(substr(s, RLENGTH + 1))) {
            if (!comment_ok(TAIL)) { malformed(file, n, line); return }
            sub(/[ \t\r\v\f]*=.*/, "", head)
            suf = head; sub(/.*_/, "", suf)
            setEnv(head, suf == "load" ? toupper(VAL) : VAL)
            return
        }
    }
    if (match(s, /^exec[ \t\r\v\f]*=[ \t\r\v\f]*"[^"]*"/)) {
        head = substr(s, 1, RLENGTH); TAIL = substr(s, RLENGTH + 1)
        if (!comment_ok(TAIL)) { malformed(file, n, line); return }
        sub(/^exec[ \t\r\v\f]*=[ \t\r\v\f]*"/, "", head); sub(/"$/, "", head)
        if (perform(head) != 0) say("Failed to exec \047" head "\047")
        return
    }
    if (match(s, /^[A-Za-z0-9][-A-Za-z0-9_.]*[ \t\r\v\f]*=[ \t\r\v\f]*/)) {
        head = substr(s, 1, RLENGTH)
        if (value(substr(s, RLENGTH + 1))) {
            if (!comment_ok(TAIL)) { malformed(file, n, line); return }
            name = head; sub(/[ \t\r\v\f]*=.*/, "", name)
            if (expand(VAL)) setEnv(name, PV)
            else say(file ": failed to parse variable \047" name "\047: " PERR)
            return
        }
    }
    malformed(file, n, line)
}
function malformed(file, n, line) { gsub(/\r/, "\\r", line); say(file ": malformed line " n ": " line) }

# processFile: 0 when FILE cannot be read (absent files are skipped silently).
function process_file(file,    line, n, r) {
    n = 0
    while ((r = (getline line < file)) > 0) { if (line != "") parse_line(line, file, ++n) }
    close(file)
    return r == 0 || n > 0
}

function each_word(s, what,    w) {      # the words of S, as [%w%p]+ finds them
    while (match(s, /[^ \t\r\n\v\f]+/)) {
        w = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
        if (what == "conf") read_conf(w, 0); else read_dir(w)
    }
}
function read_conf(file, top,    files) {
    if (file in LOADED) return
    say("loading " file)
    delete CHG["loader_conf_files"]
    process_file(file)
    LOADED[file] = 1
    if (getEnv("loader_conf_files")) each_word(GOT, "conf")
    if (top) {
        if (getEnv("loader_conf_dirs")) each_word(GOT, "dir")
        if (getEnv("local_loader_conf_files")) each_word(GOT, "conf")
    }
}
# A loader_conf_dirs entry: its names in on-disk (readdir) order.
function read_dir(dir,    cmd, e, names, i, n) {
    if (system("test -d " q(dir)) != 0) { say("failed to load conf dir \047" dir "\047: not a directory"); return }
    cmd = "ls -f " q(dir); n = 0
    while ((cmd | getline e) > 0) if (e ~ /.conf$/) names = names e "\n"
    close(cmd)
    while ((i = index(names, "\n")) > 0) {
        e = substr(names, 1, i - 1); names = substr(names, i + 1)
        if (system("test -f " q(dir "/" e)) == 0) read_conf(dir "/" e, 0)
    }
}

function check_nextboot(    nb, ne, first, size, cmd) {
    if (!("nextboot_conf" in ENV)) return
    nb = ENV["nextboot_conf"]
    if (("nextboot_enable" in ENV) && ENV["nextboot_enable"] == "NO") return
    if ((getline first < nb) < 0) return
    close(nb)
    if (!("nextboot_enable" in ENV) && index(first, "nextboot_enable=\"NO\"") == 1) return
    say("loading " nb " (one-shot)")
    process_file(nb)
    # The loader rewrites the first line in place: the "NO" line with its
    # trailing space is as long as the "YES" line; libsa never extends a file.
    cmd = "wc -c < " q(nb); cmd | getline size; close(cmd)
    system("printf %s " q("nextboot_enable=\"NO\" ") " | head -c " (size + 0) " | dd of=" q(nb) \
        " conv=notrunc 2>/dev/null; sync")
    setenv("nextboot_enable", "NO")
}

# The loader command line (interp_parse.c): words, quotes, backslashes and
# $name / ${name} from the environment. Sets ARGV_[1..ARGC_]; 0 when a quote
# is left open.
function parse_cmdline(s,    i, n, c, quote, buf, have, j, name) {
    ARGC_ = 0; buf = ""; have = 0; quote = ""; n = length(s)
    for (i = 1; i <= n; ) {
        c = substr(s, i, 1)
        if (quote != "") {
            if (c == quote) { quote = ""; i++ }
            else if (c == "$" && quote == "\"") { i = cmd_var(s, i); buf = buf VARV }
            else { buf = buf c; i++ }
        } else if (c == "\\" && i < n) { buf = buf substr(s, i + 1, 1); have = 1; i += 2 }
        else if (c == "\"" || c == "\047") { quote = c; have = 1; i++ }
        else if (c ~ /[ \t\r\n\v\f]/) { if (have || buf != "") { ARGV_[++ARGC_] = buf; buf = ""; have = 0 }; i++ }
        else if (c == "$") { i = cmd_var(s, i); buf = buf VARV; have = 1 }
        else { buf = buf c; have = 1; i++ }
    }
    if (quote != "") return 0
    if (have || buf != "") ARGV_[++ARGC_] = buf
    return 1
}
function cmd_var(s, i,    rest, j) {
    rest = substr(s, i + 1)
    if (substr(rest, 1, 1) == "{") {
        j = index(substr(rest, 2), "}")
        if (j == 0) { VARV = "$"; return i + 1 }
        VARV = env(substr(rest, 2, j - 1)); return i + j + 2
    }
    if (!match(rest, /^[A-Za-z0-9_]+/)) { VARV = "$"; return i + 1 }
    VARV = env(substr(rest, 1, RLENGTH)); return i + 1 + RLENGTH
}
function perform(s,    k) {
    if (!parse_cmdline(s)) return 1
    if (ARGC_ == 0) return 0
    if (ARGV_[1] == "load") return load(ARGV_[2 + (ARGV_[2] ~ /^-/)])
    if (ARGV_[1] == "set") {
        if (ARGC_ < 2 || !match(ARGV_[2], /^[^=]+/)) return 1
        k = substr(ARGV_[2], 1, RLENGTH)
        setenv(k, substr(ARGV_[2], RLENGTH + 2)); return 0
    }
    if (ARGV_[1] == "unset") { if (ARGC_ < 2) return 1; unsetenv(ARGV_[2]); return 0 }
    if (ARGV_[1] == "echo") return 0
    say("loader command not modelled: " s)
    return 1
}

# load NAME (module.c file_search + the ELF loader): a name with a "/" as it
# is, else NAME.ko then NAME in each module_path directory; ELF only.
function load(name,    p, mp, d, i, found) {
    if (name == "") return 1
    if (name ~ /[\/:]/) { if (system("test -e " q(name)) == 0) { p = name; found = 1 } }
    else {
        mp = ("module_path" in ENV) ? ENV["module_path"] : "/boot/kernel;/boot/modules"
        while (!found && match(mp, /[^;]+/)) {
            d = substr(mp, RSTART, RLENGTH); mp = substr(mp, RSTART + RLENGTH)
            if (system("test -f " q(d "/" name ".ko")) == 0) { p = d "/" name ".ko"; found = 1 }
            else if (system("test -f " q(d "/" name)) == 0) { p = d "/" name; found = 1 }
        }
    }
    if (!found) return 1
    if (system("test -f " q(p) " && [ \"$(head -c 4 " q(p) " | od -An -c | tr -d \" \")\" = 177ELF ]") != 0) {
        say(p ": not an ELF kernel"); return 1
    }
    if (!KERNEL) { KERNEL = p; setenv("kernelname", p) }
    return 0
}
function try_load(names,    flags) {
    flags = ("kernel_options" in ENV) ? ENV["kernel_options"] : ""
    while (match(names, /[^;]+/)) {
        TRIED = substr(names, RSTART, RLENGTH); names = substr(names, RSTART + RLENGTH)
        if (perform("load " TRIED " " flags) == 0) return 1
    }
    return 0
}
function load_bootfile() { return try_load(("bootfile" in ENV) ? ENV["bootfile"] ";kernel" : "kernel") }
function load_kernel(    kernel, mp, hasmp, v, i) {
    if (!("kernel" in ENV)) return load_bootfile()
    kernel = ENV["kernel"]
    hasmp = "module_path" in ENV; mp = env("module_path")
    for (i = 1; i <= 2; i++) {
        v = i == 1 ? "/boot/" kernel : kernel
        setenv("module_path", v)
        if (load_bootfile()) {
            if (hasmp) { setenv("module_path", v ";" mp); setenv("kernel_path", v) }
            return 1
        }
    }
    if (try_load(kernel)) return 1
    say("failed to load kernel \047" kernel "\047")
    return 0
}
# The C "boot" command with no kernel loaded: each part of bootfile.
function boot_fallback(    bf, name) {
    bf = ("bootfile" in ENV) ? ENV["bootfile"] : "kernel"
    while (!KERNEL && match(bf, /[^;]+/)) {
        name = substr(bf, RSTART, RLENGTH); bf = substr(bf, RSTART + RLENGTH)
        load(name)
    }
}

BEGIN {
    read_conf("/boot/defaults/loader.conf", 1)
    check_nextboot()
    load_kernel()
    if (!KERNEL) boot_fallback()
    for (i = 1; i <= norder; i++) if (ORDER[i] in ENV) printf "%s=\"%s\"\n", ORDER[i], ENV[ORDER[i]] > envfile
    close(envfile)
    if (!KERNEL) exit 3
    say("loaded kernel " KERNEL)
    exit 0
}'
