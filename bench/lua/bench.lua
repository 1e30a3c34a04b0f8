-- fastsock against LuaSocket over loopback, through the loopback server.
--
--   LUA_CPATH='<dir with fastsock.so>/?.so;;' lua5.4 bench/lua/bench.lua \
--       --server <build>/tests/fastsock-loopback-server [--runs 5]
--
-- Times the call itself (wall clock, socket.gettime), median of --runs, for
-- 1, 16 and 256 MiB: fastsock.recvall, fastsock.recvall_into (one buffer,
-- reused), LuaSocket receive(n); fastsock.sendall, LuaSocket send(data).
-- Then the peak RSS (VmHWM) of a fresh process that receives 256 MiB once,
-- by each route.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/../../tests/lua/common.lua")
local socket = require "socket"
local fastsock = require "fastsock"

local opts = common.parse_args(arg)
local MiB = 1024 * 1024

local function vm_hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) * 1024 end
  end
end

-- Child mode: one 256 MiB receive by one route, then report the peak RSS.
if opts.rss then
  local server = common.start_server(opts.server)
  local n = 256 * MiB
  local c = common.request(server, "gen,len=" .. n .. ",seed=1")
  local data
  if opts.rss == "fastsock" then
    data = fastsock.recvall(c, n)
  else
    data = c:receive(n)
  end
  assert(#data == n)
  c:close()
  common.stop_server(server)
  print(vm_hwm())
  os.exit(0)
end

local runs = math.tointeger(tonumber(opts.runs or "5"))

local function median(t)
  table.sort(t)
  local k = #t
  return k % 2 == 1 and t[(k + 1) // 2] or (t[k // 2] + t[k // 2 + 1]) / 2
end

common.main(opts.server, function(server)
  local rows = {}
  for _, size in ipairs { 1 * MiB, 16 * MiB, 256 * MiB } do
    local data = common.stream(2, 0, size)
    local buf = fastsock.buffer(size)
    local routes = {
      { "fastsock.recvall", "gen", function(c) assert(#fastsock.recvall(c, size) == size) end },
      { "fastsock.recvall_into", "gen", function(c) assert(fastsock.recvall_into(c, buf, size) == size) end },
      { "LuaSocket receive(n)", "gen", function(c) assert(#c:receive(size) == size) end },
      { "fastsock.sendall", "sink", function(c) assert(fastsock.sendall(c, data) == size) end },
      { "LuaSocket send(data)", "sink", function(c) assert(c:send(data) == size) end },
    }
    for _, r in ipairs(routes) do
      local name, mode, f = r[1], r[2], r[3]
      local times = {}
      for _ = 1, runs do
        collectgarbage()
        local req = mode == "gen" and ("gen,len=" .. size .. ",seed=1") or "sink,seed=2"
        local c = common.request(server, req)
        if mode == "gen" then socket.sleep(0.01) end -- let the server start sending
        local t0 = socket.gettime()
        f(c)
        times[#times + 1] = socket.gettime() - t0
        if mode == "sink" then
          local got, match = common.sink_answer(c)
          assert(got == size and match == size, "the sink disagrees")
        end
        c:close()
      end
      local t = median(times)
      rows[#rows + 1] = string.format("| %d MiB | %-22s | %9.2f ms | %8.0f MiB/s |",
                                      size // MiB, name, t * 1000, size / MiB / t)
    end
  end
  print(string.format("median of %d runs, one process, loopback", runs))
  print("| size | route | time | throughput |")
  print("|---|---|---|---|")
  for _, row in ipairs(rows) do print(row) end

  print("\npeak RSS (VmHWM) of a fresh process receiving 256 MiB once:")
  for _, route in ipairs { "fastsock", "luasocket" } do
    local cmd = string.format("%q %q --server %q --rss %s", arg[-1], arg[0], opts.server, route)
    local p = assert(io.popen(cmd))
    local hwm = tonumber(p:read("l"))
    p:close()
    print(string.format("| %s | %d MiB |", route == "fastsock" and "fastsock.recvall" or
                        "LuaSocket receive(n)", hwm // MiB))
  end
end)
