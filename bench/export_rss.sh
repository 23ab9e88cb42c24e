#!/usr/bin/env bash
# Peak memory of a streamed admin export: fills an SQLite watch log with
# ROWS rows (default one million, one INSERT ... SELECT through sqlite3),
# starts `sage-stream serve`, downloads /admin/export.csv and .json to
# /dev/null with curl, and prints VmHWM (peak RSS) before and after each.
#
#   bash bench/export_rss.sh                  # the release binary of this checkout
#   BIN=/path/to/sage-stream bash bench/export_rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
PORT=${PORT:-18630}
command -v sqlite3 >/dev/null || { echo "install sqlite3: apt-get install -y sqlite3" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build -q --release --features full --bin sage-stream
  BIN=target/release/sage-stream
fi
dir=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir "$dir/media"
"$BIN" migrate --database "sqlite://$dir/log.db" >/dev/null 2>&1
# Timestamps in the store's own text form (%F %T%.6f), 20 s apart.
sqlite3 "$dir/log.db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS - 1)
INSERT INTO watch_logs (created_at, path, user_id, is_authenticated, ip, method, status,
                        range_header, bytes_sent, duration_ms, user_agent, completed)
SELECT strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || (i * 20) || ' seconds') || '000',
       'videos/v' || printf('%03d', i % 500) || '.mp4',
       CASE WHEN i % 3 = 0 THEN 'user' || (i % 2000) END, i % 3 = 0,
       '10.' || (i % 200) || '.' || ((i / 200) % 250) || '.' || (i % 7), 'GET',
       CASE WHEN i % 50 = 0 THEN 403 ELSE 206 END, 'bytes=' || ((i % 100) * 65536) || '-',
       65536, 4,
       'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
       1
FROM n;
COMMIT;
SQL
"$BIN" serve --root "$dir/media" --database "sqlite://$dir/log.db" --admin-token t \
  --bind "127.0.0.1:$PORT" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
curl -s -o /dev/null -H 'Authorization: Bearer t' "http://127.0.0.1:$PORT/admin/"
hwm() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }
idle=$(hwm)
echo "rows: $ROWS; idle VmHWM: $idle kB"
for format in csv json; do
  start=$(date +%s.%N)
  bytes=$(curl -s -H 'Authorization: Bearer t' "http://127.0.0.1:$PORT/admin/export.$format" \
    -o /dev/null -w '%{size_download}')
  end=$(date +%s.%N)
  now=$(hwm)
  printf '%s: %s bytes in %.1f s; VmHWM %s kB (+%.1f MiB over idle)\n' \
    "$format" "$bytes" "$(echo "$end - $start" | bc)" "$now" "$(echo "($now - $idle) / 1024" | bc -l)"
done
