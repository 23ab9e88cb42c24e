-- Requests for bench/perf.sh: whole-file GETs (BENCH_CHUNK=0) or random
-- ranges of BENCH_CHUNK bytes at offsets aligned to BENCH_CHUNK, from a
-- file of BENCH_SIZE bytes at BENCH_PATH.
--
-- The offsets come from a PRNG of our own (Park-Miller, 48271 mod 2^31-1:
-- exact in Lua's doubles), one per wrk thread, seeded from BENCH_SEED and
-- the thread's number, so every server is asked for the same sequence of
-- ranges in the same run and in every run. perf.sh's byte check computes
-- the first offsets of thread 1 the same way.
--
-- done() prints one machine-readable line that perf.sh parses:
--   PERF requests=N bytes=N duration_us=N p50_us=N p99_us=N status_errors=N socket_errors=N
local path = os.getenv("BENCH_PATH")
local size = tonumber(os.getenv("BENCH_SIZE") or "0")
local chunk = tonumber(os.getenv("BENCH_CHUNK") or "0")
local seed = tonumber(os.getenv("BENCH_SEED") or "42")

local M = 2147483647
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local state, slots, whole

function init(args)
  -- tid: set by setup() in this thread's Lua state before init().
  state = (seed * 1000003 + (tid or 1) * 7919) % M
  if state == 0 then state = 1 end
  if chunk > 0 then
    slots = math.floor(size / chunk)
  else
    whole = wrk.format("GET", path)
  end
end

function request()
  if whole then
    return whole
  end
  state = (state * 48271) % M
  local first = (state % slots) * chunk
  return wrk.format("GET", path, {
    ["Range"] = string.format("bytes=%d-%d", first, first + chunk - 1),
  })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PERF requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
