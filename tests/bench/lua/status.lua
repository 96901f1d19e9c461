-- The URL's own GET, repeated (wrk's static request): the floor, FastAPI and /healthz.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
