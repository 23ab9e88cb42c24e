#!/usr/bin/env bash
# Four streaming workloads side by side on this machine's loopback: nginx
# (2 workers, sendfile), tower-http's ServeDir (examples/bench_servedir.rs)
# and sage-stream with the watch log off and on (SQLite), in interleaved
# rounds; then 256 slow readers for peak memory. Checks every server's
# bytes against the files on disk before measuring. Prints Markdown tables
# (stdout; progress goes to stderr). See bench/README.md, "perf.sh".
#
#   bash bench/perf.sh                    # 3 rounds of 10 s per server and workload (~10 min)
#   ROUNDS=5 DURATION=20 bash bench/perf.sh > perf.md
#   BENCH_DIR=/var/tmp/sage-bench bash bench/perf.sh
#                                         # keeps (and reuses) the test files there
#   WORKLOADS="range64k range1m-c1" bash bench/perf.sh
#   BENCH_SMOKE=1 bash bench/perf.sh      # every step for ~1 s, tiny files: does the harness work?
#   SAGE_FLAGS="--watch-log false" SAGE_LOG_FLAGS="" bash bench/perf.sh
#                                         # flags of an older sage-stream
#   BASELINE_BIN=/path/to/old/sage-stream bash bench/perf.sh
#                                         # before/after: the last slot runs that binary, log off
#   BASELINE_BIN=target/release/sage-stream BASELINE_FLAGS="--no-watch-log --no-access-log --zero-copy" \
#     BASELINE_NAME="sage-stream, zero copy" bash bench/perf.sh
#                                         # the last slot with other flags (here: zero copy)
#   BENCH_PROFILE=dev BENCH_SMOKE=1 bash bench/perf.sh
#                                         # the debug build (CI's smoke run: no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

SMOKE=${BENCH_SMOKE:-0}
[ "$SMOKE" = 0 ] && SMOKE=""
if [ -n "$SMOKE" ]; then
  DURATION=${DURATION:-1}; ROUNDS=${ROUNDS:-1}; WARMUP=${WARMUP:-0}
  BIG_MIB=${BIG_MIB:-8}; WHOLE_MIB=${WHOLE_MIB:-2}
  SLOW_READERS=${SLOW_READERS:-4}; SLOW_DURATION=${SLOW_DURATION:-1}; SLOW_RANGE_MIB=${SLOW_RANGE_MIB:-1}
else
  DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-3}; WARMUP=${WARMUP:-1}
  BIG_MIB=${BIG_MIB:-1024}; WHOLE_MIB=${WHOLE_MIB:-64}
  SLOW_READERS=${SLOW_READERS:-256}; SLOW_DURATION=${SLOW_DURATION:-10}; SLOW_RANGE_MIB=${SLOW_RANGE_MIB:-4}
fi
# Slow readers read this many bytes per second each.
SLOW_RATE=${SLOW_RATE:-262144}
# full: the whole 64 MiB file, 4 connections; range1m: random 1 MiB ranges
# of the 1 GiB file, 16 connections; range64k: random 64 KiB ranges, 64
# connections; range1m-c1: random 1 MiB ranges, 1 connection.
WORKLOADS=${WORKLOADS:-full range1m range64k range1m-c1}
SEED=${SEED:-42}
# Four consecutive ports from here (not run.sh's 8090-8096, so both can run).
PORT_BASE=${PORT_BASE:-18190}
SAGE_FLAGS=${SAGE_FLAGS:---no-watch-log --no-access-log}
SAGE_LOG_FLAGS=${SAGE_LOG_FLAGS:---no-access-log}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$repo/$TARGET_DIR;; esac

die() { echo "perf.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

[ -x "$NGINX" ] || die "nginx not found (apt-get install -y nginx, or set NGINX=/path/to/nginx)"
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
for tool in curl python3 cmp dd sha256sum pgrep; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in release) PROFILE_DIR=release;; dev) PROFILE_DIR=debug;; *) die "BENCH_PROFILE is release or dev";; esac
say "building ($PROFILE, all features)..."
cargo build -q --profile "$PROFILE" --all-features --bin sage-stream --example bench_servedir
SAGE_BIN=$TARGET_DIR/$PROFILE_DIR/sage-stream
SERVEDIR_BIN=$TARGET_DIR/$PROFILE_DIR/examples/bench_servedir

