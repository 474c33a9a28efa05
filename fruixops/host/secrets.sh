# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): secrets. This host's own
# X25519 key pair, the sealed secrets the controller delivers (each
# encrypted to that key, the delivery signed by a key this host trusts), and
# their decryption into place at activation (docs/secrets.md).
#
# A sealed secret is 8 text lines:
#   fruixops-secret 1
#   host NAME        name NAME        version TAG
#   key SHA256       the host public key it is sealed to (sha256 of its DER)
#   epk BASE64       the controller's ephemeral X25519 public key (DER)
#   ct BASE64        the ciphertext
#   mac HEX          HMAC-SHA256 over the 7 lines above
# Z = X25519(host key, epk) (openssl pkeyutl -derive); 64 bytes of keys =
# SHA256(00000001 || Z || lines 1-6) || SHA256(00000002 || Z || lines 1-6)
# (the one-step KDF of NIST SP 800-56C, with dgst); the first 32 bytes, in
# hex, are enc's passphrase (PBKDF2-SHA256, 1 iteration, no salt: key and
# IV of AES-256-CTR), the last 32 the HMAC key. No key ever appears on a
# command line (ps shows those to every user of the host): openssl's kdf,
# mac and enc -K take keys only there, so the KDF and HMAC are made of
# dgst over files here, and enc reads its passphrase from a file. The MAC
# is checked before anything is decrypted; the comparison is the shell's,
# not constant-time: see docs/secrets.md for why that is acceptable.
#
# Plaintexts exist only in SECRETS_DIR (a tmpfs this program mounts) and at
# the paths the system declares, never under /frx or in a generation.

SECRETS_STATE=$STATE/secrets        # root-only: key.pem, retired/, sealed/, serial
SECRETS_DIR=/var/run/fruix/secrets  # a tmpfs: the work directory and the default place
SECRETS_TMPFS="mode=0711,size=16m"
SECRETS_TMP=

secrets_state() {
    (umask 077 && mkdir -p "$SECRETS_STATE/sealed" "$SECRETS_STATE/retired")
    chmod 700 "$SECRETS_STATE"
}

# secrets_tmpfs: SECRETS_DIR is a tmpfs of its own (mounted here when it is
# not: FreeBSD's /var/run is on the root file system), owned by root, 0711.
secrets_tmpfs() {
    mkdir -p "$SECRETS_DIR"
    real=$(cd "$SECRETS_DIR" && pwd -P)
    if ! { cat /proc/mounts 2>/dev/null || mount -p 2>/dev/null; } |
            awk -v d="$real" '$2 == d && $3 == "tmpfs" { found = 1 } END { exit !found }'; then
        mount -t tmpfs -o "$SECRETS_TMPFS" tmpfs "$real" ||
            die "cannot mount a tmpfs on $SECRETS_DIR: secrets are never decrypted onto a disk"
    fi
    chown 0:0 "$real"
    chmod 711 "$real"
}

# secrets_tmp: a private work directory in the tmpfs (removed on exit).
secrets_tmp() {
    secrets_tmpfs
    SECRETS_TMP=$SECRETS_DIR/.work.$$
    rm -rf "$SECRETS_TMP"
    (umask 077 && mkdir "$SECRETS_TMP")
}

# key_id PEM: the sha256 of the DER public key of PEM (public or private).
key_id() {
    if grep -q 'PUBLIC KEY' "$1"; then set -- -pubin -in "$1"; else set -- -in "$1"; fi
    openssl pkey "$@" -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -r | cut -c1-64
}

