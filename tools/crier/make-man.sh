#!/bin/sh
# Writes crier.1 (to $2) from the help of crier ($1) and of every subcommand, with help2man.
set -eu
crier=$1
out=$2
include=$out.include
{
  echo "[COMMANDS]"
  for sub in status tail publish republish replay dashboard "dlq list" "dlq show" "dlq redrive" "dlq purge"; do
    echo ".SS crier $sub"
    echo ".nf"
    # shellcheck disable=SC2086
    "$crier" $sub --help | sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./'
    echo ".fi"
  done
  echo "[SEE ALSO]"
  echo "The README and docs/cli.md of crier."
} > "$include"
help2man --no-info --no-discard-stderr --section=1 --name="see, tail, replay and repair a crier event bus" \
  --include="$include" --output="$out" "$crier"
rm -f "$include"
