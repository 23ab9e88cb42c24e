-- Random ranges of a file, as a player fetching segments. BENCH_PATH is the
-- request target, BENCH_SIZE the file size, BENCH_CHUNK the range length
-- (default 64 KiB).
local path = os.getenv("BENCH_PATH")
local size = tonumber(os.getenv("BENCH_SIZE"))
local chunk = tonumber(os.getenv("BENCH_CHUNK") or "65536")
math.randomseed(42)
request = function()
  local first = math.random(0, size - chunk - 1)
  return wrk.format("GET", path, { ["Range"] = "bytes=" .. first .. "-" .. (first + chunk - 1) })
end
