-- Whole-file GETs of the sample clip.
local path = os.getenv("BENCH_PATH")
request = function()
  return wrk.format("GET", path)
end
