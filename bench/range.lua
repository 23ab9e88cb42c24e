-- Random 64 KiB ranges of a 16 MiB file, as a player fetching segments.
-- BENCH_PATH is the request target, BENCH_SIZE the file size.
local path = os.getenv("BENCH_PATH")
local size = tonumber(os.getenv("BENCH_SIZE"))
local chunk = 65536
math.randomseed(42)
request = function()
  local first = math.random(0, size - chunk - 1)
  return wrk.format("GET", path, { ["Range"] = "bytes=" .. first .. "-" .. (first + chunk - 1) })
end
