-- wrk script: replay pre-signed webhook requests (see bench/README.md).
--
--   wrk -t1 -c64 -d10s -s bench/wrk_signed.lua http://127.0.0.1:8080 -- requests.tsv 1
--
-- Arguments after `--` (each falls back to an environment variable):
--   1. lines file, one request per line "<signature>\t<body>"  (BENCH_REQUESTS)
--   2. number of wrk threads, must equal -t                      (BENCH_THREADS, default 1)
-- Other environment knobs:
--   BENCH_PATH  request path (default /webhooks/bench)
--   BENCH_WRAP  "1": when a thread has sent all its lines, start again from its
--               first line (re-sends old event ids: only for targets that do not
--               deduplicate, e.g. noop-server). Default: the thread stops issuing
--               requests and the RESULT line reports exhausted=<threads>.
--
-- Thread k (0-based) sends lines k, k+T, k+2T, ... so no event id is sent twice
-- across threads (wrk calls request() once in thread 0 to validate the script;
-- that first line is consumed and never sent). Each request is formatted once
-- in init(); request() only indexes a table, so the Lua side costs the same
-- for every target. Memory: ~2.8 KB of wrk RSS per 1.5 KB request line.
--
-- done() prints one machine-readable line:
--   RESULT requests=N duration_s=S rps=R rps_wall=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..
--          non2xx=N sock_errors=N exhausted=N wrapped=N      (on one line)
-- non2xx counts HTTP status >= 400 (wrk's own definition). rps is requests
-- over duration_s, timed from the first request sent to the end of the run or,
-- when every thread ran out of lines, to the moment the last one did; rps_wall
-- is wrk's own figure (requests over its -d clock).

local ffi_ok, ffi = pcall(require, "ffi")
local now_us
if ffi_ok then
   pcall(ffi.cdef, [[
      typedef struct { long tv_sec; long tv_usec; } sb_timeval;
      int gettimeofday(sb_timeval *tv, void *tz);
   ]])
   local tv = ffi.new("sb_timeval")
   now_us = function()
      ffi.C.gettimeofday(tv, nil)
      return tonumber(tv.tv_sec) * 1e6 + tonumber(tv.tv_usec)
   end
else
   now_us = function() return os.time() * 1e6 end
end

-- ---------------------------------------------------------------- main state
local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   threads[#threads + 1] = thread
end

-- ------------------------------------------------------------- thread states
local reqs = {}   -- pre-formatted HTTP requests for this thread
local count = 0
local idx = 0
local wrap = false
-- Read by done() through thread:get(); must be globals.
exhausted = 0
wrapped = 0
first_us = 0
exhausted_us = 0

function init(args)
   local file = args[1] or os.getenv("BENCH_REQUESTS")
   if not file or file == "" then
      error("wrk_signed.lua: no requests file (pass `-- FILE [THREADS]` or set BENCH_REQUESTS)")
   end
   local nthreads = tonumber(args[2] or os.getenv("BENCH_THREADS") or "1")
   if not nthreads or nthreads < 1 then
      error("wrk_signed.lua: bad thread count")
   end
   if tid >= nthreads then
      error(string.format(
         "wrk_signed.lua: thread %d but only %d declared: pass the -t value as 2nd arg or BENCH_THREADS",
         tid, nthreads))
   end
   wrap = os.getenv("BENCH_WRAP") == "1"
   path = os.getenv("BENCH_PATH") or "/webhooks/bench"
   format_each = os.getenv("BENCH_FORMAT_EACH") == "1"

   local f, err = io.open(file, "rb")
   if not f then error("wrk_signed.lua: " .. tostring(err)) end
   local headers = {}
   local n = 0
   for line in f:lines() do
      if n % nthreads == tid and line ~= "" then
         local tab = line:find("\t", 1, true)
         if not tab then
            error(string.format("wrk_signed.lua: line %d has no tab", n + 1))
         end
         headers["Host"] = nil
         headers["Content-Length"] = nil
         headers["Content-Type"] = "application/json"
         headers["X-Switchboard-Signature"] = line:sub(1, tab - 1)
         count = count + 1
         if format_each then
            sigs[count] = line:sub(1, tab - 1)
            reqs[count] = line:sub(tab + 1)
         else
            reqs[count] = wrk.format("POST", path, headers, line:sub(tab + 1))
         end
      end
      n = n + 1
   end
   f:close()
   if count == 0 then
      error(string.format("wrk_signed.lua: thread %d got no requests from %s (%d lines)", tid, file, n))
   end
   collectgarbage()
   io.stderr:write(string.format("wrk_signed.lua: thread %d loaded %d of %d requests from %s%s\n",
      tid, count, n, file, wrap and " (wrap)" or ""))
end

sigs = {}

function request()
   if first_us == 0 then first_us = now_us() end
   if idx >= count then
      if wrap then
         idx = 0
         wrapped = wrapped + 1
      else
         if exhausted == 0 then
            exhausted = 1
            exhausted_us = now_us()
            wrk.thread:stop()
         end
         -- An empty request writes nothing; wrk stops this thread's loop
         -- after the current iteration.
         return ""
      end
   end
   idx = idx + 1
   if format_each then
      -- The reference methodology: wrk formats every request as it sends it.
      return wrk.format("POST", path,
         { ["Content-Type"] = "application/json", ["X-Switchboard-Signature"] = sigs[idx] },
         reqs[idx])
   end
   return reqs[idx]
end

-- ---------------------------------------------------------------- main state
function done(summary, latency, requests)
   -- wrk starts each thread right after its own init() but its clock only
   -- after the last init(): with several threads and a big file, thread 0
   -- sends for a while before wrk's clock starts. Time the run ourselves, from
   -- the first request of any thread to the end of the run (or, if every
   -- thread ran out of lines, to the moment the last one did).
   local finish_us = now_us()
   local n_exhausted, n_wrapped, first, last_exhaust = 0, 0, nil, 0
   for _, t in ipairs(threads) do
      n_exhausted = n_exhausted + (t:get("exhausted") or 0)
      n_wrapped = n_wrapped + (t:get("wrapped") or 0)
      local f = t:get("first_us") or 0
      if f > 0 and (first == nil or f < first) then first = f end
      local e = t:get("exhausted_us") or 0
      if e > last_exhaust then last_exhaust = e end
   end
   local wall_s = summary.duration / 1e6
   local dur_s = wall_s
   if ffi_ok and first then
      local stop_us = finish_us
      if n_exhausted == #threads and last_exhaust > 0 then stop_us = last_exhaust end
      if stop_us > first then dur_s = (stop_us - first) / 1e6 end
   end
   local e = summary.errors
   local sock_errors = e.connect + e.read + e.write + e.timeout
   io.write(string.format(
      "RESULT requests=%d duration_s=%.2f rps=%.0f rps_wall=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d sock_errors=%d exhausted=%d wrapped=%d\n",
      summary.requests, dur_s, summary.requests / dur_s, summary.requests / wall_s,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      e.status, sock_errors, n_exhausted, n_wrapped))
   if n_exhausted > 0 then
      io.write(string.format(
         "WARNING: %d of %d wrk threads ran out of requests before the end; generate more lines\n",
         n_exhausted, #threads))
   end
end