work=$(mktemp -d /tmp/sage-perf.XXXXXX)
chmod 755 "$work"
pids=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do [ -n "$pid" ] && stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The files: random bytes, in the temp dir, or kept in BENCH_DIR and
# reused when they are already there with the right size.
if [ -n "${BENCH_DIR:-}" ]; then
  mkdir -p "$BENCH_DIR"
  media=$(cd "$BENCH_DIR" && pwd)
else
  media=$work/media
  mkdir -p "$media"
fi
chmod a+rx "$media"
BIG_SIZE=$((BIG_MIB * 1048576))
WHOLE_SIZE=$((WHOLE_MIB * 1048576))
big=big-${BIG_MIB}m.bin
whole=whole-${WHOLE_MIB}m.bin
make_file() { # NAME BYTES
  if [ "$(stat -c %s "$media/$1" 2>/dev/null || echo 0)" = "$2" ]; then
    say "reusing $media/$1"
  else
    say "writing $media/$1 ($(($2 / 1048576)) MiB of random bytes)..."
    head -c "$2" /dev/urandom > "$media/$1.part"
    mv "$media/$1.part" "$media/$1"
  fi
  chmod a+r "$media/$1"
  # Into the page cache: every server then reads from memory alike.
  cat "$media/$1" > /dev/null
}
make_file "$big" "$BIG_SIZE"
make_file "$whole" "$WHOLE_SIZE"
whole_sha=$(sha256sum < "$media/$whole" | cut -d' ' -f1)
CLK=$(getconf CLK_TCK)

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush off;
  tcp_nodelay on;
  # Keep-alive without limits, like the other servers.
  keepalive_requests 1000000000;
  keepalive_timeout 3600s;
  keepalive_time 24h;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT_BASE; root $media; }
}
CONF

# --- /proc readings ---------------------------------------------------------