# secrets-key [--new]: print this host's secret public key (made on first
# use: X25519, the private key 0400 in $SECRETS_STATE, never sent). --new:
# make a new pair; the old private key is kept in retired/ while a kept
# sealed secret needs it.
cmd_secrets_key() {
    case $#${1:-} in 0|1--new) ;; *) die "usage: secrets-key [--new]" ;; esac
    lock "secrets-key"
    secrets_state
    k=$SECRETS_STATE/key.pem
    if [ "${1:-}" = --new ] && [ -f "$k" ]; then
        old=$(key_id "$k")
        mv -f "$k" "$SECRETS_STATE/retired/$old.pem"
        flush "$SECRETS_STATE/retired" "$SECRETS_STATE"
        echo "retired $old"
    fi
    if [ ! -f "$k" ]; then
        new=$(temp_beside "$k" 600)
        openssl genpkey -algorithm X25519 -out "$new" 2>/dev/null ||
            die "openssl cannot make an X25519 key"
        chmod 400 "$new"
        flush "$new"
        mv -f "$new" "$k"
        flush "$SECRETS_STATE"
    fi
    echo "secret-key $(openssl pkey -in "$k" -pubout -outform DER | openssl base64 -A)"
    echo "secret-key-id $(key_id "$k")"
}

# --- sealed secrets ---------------------------------------------------------

# kdf_block N Z FIXED: SHA256(counter N || Z || FIXED), in hex (N: 1 or 2).
kdf_block() {
    # shellcheck disable=SC2059 # the counter's last byte, \001 or \002
    { printf '\000\000\000'; printf "\\00$1"; cat "$2" "$3"; } | openssl dgst -sha256 -r | cut -c1-64
}

# hmac_pad HEXKEY BYTE: the 64-byte HMAC block (the key, zero-padded, XOR
# BYTE: 54 inner, 92 outer) as printf octal escapes. The key comes on
# awk's stdin, never as an argument.
hmac_pad() {
    printf '%s\n' "$1" | LC_ALL=C awk -v pad="$2" '
        function hex(s) { return index("0123456789abcdef", s) - 1 }
        function xor(a, b,   r, p) {
            r = 0
            for (p = 1; p < 256; p *= 2) if (int(a / p) % 2 != int(b / p) % 2) r += p
            return r
        }
        { for (i = 0; i < 64; i++) {
              b = 0
              if (2 * i < length($0)) b = hex(substr($0, 2 * i + 1, 1)) * 16 + hex(substr($0, 2 * i + 2, 1))
              printf "\\%03o", xor(b, pad)
          } }'
}

# hmac_sha256 HEXKEY FILE: HMAC-SHA256 (RFC 2104) of FILE, in hex.
hmac_sha256() {
    # shellcheck disable=SC2059 # the format is the pad's octal escapes
    { printf "$(hmac_pad "$1" 54)"; cat "$2"; } | openssl dgst -sha256 -binary >"$SECRETS_TMP/inner"
    # shellcheck disable=SC2059
    { printf "$(hmac_pad "$1" 92)"; cat "$SECRETS_TMP/inner"; } | openssl dgst -sha256 -r | cut -c1-64
    rm -f "$SECRETS_TMP/inner"
}

# sealed_field NAME FILE: the value of line "NAME value" of a sealed secret.
sealed_field() { awk -v k="$1" '$1 == k && NF == 2 { print $2; exit }' "$2"; }

# sealed_shape FILE: the 8 lines of a sealed secret, nothing else.
sealed_shape() {
    LC_ALL=C awk '
        NR == 1 { ok = ($0 == "fruixops-secret 1"); next }
        NR == 2 { ok = ok && $1 == "host" && NF == 2; next }
        NR == 3 { ok = ok && $1 == "name" && NF == 2 && $2 ~ /^[A-Za-z0-9_][A-Za-z0-9_-]*$/ && length($2) <= 64; next }
        NR == 4 { ok = ok && $1 == "version" && NF == 2 && $2 ~ /^[A-Za-z0-9_][A-Za-z0-9._-]*$/ && length($2) <= 64; next }
        NR == 5 { ok = ok && $1 == "key" && NF == 2 && $2 ~ /^[0-9a-f]+$/ && length($2) == 64; next }
        NR == 6 { ok = ok && $1 == "epk" && NF == 2 && $2 ~ /^[A-Za-z0-9+\/=]+$/; next }
        NR == 7 { ok = ok && $1 == "ct" && NF == 2 && $2 ~ /^[A-Za-z0-9+\/=]+$/; next }
        NR == 8 { ok = ok && $1 == "mac" && NF == 2 && $2 ~ /^[0-9a-f]+$/ && length($2) == 64; next }
        { ok = 0 }
        END { exit !(ok && NR == 8) }' "$1"
}

