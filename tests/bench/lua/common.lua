-- Shared by the bench's wrk scripts: status counts per thread and one JSON summary line.
-- Each script loads it with dofile(), in wrk's main Lua state and in every thread's.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_index", #threads)
end

statuses = {}
refused = 0

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   -- Only a sold-out hold is "refused"; any other 409 stays an error.
   if status == 409 and body ~= nil and string.find(body, "SEATS_UNAVAILABLE", 1, true) then
      refused = refused + 1
   end
end

function read_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if line ~= "" then
         table.insert(lines, line)
      end
   end
   assert(#lines > 0, path .. " is empty")
   return lines
end

-- Requests are built once per thread, then replayed in turn: no Lua work per request.
prepared = {}
local position = 0

function next_prepared()
   position = position % #prepared + 1
   return prepared[position]
end

function done(summary, latency, requests)
   local counts = {}
   local refused_total = 0
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
      refused_total = refused_total + thread:get("refused")
   end
   local parts = {}
   for status, count in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', status, count))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},'
         .. '"statuses":{%s},"refused":%d}\n',
      summary.duration, summary.requests, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9),
      table.concat(parts, ","), refused_total
   ))
end