# The process and its live children (nginx: the master and its workers).
family() { echo "$1"; pgrep -P "$1" || true; }
# CPU ticks (utime + stime, plus cutime + cstime of reaped children).
ticks() {
  local total=0 pid t
  for pid in $(family "$1"); do
    t=$(awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || continue
    total=$((total + t))
  done
  echo "$total"
}
# Machine-wide softirq ticks (the 7th number of /proc/stat's cpu line).
softirq() { awk '$1 == "cpu" {print $8}' /proc/stat; }
# Sum over the family of a /proc/PID/status field in KiB (VmHWM, VmRSS).
status_kib() { # PID FIELD
  local total=0 pid k
  for pid in $(family "$1"); do
    k=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    total=$((total + ${k:-0}))
  done
  echo "$total"
}
# Resets the peak RSS (VmHWM) of the family to its current RSS, so each
# run reports its own peak (clear_refs value 5, Linux 4.0+).
hwm_reset=yes
reset_peak() {
  local pid
  for pid in $(family "$1"); do
    { echo 5 > "/proc/$pid/clear_refs"; } 2>/dev/null || hwm_reset=no
  done
}

# --- the servers ------------------------------------------------------------

names=("nginx" "tower-http ServeDir" "sage-stream, log off" "sage-stream, log SQLite")
if [ -n "${BASELINE_BIN:-}" ]; then
  [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"
  names[3]=${BASELINE_NAME:-sage-stream baseline, log off}
fi
cmds=(); ports=()
read -r -a sage_flags <<<"$SAGE_FLAGS"
read -r -a sage_log_flags <<<"$SAGE_LOG_FLAGS"
read -r -a baseline_flags <<<"${BASELINE_FLAGS:-$SAGE_FLAGS}"
q() { printf '%q ' "$@"; }
cmds[0]=$(q "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf")
cmds[1]=$(q "$SERVEDIR_BIN" "$media" "127.0.0.1:$((PORT_BASE + 1))")
cmds[2]=$(q "$SAGE_BIN" serve --root "$media" --bind "127.0.0.1:$((PORT_BASE + 2))" --database "sqlite://$work/off.db" ${sage_flags[@]+"${sage_flags[@]}"})
if [ -n "${BASELINE_BIN:-}" ]; then
  cmds[3]=$(q "$BASELINE_BIN" serve --root "$media" --bind "127.0.0.1:$((PORT_BASE + 3))" --database "sqlite://$work/log.db" ${baseline_flags[@]+"${baseline_flags[@]}"})
else
  cmds[3]=$(q "$SAGE_BIN" serve --root "$media" --bind "127.0.0.1:$((PORT_BASE + 3))" --database "sqlite://$work/log.db" ${sage_log_flags[@]+"${sage_log_flags[@]}"})
fi
for i in 0 1 2 3; do ports[$i]=$((PORT_BASE + i)); done
prefixes=("/" "/" "/api/stream?path=" "/api/stream?path=")
url() { echo "http://127.0.0.1:${ports[$1]}${prefixes[$1]}$2"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_server() { # INDEX
  local i=$1 n
  port_open "${ports[$i]}" && die "port ${ports[$i]} is already in use (set PORT_BASE)"
  # In the temp dir: whatever a server writes by default lands there.
  (cd "$work" && eval "exec ${cmds[$i]}") >>"$work/server$i.log" 2>&1 &
  pids[$i]=$!
  for n in $(seq 1 300); do
    port_open "${ports[$i]}" && return 0
    kill -0 "${pids[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$work/server$i.log" >&2
  die "${names[$i]} did not start on port ${ports[$i]}"
}
restart_server() { stop_pid "${pids[$1]}"; start_server "$1"; }

export RUST_LOG=${RUST_LOG:-warn}
say "starting the servers on 127.0.0.1:$PORT_BASE-$((PORT_BASE + 3))..."
for i in 0 1 2 3; do start_server "$i"; done

# --- byte check -------------------------------------------------------------

# The first offsets perf.lua's thread 1 asks for (same PRNG, same seed).
lua_offsets() { # CHUNK COUNT
  local m=2147483647 s n slots=$((BIG_SIZE / $1))
  s=$(((SEED * 1000003 + 7919) % m)); [ "$s" -eq 0 ] && s=1
  for n in $(seq 1 "$2"); do
    s=$((s * 48271 % m))
    echo $((s % slots * $1))
  done
}
hint() { [ "$1" = 0 ] && echo " (nginx's workers run as nobody when started as root: $media and its parents must be readable by all; see $work/nginx/error.log)"; true; }
check_range() { # INDEX FIRST LENGTH
  local i=$1 first=$2 len=$3 got
  got=$(curl -s -o "$work/got" -w '%{http_code} %{size_download}' \
    -H "Range: bytes=$first-$((first + len - 1))" "$(url "$i" "$big")") || got="curl failed"
  dd if="$media/$big" of="$work/want" bs=64K iflag=skip_bytes,count_bytes skip="$first" count="$len" status=none
  if [ "$got" != "206 $len" ] || ! cmp -s "$work/got" "$work/want"; then
    die "byte check: ${names[$i]}: bytes=$first-$((first + len - 1)) of $big: got '$got', want '206 $len' and the file's bytes$(hint "$i")"
  fi
}
say "byte check: ranges of $big and the whole $whole from every server..."
for i in 0 1 2 3; do
  for chunk in 1048576 65536; do
    for first in $(lua_offsets "$chunk" 3) $((BIG_SIZE - chunk)); do
      check_range "$i" "$first" "$chunk"
    done
  done
  # An unaligned range across a 64 KiB boundary.
  check_range "$i" $((65536 * 3 - 1000)) 5000
  got=$(curl -s -o "$work/got" -w '%{http_code} %{size_download}' "$(url "$i" "$whole")") || got="curl failed"
  sha=$(sha256sum < "$work/got" | cut -d' ' -f1)
  [ "$got" = "200 $WHOLE_SIZE" ] && [ "$sha" = "$whole_sha" ] ||
    die "byte check: ${names[$i]}: whole $whole: got '$got' sha256 $sha, want '200 $WHOLE_SIZE' sha256 $whole_sha$(hint "$i")"
  rm -f "$work/got" "$work/want"
done
say "byte check passed (9 ranges and one whole-file sha256 per server)"

# --- the runs ---------------------------------------------------------------

workload() { # NAME -> file chunk connections threads description
  case $1 in
    full) echo "$whole 0 4 2";;
    range1m) echo "$big 1048576 16 2";;
    range64k) echo "$big 65536 64 2";;
    range1m-c1) echo "$big 1048576 1 1";;
    *) die "unknown workload $1 (full, range1m, range64k, range1m-c1)";;
  esac
}
describe() {
  case $1 in
    full) echo "Whole $WHOLE_MIB MiB file, 4 connections";;
    range1m) echo "Random 1 MiB ranges of a $BIG_MIB MiB file, 16 connections";;
    range64k) echo "Random 64 KiB ranges of a $BIG_MIB MiB file, 64 connections";;
    range1m-c1) echo "Random 1 MiB ranges of a $BIG_MIB MiB file, 1 connection";;
  esac
}
for w in $WORKLOADS; do workload "$w" >/dev/null; done

