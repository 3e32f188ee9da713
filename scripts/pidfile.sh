# Sourced by scripts/nats-server and scripts/redis-server: the server a pid file names.

# Whether the process the pid file names runs.
crier_pidfile_alive() {
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Stops the server the pid file $1 names ($2 says what it is) and waits until it has ended
# (up to 30 s: redis-server writes its append-only file first), so that a start right after
# finds the port free.
crier_stop_pidfile() {
  local pid
  if ! crier_pidfile_alive "$1"; then
    echo "no $2 of this project runs"
    return 0
  fi
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { echo "$2 stopped"; return 0; }
    sleep 0.1  # polling for the process's end, not synchronising a test
  done
  echo "$2 (pid $pid) has not ended 30 s after SIGTERM" >&2
  return 1
}
