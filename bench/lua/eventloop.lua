-- Lua's event-loop benchmark (issue 15), run by bench/eventloop.py:
--
--   lua5.4 bench/lua/eventloop.lua --server PATH --sizes 1048576,67108864,268435456 --rounds N
--
-- Routes under a cqueues controller, with a 1 ms heartbeat coroutine in the
-- same controller: cqueues' own socket:read(n), and fastsock's calls, which
-- yield to the controller there (recvall into a new string, recvall_into a
-- reused fastsock.buffer, sendall, sendfile); the same fastsock calls outside
-- any scheduler (loop "none": stall_ms 0); and 64 coroutines receiving
-- 16 MiB each at once against one coroutine's 16 MiB, into strings and into
-- buffers. fastsock's routes use
-- LuaSocket connections. Sends go to the loopback server's sink, whose
-- answer (got=N match=M) verifies them; receives are checked for length and
-- against the stream at the start, the middle and the end.
--
-- One JSON object per measurement on stdout; diagnostics on stderr.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/../../tests/lua/common.lua")
local socket = require "socket"
local cqueues = require "cqueues"
local csocket = require "cqueues.socket"
local fastsock = require "fastsock"

local MIB = 1 << 20
local SEED = 7
local CONCURRENT = 64
local CONCURRENT_SIZE = 16 * MIB