declare -A R   # "round workload index" -> "rps mibs cpu_us sirq_us cpu_ms_gib sirq_ms_gib p50_ms p99_ms peak_kib errors"
harness_ok=yes
run() { # ROUND WORKLOAD INDEX
  local round=$1 w=$2 i=$3 file chunk conns threads size
  read -r file chunk conns threads <<<"$(workload "$w")"
  size=$BIG_SIZE; [ "$chunk" = 0 ] && size=$WHOLE_SIZE
  local -a cmd=(env BENCH_PATH="${prefixes[$i]}$file" BENCH_SIZE="$size" BENCH_CHUNK="$chunk" BENCH_SEED="$SEED"
    wrk -t"$threads" -c"$conns" --timeout 10s -s "$repo/bench/perf.lua")
  local target=http://127.0.0.1:${ports[$i]}
  if [ "$WARMUP" != 0 ]; then "${cmd[@]}" -d"${WARMUP}s" "$target" >/dev/null; fi
  local pid=${pids[$i]} t0 s0 t1 s1 out peak
  reset_peak "$pid"
  t0=$(ticks "$pid"); s0=$(softirq)
  out=$("${cmd[@]}" -d"${DURATION}s" "$target") || die "wrk failed against ${names[$i]}"
  t1=$(ticks "$pid"); s1=$(softirq)
  peak=$(status_kib "$pid" VmHWM)
  local line
  line=$(grep '^PERF ' <<<"$out") || die "no PERF line from wrk: $out"
  # PERF requests= bytes= duration_us= p50_us= p99_us= status_errors= socket_errors=
  local row
  row=$(awk -v t=$((t1 - t0)) -v s=$((s1 - s0)) -v c="$CLK" -v peak="$peak" '{
    for (k = 2; k <= NF; k++) { split($k, kv, "="); v[kv[1]] = kv[2] }
    n = v["requests"]; b = v["bytes"]; d = v["duration_us"] / 1e6
    if (n == 0) { print "none"; exit }
    gib = b / 1073741824
    printf "%.1f %.1f %.2f %.2f %.1f %.1f %.3f %.3f %d %d",
      n / d, b / d / 1048576, t * 1e6 / c / n, s * 1e6 / c / n,
      t * 1e3 / c / gib, s * 1e3 / c / gib, v["p50_us"] / 1e3, v["p99_us"] / 1e3,
      peak, v["status_errors"] + v["socket_errors"]
  }' <<<"$line")
  [ "$row" = none ] && die "${names[$i]} answered no request in workload $w"
  R["$round $w $i"]=$row
  read -r -a f <<<"$row"
  [ "${f[9]}" = 0 ] || { harness_ok=no; say "  ${names[$i]}: ${f[9]} errors (non-2xx or socket) in $w"; }
  say "  round $round $w ${names[$i]}: ${f[0]} req/s, ${f[1]} MiB/s, CPU ${f[2]} + softirq ${f[3]} µs/req, p99 ${f[7]} ms"
}

total=$((ROUNDS * $(wc -w <<<"$WORKLOADS") * 4 * (DURATION + WARMUP) + 4 * SLOW_DURATION))
say "measuring: $ROUNDS rounds × workloads [$WORKLOADS] × 4 servers, ${DURATION}s each (about $((total / 60)) min $((total % 60)) s)..."
for round in $(seq 1 "$ROUNDS"); do
  # Fresh Rust servers each round: two processes of one binary can differ
  # by several per cent for their whole life (memory layout).
  if [ "$round" -gt 1 ]; then for i in 1 2 3; do restart_server "$i"; done; fi
  # Even rounds in reverse order: a drift of the machine's speed during a
  # round favours no server.
  order="0 1 2 3"; [ $((round % 2)) -eq 0 ] && order="3 2 1 0"
  for w in $WORKLOADS; do
    for i in $order; do run "$round" "$w" "$i"; done
  done
done

# --- slow readers -----------------------------------------------------------

