# shellcheck shell=sh disable=SC2034,SC2153
# (one program with receiver.sh: names are set and used across its parts)
# Part of the fruixops receiver (see receiver.sh): the command dispatch.

CMD=${1:-}
[ $# -gt 0 ] && shift
case $CMD in
    plan) cmd_plan "$@" ;;
    receive) cmd_receive "$@" ;;
    item) cmd_item "$@" ;;
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
    *) die "unknown command '$CMD' (plan need receive item listings confirm rollback status install-bootloader verify gc trust-init trust-add trust-remove set-host-name)" ;;
esac
