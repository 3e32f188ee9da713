# bash completion for crier: subcommands, their options, and store files for BUS.
# Installed as share/bash-completion/completions/crier.
_crier() {
  local cur prev words cword
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local sub="" dlq=""
  local i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -*) ;;
      *) if [[ -z $sub ]]; then sub=${COMP_WORDS[i]}; elif [[ $sub == dlq && -z $dlq ]]; then dlq=${COMP_WORDS[i]}; fi ;;
    esac
  done
  local opts
  case $sub in
    "") COMPREPLY=($(compgen -W "status tail dlq publish republish replay dashboard --help --version" -- "$cur")); return ;;
    status) opts="--json --watch --every --help" ;;
    tail) opts="--type --subject --grep --from -n --limit -f --follow --json --help" ;;
    publish) opts="--type --data --subject --key --attr --source --help" ;;
    republish) opts="--help" ;;
    replay) opts="--subscriber --type --to --yes --help" ;;
    dashboard) opts="--listen --token --interval --read-only --help" ;;
    dlq)
      case $dlq in
        "") COMPREPLY=($(compgen -W "list show redrive purge --help" -- "$cur")); return ;;
        list) opts="--subscriber --type --json --help" ;;
        show) opts="--subscriber --type --help" ;;
        redrive) opts="--subscriber --type --id --all --yes --rate --edit --help" ;;
        purge) opts="--subscriber --type --id --all --yes --help" ;;
      esac ;;
  esac
  case $prev in
    --from) COMPREPLY=($(compgen -W "beginning now -10m -1h -1d" -- "$cur")); return ;;
    --to) COMPREPLY=($(compgen -W "end -10m -1h -1d" -- "$cur")); return ;;
    --type | --subject | --grep | -n | --limit | --data | --key | --attr | --source | --subscriber | --id | --rate | \
      --edit | --listen | --token | --interval | --every) return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))  # BUS: a store file (or type a nats:// URL)
  fi
}
complete -o filenames -F _crier crier
