#!/usr/bin/env bash
# Side-by-side benchmark on this machine's loopback: nginx, tower-http's
# ServeDir and sage-stream (watch log off, on with SQLite, on with
# PostgreSQL). Prints Markdown tables: requests/s, server CPU per request
# and peak memory, with ratios to nginx (medians over interleaved rounds),
# and the watch log's cost per round.
#
#   bash bench/run.sh                       # 3 rounds of 8 s per server and workload
#   ROUNDS=5 DURATION=15 bash bench/run.sh
#   WORKLOADS="range64k full" bash bench/run.sh
#   SERVERS=sage ROUNDS=15 DURATION=3 WORKLOADS=range64k bash bench/run.sh
#                                           # the watch log's cost alone
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
# range64k: random 64 KiB ranges (small requests: the per-request costs
# show); range1m: random 1 MiB ranges (segment-sized); full: whole 322 KiB
# sample.mp4.
WORKLOADS=${WORKLOADS:-range64k range1m full}
CONNECTIONS=${CONNECTIONS:-32}
# all: nginx, ServeDir and the sage-stream servers; sage: sage-stream only
# (more rounds in the same time, for the watch log's cost).
SERVERS=${SERVERS:-all}
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
# CPU ticks of every PostgreSQL server process (its backends, WAL writer,
# checkpointer...): the log's database work when it runs on this machine.
pg_ticks() {
  local total=0 pid
  for pid in $(pgrep -x postgres || true); do
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
# run ROUND NAME PID PORT SCRIPT PATH
run() {
  local round=$1 name=$2 pid=$3 port=$4 script=$5 target=$6
  local lua=full chunk=0
  case $script in
    range64k) lua=range; chunk=65536;;
    range1m) lua=range; chunk=1048576;;
  esac
  BENCH_PATH=$target BENCH_SIZE=$SIZE BENCH_CHUNK=$chunk wrk -t1 -c"$CONNECTIONS" -d1s -s "bench/$lua.lua" http://127.0.0.1:"$port" >/dev/null
  local before after out db_before db_after
  before=$(ticks "$pid")
  db_before=$(pg_ticks)
  out=$(BENCH_PATH=$target BENCH_SIZE=$SIZE BENCH_CHUNK=$chunk wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "bench/$lua.lua" http://127.0.0.1:"$port")
  after=$(ticks "$pid")
  # Rows still in the writer's queue are written within its 200 ms flush.
  sleep 0.3
  db_after=$(pg_ticks)
  local requests errors
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  local rps cpu_us db_us
  rps=$(awk -v r="$requests" -v d="$DURATION" 'BEGIN {printf "%.0f", r / d}')
  cpu_us=$(awk -v t=$((after - before)) -v c="$CLK" -v r="$requests" 'BEGIN {printf "%.1f", t * 1e6 / c / r}')
  db_us=$(awk -v t=$((db_after - db_before)) -v c="$CLK" -v r="$requests" 'BEGIN {printf "%.1f", t * 1e6 / c / r}')
  results+=("$round|$script|$name|$rps|$cpu_us|${errors:-0}|$db_us")
  echo "  round $round $script $name: $rps req/s, $cpu_us µs CPU/request, PostgreSQL $db_us µs/request" >&2
}

# Every server runs for the whole benchmark (idle ones cost nothing), so the
# rounds can interleave them: a slow spell of the shared machine then hits
# every server alike instead of whichever ran during it.
names=(); pids=(); ports=(); range_targets=(); full_targets=(); cmds=(); peaks=()
start_server() { # NAME PORT TARGET_RANGE TARGET_FULL -- command...
  local name=$1 port=$2 tr=$3 tf=$4; shift 5
  "$@" >>"$work/$port.log" 2>&1 &
  pids+=("$!"); names+=("$name"); ports+=("$port"); range_targets+=("$tr"); full_targets+=("$tf")
  cmds+=("$(printf '%q ' "$@")"); peaks+=(0)
  wait_port "$port"
}
# Keeps the largest peak RSS a server's processes reached.
note_peak() { # INDEX
  local kib
  kib=$(peak_kib "${pids[$1]}")
  [ "$kib" -gt "${peaks[$1]}" ] && peaks[$1]=$kib
  return 0
}
# Starts a sage-stream server again (same command, environment and
# database): two processes of one binary can differ by several per cent
# for the whole of their lives (memory layout), so each round gets new
# ones and no server keeps a lucky or unlucky process.
restart_server() { # INDEX
  note_peak "$1"
  kill -INT "${pids[$1]}" 2>/dev/null || true
  wait "${pids[$1]}" 2>/dev/null || true
  eval "${cmds[$1]}" '>>"$work/${ports[$1]}.log" 2>&1 &'
  pids[$1]=$!
  wait_port "${ports[$1]}"
}

echo "benchmarking: $ROUNDS rounds of ${DURATION}s per server and workload, $CONNECTIONS connections..." >&2
if [ "$SERVERS" = all ]; then
  start_server nginx 8090 /big.bin /sample.mp4 -- nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
  start_server "tower-http ServeDir" 8091 /big.bin /sample.mp4 -- target/release/examples/bench_servedir "$work/media" 127.0.0.1:8091
fi
export RUST_LOG=warn
start_server "sage-stream, log off" 8092 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  env STREAM_WATCH_LOG_ENABLED=false target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8092 --database "sqlite://$work/off.db"
# The same log-off server twice: how far two runs of one server differ on
# this machine is the noise floor of every ratio below.
start_server "sage-stream, log off (control)" 8095 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  env STREAM_WATCH_LOG_ENABLED=false target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8095 --database "sqlite://$work/off2.db"
start_server "sage-stream, log SQLite" 8093 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8093 --database "sqlite://$work/log.db"
# --durable-log: every row journaled to the spool as its response ends.
start_server "sage-stream, log SQLite durable" 8096 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
  target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8096 --database "sqlite://$work/durable.db" --durable-log
