#!/bin/sh
# A compromised host, for the hostile-host tests: the lab host's sshd runs
# every command through this script (ForceCommand, the inventory's
# lab_force_command; the tests copy it to the host's /run/lab), which
# answers as the test chose. Test helper, not product code.
#
# The rules are /run/lab/hostile-rules on the host (.lab/HOST/hostile-rules
# on the controller), one a line, fields separated by tabs:
#
#   GLOB  ACTION  [ARG]  [STATUS]
#
# The first rule whose shell GLOB matches the command ($SSH_ORIGINAL_COMMAND)
# decides; without one the command runs as sshd would have run it.
#   reply FILE     print /run/lab/hostile/FILE instead of running the command
#   stderr FILE    the same on stderr (exit STATUS, default 1)
#   append FILE    run the command, then print FILE after its own output
#   hang           answer nothing, ever (reads nothing either)
#   flood MIB      print MIB MiB of text, reading nothing
cmd=${SSH_ORIGINAL_COMMAND:-}
rules=/run/lab/hostile-rules
replies=/run/lab/hostile
tab=$(printf '\t')

if [ -n "$cmd" ] && [ -f "$rules" ]; then
    while IFS=$tab read -r glob action arg status <&4; do
        # shellcheck disable=SC2254  # the rule's glob is a pattern
        case $cmd in
            $glob) ;;
            *) continue ;;
        esac
        case $action in
            reply) cat "$replies/$arg"; exit "${status:-0}" ;;
            stderr) cat "$replies/$arg" >&2; exit "${status:-1}" ;;
            append) sh -c "$cmd" 4<&-; rc=$?; cat "$replies/$arg"; exit "$rc" ;;
            hang) exec sleep 86400 4<&- ;;
            flood) yes 'generation 1 closure=/frx/store/a hostile host floods its answer' |
                       head -c "$((arg * 1048576))"; exit 0 ;;
        esac
    done 4<"$rules"
fi
exec sh -c "$cmd"
