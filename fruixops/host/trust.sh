# shellcheck shell=sh
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
    mkdir "$TMP/keys"
    tar -xf - -C "$TMP/keys" || die "cannot read the key bundle"
    if [ "$(trusted_count)" -gt 0 ]; then
        echo "already-trusting $(trusted_count)"
        return 0
    fi
    for k in "$TMP"/keys/*.pem; do
        [ -f "$k" ] || die "no keys in the bundle"
        install_key "$(basename "$k" .pem)" "$k"
    done
}

cmd_trust_add() {
    lock "trust-add"
    new_tmp
    cat >"$TMP/key.pem"
    install_key "${1:-}" "$TMP/key.pem"
}

cmd_trust_remove() {
    lock "trust-remove"
    check_key_name "${1:-}"
    [ -f "$STATE/trusted/$1.pem" ] || die "key $1 is not trusted here"
    [ "$(trusted_count)" -gt 1 ] || die "refusing to remove the last trusted key"
    rm -f "$STATE/trusted/$1.pem"
    echo "untrusted $1"
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

