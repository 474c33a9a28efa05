# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): the keys this host
# trusts and the name it answers to.

check_key_name() {
    case $1 in ''|.*|*[!A-Za-z0-9._-]*) die "bad key name '$1'" ;; esac
}

# install_key NAME FILE: validate a PEM public key and add it to trusted/.
install_key() {
    check_key_name "$1"
    openssl pkey -pubin -in "$2" -noout 2>/dev/null || die "key $1 is not a PEM public key"
    mkdir -p "$STATE/trusted"
    publish "$STATE/trusted/$1.pem" <"$2"
    echo "trusted $1"
}

trusted_count() { find "$STATE/trusted" -name '*.pem' 2>/dev/null | grep -c . || :; }

cmd_trust_init() {
    lock "trust-init"
    new_tmp
    unpack_plain "$TMP/keys"
    if [ "$(trusted_count)" -gt 0 ]; then
        echo "already-trusting $(trusted_count)"
        return 0
    fi
    for k in "$TMP"/keys/*.pem; do
        [ -f "$k" ] || die "no keys in the bundle"
        install_key "$(basename "$k" .pem)" "$k"
    done
}

# verify_trust ACTION NAME: after first contact, a trust change needs a
# statement signed by a key this host already trusts (as TUF rotates its root
# keys): the bundle on stdin holds "statement" and "statement.sig" (and, to
# add a key, "key.pem"). The statement names this host, is unexpired, has a
# serial above the last accepted, and says exactly ACTION NAME (for "add",
# with the sha256 of key.pem; for "receiver", just the sha256 of the
# bundle's "receiver", a new receiver program).
verify_trust() {
    unpack_plain "$TMP/bundle"
    st=$TMP/bundle/statement
    if [ ! -f "$st" ] || [ ! -f "$TMP/bundle/statement.sig" ]; then
        die "a trust change needs a statement signed by a key this host trusts"
    fi
    SIGNER=$(signed_by "$st" "$TMP/bundle/statement.sig")
    [ -n "$SIGNER" ] || die "the trust statement's signature does not verify against any trusted key"
    awk '
        NR == 1 { if ($0 != "fruixops-trust 1") bad = "unknown trust statement format"; next }
        $0 == "end" { ended = 1; next }
        ended { bad = "text after end" }
        $1 == "add" && NF == 3 { next }
        $1 == "remove" && NF == 2 { next }
        $1 == "receiver" && NF == 2 { next }
        NF != 2 { bad = "bad line " NR }
        END { if (!ended) bad = "no end line"; if (bad != "") { print bad; exit 1 } }
    ' "$st" >"$TMP/check" || die "malformed trust statement: $(cat "$TMP/check")"
    me=$(cat "$STATE/host-name" 2>/dev/null) || me=
    [ "$(field host "$st")" = "$me" ] || die "the trust statement is for host '$(field host "$st")', this is '$me'"
    now=$(date +%s)
    expires=$(field expires "$st") serial=$(field serial "$st")
    case $expires$serial in ''|*[!0-9]*) die "the trust statement's serial or expiry is not a number" ;; esac
    if [ "${#expires}" -gt 12 ] || [ "$now" -gt "$expires" ]; then
        die "the trust statement expired at $expires (now $now)"
    fi
    check_serial "$serial" "$now" "trust statement"
    said=$(awk '$1 == "add" || $1 == "remove" || $1 == "receiver"' "$st")
    if [ "$1" = add ]; then
        want="add $2 $(openssl dgst -sha256 -r <"$TMP/bundle/key.pem" | cut -c1-64)"
    elif [ "$1" = receiver ]; then
        [ -f "$TMP/bundle/receiver" ] || die "the bundle holds no receiver"
        want="receiver $(openssl dgst -sha256 -r <"$TMP/bundle/receiver" | cut -c1-64)"
    else
        want="remove $2"
    fi
    [ "$said" = "$want" ] || die "the trust statement says '$said', not '$want'"
    printf '%s\n' "$serial" | publish "$STATE/last-serial"
}

cmd_trust_add() {
    lock "trust-add"
    check_key_name "${1:-}"
    new_tmp
    verify_trust add "$1"
    install_key "$1" "$TMP/bundle/key.pem"
    echo "signed-by $SIGNER"
}

cmd_trust_remove() {
    lock "trust-remove"
    check_key_name "${1:-}"
    new_tmp
    verify_trust remove "$1"
    [ -f "$STATE/trusted/$1.pem" ] || die "key $1 is not trusted here"
    [ "$(trusted_count)" -gt 1 ] || die "refusing to remove the last trusted key"
    rm -f "$STATE/trusted/$1.pem"
    flush "$STATE/trusted"
    echo "untrusted $1"
    echo "signed-by $SIGNER"
}

cmd_set_host_name() {
    case ${1:-} in ''|*[!A-Za-z0-9._+-]*) die "bad host name '${1:-}'" ;; esac
    mkdir -p "$STATE"
    if [ -f "$STATE/host-name" ]; then
        [ "$(cat "$STATE/host-name")" = "$1" ] ||
            die "this host is recorded as '$(cat "$STATE/host-name")', not '$1'"
        return 0
    fi
    printf '%s\n' "$1" | publish "$STATE/host-name"
}