# open_sealed FILE [OUT]: check the sealed secret FILE (shape, this host,
# a key this host has, its MAC); with OUT, decrypt it into OUT. On failure
# returns 1 with SEALED_WHY set; nothing is decrypted unless the MAC holds.
open_sealed() {
    SEALED_WHY=
    w=$SECRETS_TMP/open
    rm -rf "$w"
    mkdir "$w"
    if ! sealed_shape "$1"; then SEALED_WHY="not a sealed secret"; return 1; fi
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    if [ "$(sealed_field host "$1")" != "$me" ]; then
        SEALED_WHY="sealed for host '$(sealed_field host "$1")', this is '$me'"; return 1
    fi
    kid=$(sealed_field key "$1")
    priv=$SECRETS_STATE/key.pem
    if [ ! -f "$priv" ] || [ "$(key_id "$priv")" != "$kid" ]; then
        priv=$SECRETS_STATE/retired/$kid.pem
    fi
    if [ ! -f "$priv" ]; then
        SEALED_WHY="sealed to key $(echo "$kid" | cut -c1-16), which this host does not have (inv secrets.rotate-key)"
        return 1
    fi
    { echo "-----BEGIN PUBLIC KEY-----"; sealed_field epk "$1"; echo "-----END PUBLIC KEY-----"; } >"$w/epk.pem"
    if ! openssl pkeyutl -derive -inkey "$priv" -peerkey "$w/epk.pem" -out "$w/z" 2>/dev/null; then
        SEALED_WHY="its ephemeral key is not an X25519 key"; return 1
    fi
    sed -n '1,6p' "$1" >"$w/fixed"
    sed -n '1,7p' "$1" >"$w/macced"
    kenc=$(kdf_block 1 "$w/z" "$w/fixed")
    kmac=$(kdf_block 2 "$w/z" "$w/fixed")
    rm -f "$w/z"
    # Encrypt-then-MAC: the MAC first; not one byte is decrypted without it.
    if [ "$(hmac_sha256 "$kmac" "$w/macced")" != "$(sealed_field mac "$1")" ]; then
        rm -rf "$w"
        SEALED_WHY="its MAC does not verify (tampered, or sealed to another key)"; return 1
    fi
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$kenc" >"$w/pass"
        if ! { sealed_field ct "$1" | openssl base64 -d -A >"$w/ct" 2>/dev/null &&
                openssl enc -d -aes-256-ctr -pbkdf2 -iter 1 -md sha256 -nosalt \
                    -pass "file:$w/pass" -in "$w/ct" -out "$2" 2>/dev/null; }; then
            rm -rf "$w"; SEALED_WHY="cannot decrypt it"; return 1
        fi
    fi
    rm -rf "$w"
}

# --- delivery ---------------------------------------------------------------