declare -A S   # index -> "ok bytes rss_before_kib peak_kib errors"
say "slow readers: $SLOW_READERS connections × ${SLOW_RANGE_MIB} MiB ranges of $big at $((SLOW_RATE / 1024)) KiB/s for ${SLOW_DURATION}s, per server..."
for i in 1 2 3; do restart_server "$i"; done
for i in 0 1 2 3; do
  pid=${pids[$i]}
  reset_peak "$pid"
  before=$(status_kib "$pid" VmRSS)
  rc=0
  out=$(timeout $((SLOW_DURATION + 60)) python3 "$repo/bench/slow_readers.py" --port "${ports[$i]}" \
    --target "${prefixes[$i]}$big" --file "$media/$big" --readers "$SLOW_READERS" \
    --duration "$SLOW_DURATION" --range $((SLOW_RANGE_MIB * 1048576)) --rate "$SLOW_RATE" 2>"$work/slow$i.err") || rc=$?
  peak=$(status_kib "$pid" VmHWM)
  line=$(grep '^SLOW ' <<<"$out") || { cat "$work/slow$i.err" >&2; die "slow readers against ${names[$i]} printed nothing (exit $rc)"; }
  ok=$(sed 's/.* ok=\([0-9]*\).*/\1/' <<<"$line")
  bytes=$(sed 's/.* bytes=\([0-9]*\).*/\1/' <<<"$line")
  errs=$(awk '{split($5, a, "="); split($6, b, "="); print a[2] + b[2]}' <<<"$line")
  if [ "$rc" != 0 ]; then harness_ok=no; head -n 5 "$work/slow$i.err" >&2; fi
  S[$i]="$ok $bytes $before $peak $errs"
  say "  ${names[$i]}: $ok/$SLOW_READERS readers done, $((bytes / 1048576)) MiB read, peak RSS $((peak / 1024)) MiB"
done

# --- tables -----------------------------------------------------------------

median() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# col WORKLOAD INDEX COLUMN: that column's value in every round.
col() { local r; for r in $(seq 1 "$ROUNDS"); do read -r -a f <<<"${R["$r $1 $2"]}"; echo "${f[$3]}"; done; }

irq_acct="unknown"
if [ -r /proc/config.gz ]; then cfg=$(zcat /proc/config.gz 2>/dev/null || true)
elif [ -r "/boot/config-$(uname -r)" ]; then cfg=$(cat "/boot/config-$(uname -r)")
else cfg=""; fi
if [ -n "$cfg" ]; then
  if grep -q '^CONFIG_IRQ_TIME_ACCOUNTING=y' <<<"$cfg"; then irq_acct=yes; else irq_acct=no; fi
fi

echo "perf.sh on $(nproc) cores, Linux $(uname -r), $(date -u +%Y-%m-%d): median of $ROUNDS rounds of ${DURATION}s (servers interleaved), seed $SEED${SMOKE:+ — SMOKE RUN, figures meaningless}."
echo
echo "CPU = the server's processes (utime + stime from /proc/PID/stat, nginx's master and workers); softirq = the whole machine's softirq time (/proc/stat) over the run, wrk's side of loopback included; sum = both.$(
  case $irq_acct in
    no) echo " This kernel has no CONFIG_IRQ_TIME_ACCOUNTING: a softirq that runs in the server's own context is counted in both, so the sum is an upper bound.";;
    yes) echo " This kernel accounts IRQ time apart (CONFIG_IRQ_TIME_ACCOUNTING): the two do not overlap.";;
  esac) Peak RSS: VmHWM, reset before each run, highest of the rounds$( [ "$hwm_reset" = yes ] || echo " (reset failed: peak over the process's life)"); nginx's summed over master and workers. Errors: non-2xx responses and socket errors, all rounds."
