# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): the command dispatch.

# A restricted deploy key (--ssh): the command line is what the client asked
# for, split into words here, with globbing off; never evaluated.
if [ "${1:-}" = --ssh ] && [ $# -eq 1 ]; then
    RESTRICTED=1
    forced_words
    set -f
    # shellcheck disable=SC2086 # split on purpose: checked words, no globbing
    set -- $FORCED_WORDS
    set +f
fi
check_words "$@"
# Run by an ordinary account without doas/sudo it could change nothing, and
# would only fail later, less clearly.
[ "$(id -u)" = 0 ] || die "the receiver runs as root (through doas or sudo for an ordinary account)"
CMD=$1
shift
case $CMD in
    plan) cmd_plan "$@" ;;
    receive) cmd_receive "$@" ;;
    item) cmd_item "$@" ;;
    pull) cmd_pull "$@" ;;
    import) cmd_import "$@" ;;
    listings) cmd_listings "$@" ;;
    need) cmd_need ;;
    confirm) cmd_confirm "$@" ;;
    rollback) cmd_rollback "$@" ;;
    status) cmd_status "$@" ;;
    install-bootloader) cmd_install_bootloader "$@" ;;
    verify) cmd_verify ;;
    gc) cmd_gc "$@" ;;
    trust-init) cmd_trust_init ;;
    trust-add) cmd_trust_add "$@" ;;
    trust-remove) cmd_trust_remove "$@" ;;
    set-host-name) cmd_set_host_name "$@" ;;
    secrets-key) cmd_secrets_key "$@" ;;
    secrets-deliver) cmd_secrets_deliver "$@" ;;
    secrets-activate) cmd_secrets_activate "$@" ;;
    version) cmd_version "$@" ;;
    install-receiver) cmd_install_receiver "$@" ;;
    boottime) cmd_boottime "$@" ;;
    reboot) cmd_reboot "$@" ;;
    check) cmd_check "$@" ;;
    manifest) cmd_manifest "$@" ;;
    activate) cmd_activate "$@" ;;
    config) cmd_config "$@" ;;
    config-check) cmd_config_check "$@" ;;
    *) refuse_access "unknown command '$CMD'" ;;
esac
