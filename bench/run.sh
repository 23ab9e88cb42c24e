#!/usr/bin/env bash
# Side-by-side benchmark on this machine's loopback: nginx, tower-http's
# ServeDir and sage-stream (watch log off, on with SQLite, on with
# PostgreSQL). Prints a Markdown table: requests/s, server CPU per request
# and peak memory, with ratios to nginx.
#
#   bash bench/run.sh            # 8 s per run
#   DURATION=15 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}

for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "install $tool: apt-get install -y $tool" >&2; exit 1; }
done
cargo build -q --release --all-features --bin sage-stream --example bench_servedir

work=$(mktemp -d /tmp/sage-bench.XXXXXX)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$work"' EXIT
mkdir -p "$work/media" "$work/nginx"
head -c $((16 * 1024 * 1024)) /dev/urandom > "$work/media/big.bin"
cp media/sample.mp4 "$work/media/sample.mp4"
chmod -R a+rX "$work/media"
SIZE=$((16 * 1024 * 1024))
CLK=$(getconf CLK_TCK)

cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush off;
  tcp_nodelay on;
  keepalive_requests 100000;
  types { video/mp4 mp4; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:8090; root $work/media; }
}
CONF

# CPU ticks (user+system) of a process and its children.
ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
# Peak resident memory (KiB) of a process and its children.
peak_kib() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/status" ] || continue
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")))
  done
  echo "$total"
}
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; exit 1
}

results=()
# run NAME PID SCRIPT PATH
run() {
  local name=$1 pid=$2 script=$3 target=$4
  BENCH_PATH=$target BENCH_SIZE=$SIZE wrk -t1 -c"$CONNECTIONS" -d2s -s "bench/$script.lua" http://127.0.0.1:"$PORT" >/dev/null
  local before after out
  before=$(ticks "$pid")
  out=$(BENCH_PATH=$target BENCH_SIZE=$SIZE wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "bench/$script.lua" http://127.0.0.1:"$PORT")
  after=$(ticks "$pid")
  local requests errors
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  local rps cpu_us
  rps=$(awk -v r="$requests" -v d="$DURATION" 'BEGIN {printf "%.0f", r / d}')
  cpu_us=$(awk -v t=$((after - before)) -v c="$CLK" -v r="$requests" 'BEGIN {printf "%.1f", t * 1e6 / c / r}')
  results+=("$script|$name|$rps|$cpu_us|$(peak_kib "$pid")|${errors:-0}")
  echo "  $script $name: $rps req/s, $cpu_us µs CPU/request" >&2
}

bench_server() { # NAME PORT TARGET_RANGE TARGET_FULL -- command...
  local name=$1; PORT=$2; local tr=$3 tf=$4; shift 5
  "$@" >"$work/$PORT.log" 2>&1 &
  local pid=$!
  wait_port "$PORT"
  run "$name" "$pid" range "$tr"
  run "$name" "$pid" full "$tf"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
}

echo "benchmarking for ${DURATION}s per run, $CONNECTIONS connections..." >&2
bench_server nginx 8090 /big.bin /sample.mp4 -- nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
bench_server "tower-http ServeDir" 8091 /big.bin /sample.mp4 -- target/release/examples/bench_servedir "$work/media" 127.0.0.1:8091
export RUST_LOG=warn
STREAM_WATCH_LOG_ENABLED=false bench_server "sage-stream, log off" 8092 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8092 --database "sqlite://$work/off.db"
bench_server "sage-stream, log SQLite" 8093 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8093 --database "sqlite://$work/log.db"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  db="sage_bench_$$"
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
  bench_server "sage-stream, log PostgreSQL" 8094 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
    target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8094 --database "postgres://postgres@127.0.0.1:5432/$db"
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi

for script in range full; do
  case $script in
    range) echo; echo "Random 64 KiB ranges of a 16 MiB file ($CONNECTIONS connections, ${DURATION}s):";;
    full) echo; echo "Whole 322 KiB sample.mp4 ($CONNECTIONS connections, ${DURATION}s):";;
  esac
  echo
  echo "| server | req/s | vs nginx | CPU µs/req | vs nginx | peak RSS MiB | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  base_rps=""; base_cpu=""
  for row in "${results[@]}"; do
    IFS='|' read -r s name rps cpu kib errs <<<"$row"
    [ "$s" = "$script" ] || continue
    [ -n "$base_rps" ] || { base_rps=$rps; base_cpu=$cpu; }
    awk -v n="$name" -v r="$rps" -v c="$cpu" -v k="$kib" -v br="$base_rps" -v bc="$base_cpu" -v e="$errs" \
      'BEGIN {printf "| %s | %d | %.2f | %.1f | %.2f | %.1f | %s |\n", n, r, r / br, c, c / bc, k / 1024, e}'
  done
done
