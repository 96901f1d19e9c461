-- POST /v1/reservations: two seats for two passengers, by a random user on a random
-- departure of the list (one id: the hot departure; a thousand: the spread).
-- args: <file of bearer tokens> <file of departure ids>
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local BODY = '{"departure_id":%s,"seats":2,'
   .. '"passengers":[{"full_name":"Ada Lovelace"},{"full_name":"Alan Turing"}]}'

function init(args)
   local tokens = read_lines(args[1])
   local departures = read_lines(args[2])
   math.randomseed(104729 * thread_index)
   for i = 1, 8192 do
      local headers = {
         ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
         ["Content-Type"] = "application/json",
      }
      local body = string.format(BODY, departures[math.random(#departures)])
      prepared[i] = wrk.format("POST", "/v1/reservations", headers, body)
   end
end

function request()
   return next_prepared()
end