# secrets_keep DELIVERY SIG: keep the sealed secrets of a signed delivery:
#   fruixops-secrets 1 / host H / serial MS / expires S / signer NAME / end
# then sealed secrets, 8 lines each. Signed (Ed25519) by a key this host
# trusts, for this host, unexpired, its serial above the last delivery's
# (an older delivery is a replay); every sealed secret must open (MAC)
# here, or nothing is kept. Each is kept as sealed/NAME/VERSION (the newest
# delivery of that version wins), then sealed versions no generation names
# (and retired keys no kept secret needs) are deleted.
secrets_keep() {
    if [ ! -s "$1" ] || [ ! -f "$2" ]; then die "the delivery lacks secrets or secrets.sig"; fi
    SIGNER=$(signed_by "$1" "$2")
    [ -n "$SIGNER" ] || die "the secrets delivery's signature does not verify against any trusted key"
    secrets_state
    d=$SECRETS_TMP/blocks
    rm -rf "$d"
    mkdir "$d"
    LC_ALL=C awk -v d="$d" '
        /[\001-\011\013-\037\177]/ { bad = "control character in line " NR; exit }
        !ended && NR == 1 { if ($0 != "fruixops-secrets 1") bad = "unknown secrets delivery format"; next }
        !ended && $0 == "end" { ended = 1; next }
        !ended { if (NF != 2) bad = "bad line " NR; next }
        $0 == "fruixops-secret 1" { if (n) close(d "/" n); n++; line = 0 }
        { line++; if (n == 0 || line > 8 || n > 512) { bad = "bad sealed secret at line " NR; exit }
          print > (d "/" n) }
        END { if (bad == "" && !ended) bad = "no end line"
              if (bad != "") { print bad; exit 1 } }
    ' "$1" >"$SECRETS_TMP/check" || die "malformed secrets delivery: $(cat "$SECRETS_TMP/check")"
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    [ "$(field host "$1")" = "$me" ] || die "the secrets delivery is for host '$(field host "$1")', this is '$me'"
    now=$(date +%s)
    expires=$(field expires "$1") serial=$(field serial "$1")
    case $expires$serial in ''|*[!0-9]*) die "the secrets delivery's serial or expiry is not a number" ;; esac
    if [ "${#expires}" -gt 12 ] || [ "$now" -gt "$expires" ]; then
        die "the secrets delivery expired at $expires (now $now)"
    fi
    if [ "${#serial}" -gt 16 ] || [ "$serial" -gt $(((now + 86400) * 1000)) ]; then
        die "secrets delivery serial $serial is more than a day ahead of this host's clock ($now): refused"
    fi
    last=$(cat "$SECRETS_STATE/serial" 2>/dev/null) || last=0
    case $last in ''|*[!0-9]*) last=0 ;; esac
    [ "$serial" -gt "$last" ] ||
        die "secrets delivery serial $serial is not above the last accepted ($last): replay refused"
    : >"$SECRETS_TMP/kept"
    for b in "$d"/*; do
        [ -f "$b" ] || continue
        open_sealed "$b" || die "secret '$(sealed_field name "$b")': $SEALED_WHY; nothing kept"
        nv="$(sealed_field name "$b") $(sealed_field version "$b")"
        ! grep -Fqx "$nv" "$SECRETS_TMP/kept" || die "the delivery holds secret $nv twice"
        echo "$nv" >>"$SECRETS_TMP/kept"
    done
    for b in "$d"/*; do
        [ -f "$b" ] || continue
        n=$(sealed_field name "$b") v=$(sealed_field version "$b")
        (umask 077 && mkdir -p "$SECRETS_STATE/sealed/$n")
        publish "$SECRETS_STATE/sealed/$n/$v" 600 <"$b"
        echo "kept $n $v"
    done
    printf '%s\n' "$serial" | publish "$SECRETS_STATE/serial" 600
    secrets_prune "$SECRETS_TMP/kept"
}

# secrets_prune KEPT: delete sealed secrets no generation names (nor KEPT,
# the delivery just kept), then retired keys no sealed secret is sealed to.
secrets_prune() {
    { cat "$1"
      for g in "$GENS"/*/closure; do
          [ -f "$g/config/secrets" ] && awk '!/^#/ && NF >= 2 { print $1, $2 }' "$g/config/secrets"
      done; } | sort -u >"$SECRETS_TMP/wanted"
    for f in "$SECRETS_STATE"/sealed/*/*; do
        [ -f "$f" ] || continue
        v=${f##*/} n=${f%/*}; n=${n##*/}
        grep -Fqx "$n $v" "$SECRETS_TMP/wanted" || rm -f "$f"
    done
    for n in "$SECRETS_STATE"/sealed/*; do rmdir "$n" 2>/dev/null || :; done
    for k in "$SECRETS_STATE"/retired/*.pem; do
        [ -f "$k" ] || continue
        id=$(basename "$k" .pem)
        grep -rqx "key $id" "$SECRETS_STATE/sealed" 2>/dev/null || rm -f "$k"
    done
}

# secrets-deliver: stdin: a bundle of "secrets" and "secrets.sig" (a signed
# delivery). Keep them (secrets_keep), then activate the running system's
# secrets (so a rotation takes effect without a new generation).
cmd_secrets_deliver() {
    [ $# -eq 0 ] || die "usage: secrets-deliver"
    lock "secrets-deliver"
    secrets_tmp
    unpack_plain "$SECRETS_TMP/bundle"
    secrets_keep "$SECRETS_TMP/bundle/secrets" "$SECRETS_TMP/bundle/secrets.sig"
    secrets_activate_running
}

# secrets_import FILE ME: the secrets a bundle FILE carries for this host
# (hosts/ME/secrets and .sig), kept as a delivery is. None: nothing to do.
secrets_import() {
    grep -Fqx "hosts/$2/secrets" "$TMP/members" || return 0
    secrets_tmp
    mkdir "$SECRETS_TMP/bundle"
    { tar -xOf - "hosts/$2/secrets" <"$1" | head -c "$BUNDLE_MAX" >"$SECRETS_TMP/bundle/secrets" &&
        tar -xOf - "hosts/$2/secrets.sig" <"$1" | head -c 4096 >"$SECRETS_TMP/bundle/secrets.sig"; } ||
        die "cannot read this host's secrets from the bundle"
    secrets_keep "$SECRETS_TMP/bundle/secrets" "$SECRETS_TMP/bundle/secrets.sig" >"$SECRETS_TMP/out"
    echo "secrets $(grep -c '^kept ' "$SECRETS_TMP/out" || :)"
}

# --- activation -------------------------------------------------------------

# secrets_activate SYSTEM: decrypt what SYSTEM/config/secrets lists
# ("NAME VERSION PATH OWNER GROUP MODE" lines; GROUP - is the owner's) into
# place: each into a temporary file beside PATH, owner, group and mode set,
# then renamed over it. A secret that cannot be placed (never delivered,
# bad MAC, no such user) is named on stderr and its previous plaintext stays.
# Plaintexts placed before and no longer listed are removed. Returns 1 if
# any secret was not placed.
secrets_activate() {
    list=$1/config/secrets
    secrets_state
    [ -n "$SECRETS_TMP" ] || secrets_tmp
    failed=0 FIRST_FAILURE=
    : >"$SECRETS_TMP/placed"
    if [ -f "$list" ]; then
        while read -r name version path owner group mode rest <&3; do
            case $name in ''|'#'*) continue ;; esac
            if ! secret_line_ok; then
                secret_failed "$name" "malformed line in $list"
                continue
            fi
            echo "$path" >>"$SECRETS_TMP/placed"
            sealed=$SECRETS_STATE/sealed/$name/$version
            if [ ! -f "$sealed" ]; then
                secret_failed "$name" "version $version was never delivered to this host (inv secrets.rotate)"
                continue
            fi
            if ! open_sealed "$sealed" "$SECRETS_TMP/plain" ||
                    [ "$(sealed_field name "$sealed") $(sealed_field version "$sealed")" != "$name $version" ]; then
                secret_failed "$name" "${SEALED_WHY:-sealed as another secret}; its previous value stays"
                rm -f "$SECRETS_TMP/plain"
                continue
            fi
            if why=$(place_secret "$SECRETS_TMP/plain" "$path" "$owner" "$group" "$mode"); then
                echo "placed $name $path"
            else
                secret_failed "$name" "$why"
            fi
            rm -f "$SECRETS_TMP/plain"
        done 3<"$list"
    fi
    # What an earlier activation placed and this system does not list goes.
    if [ -f "$SECRETS_STATE/placed" ]; then
        while read -r old <&3; do
            grep -Fqx "$old" "$SECRETS_TMP/placed" || rm -f "$old"
        done 3<"$SECRETS_STATE/placed"
    fi
    publish "$SECRETS_STATE/placed" 600 <"$SECRETS_TMP/placed"
    [ "$failed" -eq 0 ]
}

# secret_failed NAME WHY: one secret not placed (the first one is remembered).
secret_failed() {
    echo "refused: secret '$1': $2" >&2
    failed=$((failed + 1))
    [ -n "$FIRST_FAILURE" ] || FIRST_FAILURE="secret '$1': $2"
}

# secret_line_ok: the fields of a config/secrets line read by secrets_activate.
secret_line_ok() {
    [ -z "$rest" ] && [ -n "$mode" ] || return 1
    case $name in *[!A-Za-z0-9_-]*) return 1 ;; esac
    case $version in *[!A-Za-z0-9._-]*) return 1 ;; esac
    case $path in /*[!A-Za-z0-9._/@+:-]*|*..*|*/) return 1 ;; /?*) ;; *) return 1 ;; esac
    case $owner in *[!A-Za-z0-9_.-]*) return 1 ;; esac
    case $group in *[!A-Za-z0-9_.-]*) return 1 ;; esac
    case $mode in *[!0-7]*) return 1 ;; esac
}