pg_db=""
if pg_isready -q -d "$PG_URL" 2>/dev/null; then
  pg_db="sage_bench_$$"
  psql -q "$PG_URL" -c "CREATE DATABASE $pg_db" >/dev/null
  start_server "sage-stream, log PostgreSQL" 8094 "/api/stream?path=big.bin" "/api/stream?path=sample.mp4" -- \
    target/release/sage-stream serve --root "$work/media" --bind 127.0.0.1:8094 --database "${PG_URL%/*}/$pg_db"
fi

for round in $(seq 1 "$ROUNDS"); do
  # Even rounds run the servers in reverse order, so a drift of the
  # machine's speed during a round favours no server.
  order=("${!names[@]}")
  if [ "$round" -gt 1 ]; then
    for i in "${order[@]}"; do
      case ${names[$i]} in sage-stream*) restart_server "$i";; esac
    done
  fi
  if [ $((round % 2)) -eq 0 ]; then
    order=($(printf '%s\n' "${order[@]}" | sort -rn))
  fi
  for script in $WORKLOADS; do
    for i in "${order[@]}"; do
      if [ "$script" = full ]; then target=${full_targets[$i]}; else target=${range_targets[$i]}; fi
      run "$round" "${names[$i]}" "${pids[$i]}" "${ports[$i]}" "$script" "$target"
    done
  done
done

for i in "${!names[@]}"; do note_peak "$i"; done
for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
if [ -n "$pg_db" ]; then
  psql -q "$PG_URL" -c "DROP DATABASE $pg_db WITH (FORCE)" >/dev/null
fi

# median VALUES...: the middle value (the mean of the two middle ones).
median() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# field ROUND SCRIPT NAME COLUMN: one measured value (4 = req/s, 5 = CPU
# µs, 6 = non-2xx, 7 = PostgreSQL server CPU µs).
field() {
  local row
  for row in "${results[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    if [ "${f[0]}" = "$1" ] && [ "${f[1]}" = "$2" ] && [ "${f[2]}" = "$3" ]; then echo "${f[$(($4 - 1))]}"; return; fi
  done
}

rounds=$(seq 1 "$ROUNDS")
for script in $WORKLOADS; do
  case $script in
    range64k) what="Random 64 KiB ranges of a 16 MiB file";;
    range1m) what="Random 1 MiB ranges of a 16 MiB file";;
    full) what="Whole 322 KiB sample.mp4";;
  esac
  echo; echo "$what ($CONNECTIONS connections, median of $ROUNDS rounds of ${DURATION}s):"
  echo
  echo "| server | req/s | vs ${names[0]} | CPU µs/req | vs ${names[0]} | PostgreSQL CPU µs/req | peak RSS MiB | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  base_rps=""; base_cpu=""
  for i in "${!names[@]}"; do
    name=${names[$i]}
    rps=$(median $(for r in $rounds; do field "$r" "$script" "$name" 4; done))
    cpu=$(median $(for r in $rounds; do field "$r" "$script" "$name" 5; done))
    errs=$(for r in $rounds; do field "$r" "$script" "$name" 6; done | awk '{s += $1} END {print s + 0}')
    db="–"
    case $name in *PostgreSQL*) db=$(median $(for r in $rounds; do field "$r" "$script" "$name" 7; done));; esac
    [ -n "$base_rps" ] || { base_rps=$rps; base_cpu=$cpu; }
    awk -v n="$name" -v r="$rps" -v c="$cpu" -v k="${peaks[$i]}" -v br="$base_rps" -v bc="$base_cpu" -v e="$errs" -v db="$db" \
      'BEGIN {printf "| %s | %d | %.2f | %.1f | %.2f | %s | %.1f | %s |\n", n, r, r / br, c, c / bc, db, k / 1024, e}'
  done
done

# The watch log's cost: each round compares the log-on server with the
# log-off one measured seconds apart in the same round; the control row
# compares the log-off server with itself.
echo
echo "Watch-log cost (requests/s with the log on ÷ log off, per round; then the median; control: log off ÷ log off):"
echo
# Per-round columns only while they fit; the middle half (25th to 75th
# percentile of the rounds' ratios) shows the spread either way.
shown=""; [ "$ROUNDS" -le 6 ] && shown=$rounds
quartiles() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.3f–%.3f", v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)]}'
}
echo "| workload | database | $(for r in $shown; do printf 'round %s | ' "$r"; done)middle half | median | cost |"
echo "|---|---|$(for r in $shown; do printf -- '---:|'; done)---:|---:|---:|"
for script in $WORKLOADS; do
  for db in "off (control)" SQLite "SQLite durable" PostgreSQL; do
    [ -n "$(field 1 "$script" "sage-stream, log $db" 4)" ] || continue
    ratios=()
    for r in $rounds; do
      ratios+=("$(awk -v on="$(field "$r" "$script" "sage-stream, log $db" 4)" -v off="$(field "$r" "$script" "sage-stream, log off" 4)" 'BEGIN {printf "%.3f", on / off}')")
    done
    med=$(median "${ratios[@]}")
    per_round=""; [ -n "$shown" ] && per_round=$(printf '%s | ' "${ratios[@]}")
    printf '| %s | %s | %s%s | %.3f | %+.1f %% |\n' "$script" "$db" "$per_round" "$(quartiles "${ratios[@]}")" "$med" "$(awk -v m="$med" 'BEGIN {print (1 - m) * 100}')"
  done
done
