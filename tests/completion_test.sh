#!/usr/bin/env bash
# The bash completion installed with crier offers every subcommand and every option that the
# tool's own help lists, so that the two cannot drift apart.
#   completion_test.sh CRIER COMPLETION_SCRIPT
set -uo pipefail
crier=$1
source "$2"

offered() {  # what completing the words given (the last one partial) offers
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  _crier
  printf '%s\n' "${COMPREPLY[@]}"
}
subcommands() { "$crier" "$@" --help | awk '/^Subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }'; }
options() { "$crier" "$@" --help | grep -oE '^  (-[a-z],)?--[a-z-]+' | sed -E 's/^  (-[a-z],)?//'; }

failed=0
check() {  # check WORD WORDS...: completing WORDS offers WORD
  local want=$1
  shift
  # Not piped into grep -q: it exits at its first match, and with pipefail the writer's
  # SIGPIPE would fail the check (it did, under load, when WORD was offered first of two).
  if ! grep -qxe "$want" <<<"$(offered "$@")"; then
    echo "completing '$*' does not offer $want"
    failed=1
  fi
}
for sub in $(subcommands); do
  check "$sub" crier "${sub:0:2}"
  if [[ $sub == dlq ]]; then
    for d in $(subcommands dlq); do
      check "$d" crier dlq "${d:0:1}"
      for o in $(options dlq "$d"); do check "$o" crier dlq "$d" bus.db "${o:0:3}"; done
    done
  else
    for o in $(options "$sub"); do check "$o" crier "$sub" bus.db "${o:0:3}"; done
  fi
done
check --version crier --v
[[ $failed == 0 ]] && echo "every subcommand and option is completed"
exit $failed