# place_secret PLAIN PATH OWNER GROUP MODE: PLAIN becomes PATH, all or
# nothing, in a directory only root controls. Prints why not, if not.
place_secret() {
    dir=$(dirname "$2")
    (umask 022 && mkdir -p "$dir") 2>/dev/null || { echo "cannot make $dir"; return 1; }
    real=$(cd "$dir" && pwd -P)
    root_only "$real" || { echo "$dir is not a directory only root controls"; return 1; }
    if [ -d "$2" ] && [ ! -L "$2" ]; then echo "$2 is a directory"; return 1; fi
    uid=$(id -u "$3" 2>/dev/null) || { echo "no user '$3' on this host"; return 1; }
    gid=$4
    [ "$gid" != - ] || gid=$(id -g "$3")
    new=$(mktemp "$real/.$(basename "$2").new.XXXXXX") || { echo "cannot write in $dir"; return 1; }
    if cat "$1" >"$new" && chown "$uid:$gid" "$new" 2>/dev/null && chmod "$5" "$new" &&
            flush "$new" && mv -f "$new" "$real/$(basename "$2")"; then
        flush "$real"
        return 0
    fi
    rm -f "$new"
    echo "cannot install it at $2 (group '$4'?)"
    return 1
}

# secrets_activate_running: secrets_activate for the system running now
# (/run/current-system), if any.
secrets_activate_running() {
    system=$(readlink /run/current-system 2>/dev/null) || system=
    if [ -z "$system" ] || [ ! -d "$system" ]; then
        echo "activated none (no running system)"
        return 0
    fi
    if secrets_activate "$system"; then
        echo "activated $system"
    else
        die "$failed secret(s) of $system not placed; $FIRST_FAILURE"
    fi
}

# secrets-activate [SYSTEM]: secrets_activate for SYSTEM (a closure a
# generation of this host names, or the running one; default: the running
# one). Run at boot by the system's activate, and after a delivery.
cmd_secrets_activate() {
    [ $# -le 1 ] || die "usage: secrets-activate [SYSTEM]"
    lock "secrets-activate"
    if [ $# -eq 0 ] || [ "$1" = "$(readlink /run/current-system 2>/dev/null)" ]; then
        secrets_activate_running
        return
    fi
    found=
    for g in "$GENS"/*/closure; do
        [ "$(readlink "$g" 2>/dev/null)" = "$1" ] && found=1
    done
    [ -n "$found" ] || die "no generation of this host is $1"
    secrets_activate "$1" || die "$failed secret(s) of $1 not placed; $FIRST_FAILURE"
    echo "activated $1"
}
