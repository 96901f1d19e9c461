-- GET /v1/trips/{id} over many trips, each from one of many X-Forwarded-For clients
-- (the servers trust 127.0.0.1 as their proxy), so per-client limiter keys spread.
-- args: <file of paths, one a line> <number of clients>
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
   local paths = read_lines(args[1])
   local clients = tonumber(args[2] or "1000")
   math.randomseed(7919 * thread_index)
   for i = 1, 4096 do
      local client = math.random(clients)
      local address = string.format(
         "10.%d.%d.%d", math.floor(client / 65536) % 256, math.floor(client / 256) % 256,
         client % 256
      )
      prepared[i] = wrk.format("GET", paths[math.random(#paths)], {["X-Forwarded-For"] = address})
   end
end

function request()
   return next_prepared()
end
