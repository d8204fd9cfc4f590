-- wrk script for `make bench-serve`: replays bench/serve.py's mixed traffic (raw HTTP/1.1
-- requests, GETs and basket POSTs, NUL-separated in the file given after `--`) on every
-- connection, each thread starting at its own place; prints one JSON line when done.
-- Run by bench/serve.py: wrk -t1 -c32 -d10s -s bench/serve_mix.lua URL -- requests.bin

local threads = 0
local requests, n, i = {}, 0, 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local stop = string.find(data, "\0", pos, true) or (#data + 1)
    requests[#requests + 1] = string.sub(data, pos, stop - 1)
    pos = stop + 1
  end
  n = #requests
  i = ((offset or 0) * 997) % n
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