local opts = common.parse_args(arg)
assert(opts.server, "usage: eventloop.lua --server PATH [--sizes N,...] [--rounds N]")
local sizes = {}
for s in (opts.sizes or "1048576,67108864,268435456"):gmatch("%d+") do
  sizes[#sizes + 1] = math.tointeger(tonumber(s))
end
local rounds = math.tointeger(tonumber(opts.rounds or "3"))

local status_mb, reset_peak = common.status_mb, common.reset_peak

local server = common.start_server(opts.server)
local MAX = math.max(table.unpack(sizes))
local SEND_DATA = common.stream(SEED, 0, MAX)
local SEND_PATH = os.tmpname()
do
  local f = assert(io.open(SEND_PATH, "wb"))
  f:write(SEND_DATA)
  f:close()
end
local SEND_FILE = assert(io.open(SEND_PATH, "rb"))
os.remove(SEND_PATH)
-- A reused target, touched once here, as a program that keeps one would.
local REUSED = fastsock.buffer(math.max(MAX, CONCURRENT_SIZE)):fill(0)

-- Length, and 4 KiB of the stream at the start, the middle and the end.
local function verify(route, get, len, n)
  if len ~= n then error(route .. ": got " .. tostring(len) .. " bytes of " .. n, 0) end
  for _, off in ipairs { 0, n // 2, math.max(n - 4096, 0) } do
    local k = math.min(4096, n - off)
    if k > 0 and get(off + 1, off + k) ~= common.stream(SEED, off, k) then
      error(route .. ": bytes at " .. off .. " differ from the stream", 0)
    end
  end
end

local function verify_string(route, s, n)
  if type(s) ~= "string" then error(route .. ": " .. tostring(s), 0) end
  verify(route, function(i, j) return s:sub(i, j) end, #s, n)
end

local function sink_done(route, c, n)
  local got, match = common.sink_answer(c)
  if got ~= n or match ~= n then
    error(string.format("%s: the sink got %s of %d bytes (%s matching)", route, got, n, match), 0)
  end
end

-- Each route: connect (the server's set-up is not the transfer's cost),
-- transfer (timed), check.
local RECV = {
  fastsock_recvall = function(c, n)
    local data, err = fastsock.recvall(c, n)
    return function() verify_string("fastsock_recvall", data or err, n) end
  end,
  fastsock_recvall_into = function(c, n)
    local got, err = fastsock.recvall_into(c, REUSED, n)
    return function()
      if got ~= n then error("fastsock_recvall_into: " .. tostring(err), 0) end
      verify("fastsock_recvall_into", function(i, j) return REUSED:tostring(i, j) end, got, n)
    end
  end,
}
local SEND = {
  fastsock_sendall = function(c, n)
    local last, err = fastsock.sendall(c, SEND_DATA, 1, n)
    return function()
      if last ~= n then error("fastsock_sendall: " .. tostring(err), 0) end
    end
  end,
  fastsock_sendfile = function(c, n)
    local sent, err = fastsock.sendfile(c, SEND_FILE, 0, n)
    return function()
      if sent ~= n then error("fastsock_sendfile: " .. tostring(err), 0) end
    end
  end,
}

local ROUTES = { { "cqueues", "cqueues_read" } }
for _, name in ipairs { "fastsock_recvall", "fastsock_recvall_into", "fastsock_sendall",
                        "fastsock_sendfile" } do
  ROUTES[#ROUTES + 1] = { "cqueues", name }
  ROUTES[#ROUTES + 1] = { "none", name }
end

local function emit(loop, route, size, round, dt, stall, rss)
  io.stdout:write(string.format(
    '{"lang":"lua","loop":"%s","route":"%s","size":%d,"round":%d,"mbps":%.1f,' ..
    '"stall_ms":%.2f,"rss_peak_mb":%.1f,"rss_base_mb":%.1f}\n', loop, route, size, round,
    size / dt / 1e6, stall, rss[1], rss[2]))
  io.stdout:flush()
end

-- Runs body(beat) in a coroutine of a new controller beside a 1 ms heartbeat
-- coroutine; beat.reset() starts a measurement, beat.worst() is the worst
-- lateness since, in ms. Returns what body returned.
local function with_heartbeat(body)
  local cq = cqueues.new()
  local worst, last, since, running = 0, cqueues.monotime(), 0, true
  -- The gap still open when the transfer ends counts too: a transfer that
  -- froze the controller to its end left the heartbeat no beat to tell.
  local beat = {
    reset = function() worst, since = 0, cqueues.monotime() end,
    worst = function()
      return math.max(worst, (cqueues.monotime() - math.max(last, since)) * 1000 - 1)
    end,
  }
  cq:wrap(function()
    last = cqueues.monotime()
    while running do
      cqueues.sleep(0.001)
      local t = cqueues.monotime()
      worst = math.max(worst, (t - math.max(last, since)) * 1000 - 1)
      last = t
    end
  end)
  local results
  cq:wrap(function()
    cqueues.sleep(0.005) -- the heartbeat is running
    results = table.pack(body(beat))
    running = false
  end)
  local ok, err = cq:loop()
  if not ok then error(err, 0) end
  return table.unpack(results, 1, results.n)
end

local function connect(n, sending)
  local c = common.request(server, sending and ("sink seed=" .. SEED .. " off=0")
                                            or ("gen len=" .. n .. " seed=" .. SEED))
  if not sending then socket.select({ c }, nil, 10) end
  return c
end

-- One transfer: seconds, { peak RSS, base RSS } in MB, stall in ms.
local function transfer(loop, route, n, beat)
  if route == "cqueues_read" then
    local c = csocket.connect("127.0.0.1", server.port)
    c:setmode("b", "b")
    assert(c:write("gen len=" .. n .. " seed=" .. SEED .. "\n"))
    assert(c:flush())
    cqueues.poll({ pollfd = function() return c:pollfd() end, events = function() return "r" end })
    collectgarbage()
    local base = reset_peak()
    beat.reset()
    local t0 = cqueues.monotime()
    local data = c:read(n)
    local dt = cqueues.monotime() - t0
    local stall, rss = beat.worst(), { status_mb("VmHWM:"), base }
    verify_string(route, data, n)
    c:close()
    return dt, rss, stall
  end
  local sending = SEND[route] ~= nil
  local c = connect(n, sending)
  collectgarbage()
  local base = reset_peak()
  if beat then beat.reset() end
  local t0 = socket.gettime()
  local check = (sending and SEND or RECV)[route](c, n)
  local dt = socket.gettime() - t0
  local stall, rss = beat and beat.worst() or 0, { status_mb("VmHWM:"), base }
  check()
  if sending then sink_done(route, c, n) end
  c:close()
  return dt, rss, stall
end

local function rotate(list, k)
  local out = {}
  for i = 1, #list do out[i] = list[(i - 1 + k) % #list + 1] end
  return out
end


-- One coroutine's 16 MiB, then 64 coroutines' at once, in the same
-- controller: into new strings (recvall) and into their own buffers
-- (recvall_into).
local function concurrent(round)
  -- Each coroutine's own buffer for recvall_into, touched once, made here
  -- and closed after, so that the other routes' peak RSS does not hold them.
  local bufs = {}
  for k = 1, CONCURRENT do bufs[k] = fastsock.buffer(CONCURRENT_SIZE):fill(0) end
  for _, into in ipairs { false, true } do
    local name = into and "fastsock_recvall_into" or "fastsock_recvall"
    local dt1, rss1, stall1 = with_heartbeat(function(beat)
      return transfer("cqueues", name, CONCURRENT_SIZE, beat)
    end)
    emit("cqueues", name .. "_1coroutine", CONCURRENT_SIZE, round, dt1, stall1, rss1)
    local dt, rss, stall = with_heartbeat(function(beat)
      local conns = {}
      for k = 1, CONCURRENT do conns[k] = connect(CONCURRENT_SIZE, false) end
      collectgarbage()
      local base = reset_peak()
      beat.reset()
      local results, left = {}, CONCURRENT
      local t0 = socket.gettime()
      local cq = cqueues.running()
      for k = 1, CONCURRENT do
        cq:wrap(function()
          if into then
            results[k] = fastsock.recvall_into(conns[k], bufs[k], CONCURRENT_SIZE)
          else
            results[k] = fastsock.recvall(conns[k], CONCURRENT_SIZE)
          end
          left = left - 1
        end)
      end
      while left > 0 do cqueues.sleep(0.001) end
      local dt = socket.gettime() - t0
      local stall, rss = beat.worst(), { status_mb("VmHWM:"), base }
      for k = 1, CONCURRENT do
        local route = name .. "_" .. CONCURRENT .. "coroutines"
        if into then
          local b = bufs[k]
          if results[k] ~= CONCURRENT_SIZE then error(route .. ": " .. tostring(results[k]), 0) end
          verify(route, function(i, j) return b:tostring(i, j) end, results[k], CONCURRENT_SIZE)
        else
          verify_string(route, results[k], CONCURRENT_SIZE)
        end
        conns[k]:close()
      end
      return dt, rss, stall
    end)
    emit("cqueues", name .. "_" .. CONCURRENT .. "coroutines", CONCURRENT * CONCURRENT_SIZE,
         round, dt, stall, rss)
  end
  for k = 1, CONCURRENT do bufs[k]:close() end
end

print("PORT " .. server.port)
io.stdout:flush()
local ok, err = pcall(function()
  for round = 0, rounds - 1 do
    for _, size in ipairs(sizes) do
      for _, r in ipairs(rotate(ROUTES, round)) do
        local loop, route = r[1], r[2]
        local dt, rss, stall
        if loop == "none" then
          dt, rss, stall = transfer(loop, route, size, nil)
        else
          dt, rss, stall = with_heartbeat(function(beat) return transfer(loop, route, size, beat) end)
        end
        emit(loop, route, size, round, dt, stall, rss)
      end
    end
    concurrent(round)
  end
end)
SEND_FILE:close()
common.stop_server(server)
if not ok then
  io.stderr:write("eventloop.lua: ", tostring(err), "\n")
  os.exit(1)
end