for w in $WORKLOADS; do
  echo
  echo "$(describe "$w"):"
  echo
  echo "| server | req/s | vs nginx | vs ServeDir | MiB/s | p50 ms | p99 ms | CPU µs/req | softirq µs/req | sum µs/req | sum vs nginx | CPU ms/GiB | softirq ms/GiB | sum ms/GiB | peak RSS MiB | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  declare -A M=()
  for i in 0 1 2 3; do
    for c in 0 1 2 3 4 5 6 7; do M["$i $c"]=$(median $(col "$w" "$i" "$c")); done
    M["$i sum"]=$(median $(for r in $(seq 1 "$ROUNDS"); do read -r -a f <<<"${R["$r $w $i"]}"; awk -v a="${f[2]}" -v b="${f[3]}" 'BEGIN {print a + b}'; done))
    M["$i sumgib"]=$(median $(for r in $(seq 1 "$ROUNDS"); do read -r -a f <<<"${R["$r $w $i"]}"; awk -v a="${f[4]}" -v b="${f[5]}" 'BEGIN {print a + b}'; done))
    M["$i peak"]=$(col "$w" "$i" 8 | sort -g | tail -n 1)
    M["$i errors"]=$(col "$w" "$i" 9 | awk '{s += $1} END {print s + 0}')
  done
  for i in 0 1 2 3; do
    awk -v n="${names[$i]}" -v rps="${M["$i 0"]}" -v mibs="${M["$i 1"]}" -v p50="${M["$i 6"]}" -v p99="${M["$i 7"]}" \
      -v cpu="${M["$i 2"]}" -v sirq="${M["$i 3"]}" -v sum="${M["$i sum"]}" -v cg="${M["$i 4"]}" -v sg="${M["$i 5"]}" \
      -v sumg="${M["$i sumgib"]}" -v peak="${M["$i peak"]}" -v e="${M["$i errors"]}" \
      -v nrps="${M["0 0"]}" -v drps="${M["1 0"]}" -v nsum="${M["0 sum"]}" '
      function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "–" }
      BEGIN {
        printf "| %s | %.0f | %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f | %.1f | %s | %.0f | %.0f | %.0f | %.1f | %d |\n",
          n, rps, ratio(rps, nrps), ratio(rps, drps), mibs, p50, p99, cpu, sirq, sum, ratio(sum, nsum), cg, sg, sumg, peak / 1024, e
      }'
  done
done

echo
if [ -n "${BASELINE_BIN:-}" ]; then
  echo "${names[3]} ÷ ${names[2]}, requests/s per round (the target line does not apply):"
else
  echo "Watch log on (SQLite) ÷ off, requests/s per round (target ≥ 0.95):"
fi
echo
echo "| workload | $(for r in $(seq 1 "$ROUNDS"); do printf 'round %s | ' "$r"; done)median | target |"
echo "|---|$(for r in $(seq 1 "$ROUNDS"); do printf -- '---:|'; done)---:|---|"
for w in $WORKLOADS; do
  ratios=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r -a on <<<"${R["$r $w 3"]}"; read -r -a off <<<"${R["$r $w 2"]}"
    ratios+=("$(awk -v a="${on[0]}" -v b="${off[0]}" 'BEGIN {printf "%.3f", a / b}')")
  done
  med=$(median "${ratios[@]}")
  verdict=$(awk -v m="$med" 'BEGIN {print (m >= 0.95 ? "met" : "not met")}')
  [ -n "$SMOKE" ] && verdict="not judged (smoke)"
  [ -n "${BASELINE_BIN:-}" ] && verdict="-"
  printf '| %s | %s%.3f | %s |\n' "$w" "$(printf '%s | ' "${ratios[@]}")" "$med" "$verdict"
done

echo
echo "$SLOW_READERS slow readers, each asking for ${SLOW_RANGE_MIB} MiB of the $BIG_MIB MiB file and reading $((SLOW_RATE / 1024)) KiB/s for ${SLOW_DURATION}s (bytes checked against the file; Rust servers freshly started):"
echo
echo "| server | readers done | MiB read | RSS before MiB | peak RSS MiB | peak vs nginx | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
read -r -a n0 <<<"${S[0]}"
for i in 0 1 2 3; do
  read -r -a s <<<"${S[$i]}"
  awk -v n="${names[$i]}" -v ok="${s[0]}" -v all="$SLOW_READERS" -v b="${s[1]}" -v before="${s[2]}" -v peak="${s[3]}" -v e="${s[4]}" -v np="${n0[3]}" \
    'BEGIN {printf "| %s | %d/%d | %.0f | %.1f | %.1f | %.2f | %d |\n", n, ok, all, b / 1048576, before / 1024, peak / 1024, peak / np, e}'
done

if [ -n "$SMOKE" ]; then
  echo
  if [ "$harness_ok" = yes ]; then
    echo "smoke: harness OK (servers answered, byte checks passed, tables printed; timings not judged)"
  else
    echo "smoke: FAILED (errors above)"
    exit 1
  fi
elif [ "$harness_ok" != yes ]; then
  say "perf.sh: some runs had errors (see the errors columns)"
fi
