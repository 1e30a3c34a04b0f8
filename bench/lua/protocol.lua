-- Lua's protocol benchmark (issue 17), run by bench/protocol.py:
--
--   lua5.4 bench/lua/protocol.lua --server PATH --rounds N [--quick]
--
-- fastsock's protocol calls against what a Lua program does without them:
--   sendallv_3       64 B + 16 MiB + 2 B to the sink: sendallv, one sendall
--                    of the bytes joined beforehand, table.concat + sendall
--   sendallv_100x64  100 pieces of 64 B, again and again on one sink
--                    connection: sendallv, a sendall per piece (ops/s, an op
--                    being the 100 pieces)
--   recvfile_shm     a 256 MiB stream (--quick: 64 MiB) into a new file in
--   recvfile_disk    /dev/shm, or /var/tmp (no fsync): recvfile, LuaSocket's
--                    receive of 1 MiB chunks + file:write
--   resp_1k          RESP GETs of 1 KiB, ping-pong: fastsock.reader
--                    (readuntil the header, recvall the body), LuaSocket's
--                    receive("*l") + receive(n + 2) (ops/s)
--   resp_1m          RESP GETs of 1 MiB: the reader, and fastsock's bare
--                    recvall of the 10-byte header, then of the body (ops/s)
--   split_4k         64 MiB (--quick: 16 MiB) of 4096-byte records (4095
--   split_70         filler bytes and "\n"), or of 70-byte ones: buffer:split
--                    (positions, no string per record), and a string.find
--                    loop with string.sub per record (MB/s, peak RSS)
-- Requests go out with LuaSocket's send on both sides of the RESP benches,
-- so that they compare the reading. Every bench verifies what moved: the
-- sink's answer, the stream's bytes at the start, middle and end of a file,
-- each reply's first and last bytes (all of every 64th), the records' count
-- and bytes. Routes rotate per round. One JSON object per measurement on
-- stdout, diagnostics on stderr.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/../../tests/lua/common.lua")
local socket = require "socket"
local fastsock = require "fastsock"

local MIB = 1 << 20
local SEED = 17

local opts = common.parse_args(arg, { quick = true })
assert(opts.server or opts.split, "usage: protocol.lua --server PATH --rounds N [--quick]")
local rounds = math.tointeger(tonumber(opts.rounds or "3"))
local quick = opts.quick

local RECVFILE_SIZE = (quick and 64 or 256) * MIB
local SPLIT_SIZE = (quick and 16 or 64) * MIB
local RESP_1K_OPS = quick and 2000 or 20000
local RESP_1M_OPS = quick and 50 or 300
local SMALL_OPS = quick and 500 or 2000

local status_mb = common.status_mb

-- After a full collection: the run before's garbage goes now, not in the
-- middle of the measured one.
local function reset_peak()
  collectgarbage()
  collectgarbage()
  return common.reset_peak()
end

local function emit(bench, route, size, round, rate, unit, rss)
  local extra = ""
  if rss then extra = string.format(',"rss_peak_mb":%.1f,"rss_base_mb":%.1f', rss[1], rss[2]) end
  io.stdout:write(string.format(
    '{"lang":"lua","bench":"%s","route":"%s","size":%d,"round":%d,"rate":%.1f,"unit":"%s"%s}\n',
    bench, route, size, round, rate, unit, extra))
  io.stdout:flush()
end

local now = socket.gettime

local function check_sink(route, conn, n)
  local got, match = common.sink_answer(conn)
  conn:close()
  if got ~= n or match ~= n then
    error(string.format("%s: the sink got %s of %d bytes (%s matching)", route, got, n, match), 0)
  end
end

-- ---- split -------------------------------------------------------------------------

local splitter = {
  fastsock_split = function(buf)
    local t0 = now()
    local t = buf:split("\n")
    local dt = now() - t0
    return dt, #t // 2 - 1, function(k) return buf:tostring(t[2 * k - 1], t[2 * k]) end
  end,
  stdlib_split = function(_, data)
    local t0 = now()
    local out, pos, find, sub = {}, 1, string.find, string.sub
    while true do
      local e = find(data, "\n", pos, true)
      if not e then break end
      out[#out + 1] = sub(data, pos, e - 1)
      pos = e + 1
    end
    local dt = now() - t0
    return dt, #out, function(k) return out[k] end
  end,
}

-- One route of a split bench, in a process of its own (--split
-- BENCH:ROUTE:ROUND): in a process that ran the other benches, the heap
-- keeps their freed memory resident, and a route's strings would fill it
-- without raising the peak.
local function bench_split_route(bench, route, round)
  local reclen = bench == "split_4k" and 4096 or 70
  local records = SPLIT_SIZE // reclen
  local size = records * reclen
  local filler = string.rep("x", reclen - 1)
  local data = string.rep(filler .. "\n", records)
  local buf = fastsock.buffer(data)
  local base = reset_peak()
  local dt, count, field = splitter[route](buf, data)
  local peak = status_mb("VmHWM:")
  if count ~= records or field(1) ~= filler or field(records) ~= filler
      or field(records // 2) ~= filler then
    error(string.format("%s: %d records of %d, or a record's bytes differ", route, count, records), 0)
  end
  emit(bench, route, size, round, size / dt / 1e6, "MB/s", { peak, base })
  buf:close()
end

if opts.split then
  local bench, route, round = opts.split:match("^([%w_]+):([%w_]+):(%d+)$")
  bench_split_route(bench, route, math.tointeger(tonumber(round)))
  os.exit(0)
end

local server = common.start_server(opts.server)

-- ---- sendallv_3 --------------------------------------------------------------------

local HEAD = common.stream(SEED, 0, 64)
local BODY = common.stream(SEED, 64, 16 * MIB)
local TAIL = common.stream(SEED, 64 + 16 * MIB, 2)
local V3_SIZE = 64 + 16 * MIB + 2

local v3 = {
  sendallv = function(conn)
    local t0 = now()
    assert(fastsock.sendallv(conn, { HEAD, BODY, TAIL }))
    return now() - t0
  end,
  sendall_prejoined = function(conn, joined)
    local t0 = now()
    assert(fastsock.sendall(conn, joined))
    return now() - t0
  end,
  join_then_sendall = function(conn)
    local t0 = now()
    assert(fastsock.sendall(conn, table.concat { HEAD, BODY, TAIL }))
    return now() - t0
  end,
}

-- Each send takes ~10 ms here: REPEAT of them per route and round, the
-- routes taking turns, make one measurement (a sink connection each, its
-- set-up and answer untimed).
local V3_REPEAT = 5

local function bench_sendallv_3(round, order)
  local joined = table.concat { HEAD, BODY, TAIL }
  local total = {}
  for _ = 1, V3_REPEAT do
    for _, route in ipairs(order) do
      collectgarbage()
      local conn = common.request(server, "sink seed=" .. SEED)
      total[route] = (total[route] or 0) + v3[route](conn, joined)
      check_sink(route, conn, V3_SIZE)
    end
  end
  for _, route in ipairs(order) do
    emit("sendallv_3", route, V3_SIZE, round, V3_REPEAT * V3_SIZE / total[route] / 1e6, "MB/s")
  end
end

-- ---- sendallv_100x64 ---------------------------------------------------------------

-- Each op sends the next 6400 bytes of the stream, so that the sink can
-- check every byte.
local SMALL = {}
do
  local all = common.stream(SEED, 0, SMALL_OPS * 6400)
  for op = 1, SMALL_OPS do
    local pieces = {}
    for k = 1, 100 do
      local at = (op - 1) * 6400 + (k - 1) * 64
      pieces[k] = all:sub(at + 1, at + 64)
    end
    SMALL[op] = pieces
  end
end

local small = {
  sendallv = function(conn)
    local sendallv = fastsock.sendallv
    local t0 = now()
    for op = 1, SMALL_OPS do
      assert(sendallv(conn, SMALL[op]))
    end
    return now() - t0
  end,
  sendall_per_piece = function(conn)
    local sendall = fastsock.sendall
    local t0 = now()
    for op = 1, SMALL_OPS do
      local pieces = SMALL[op]
      for k = 1, 100 do assert(sendall(conn, pieces[k])) end
    end
    return now() - t0
  end,
}

local function bench_sendallv_small(round, order)
  for _, route in ipairs(order) do
    local conn = common.request(server, "sink seed=" .. SEED)
    local dt = small[route](conn)
    check_sink(route, conn, SMALL_OPS * 6400)
    emit("sendallv_100x64", route, 6400, round, SMALL_OPS / dt, "ops/s")
  end
end

-- ---- recvfile ----------------------------------------------------------------------

local function verify_file(route, path, n)
  local f = assert(io.open(path, "rb"))
  local size = f:seek("end")
  if size ~= n then error(string.format("%s: the file holds %d of %d bytes", route, size, n), 0) end
  for _, off in ipairs { 0, n // 2, n - 4096 } do
    f:seek("set", off)
    if f:read(4096) ~= common.stream(SEED, off, 4096) then
      error(route .. ": the file's bytes at " .. off .. " differ from the stream", 0)
    end
  end
  f:close()
end

local recv_to_file = {
  recvfile = function(conn, f, n)
    local t0 = now()
    assert(fastsock.recvfile(conn, f, n))
    return now() - t0
  end,
  stdlib = function(conn, f, n)
    local t0 = now()
    local left = n
    while left > 0 do
      local chunk = assert(conn:receive(math.min(MIB, left)))
      assert(f:write(chunk))
      left = left - #chunk
    end
    f:flush()
    return now() - t0
  end,
}

local function bench_recvfile(round, order, bench, dir)
  local n = RECVFILE_SIZE
  for _, route in ipairs(order) do
    local path = string.format("%s/fastsock-protocol-lua-%d-%s", dir, round, route)
    local f = assert(io.open(path, "wb"))
    local conn = common.request(server, string.format("gen len=%d seed=%d", n, SEED))
    local base = reset_peak()
    local ok, dt = pcall(recv_to_file[route], conn, f, n)
    local peak = status_mb("VmHWM:")
    f:close()
    conn:close()
    local verified, why = ok, nil
    if ok then verified, why = pcall(verify_file, route, path, n) end
    os.remove(path)
    if not ok then error(dt, 0) end
    if not verified then error(why, 0) end
    emit(bench, route, n, round, n / dt / 1e6, "MB/s", { peak, base })
  end
end

-- ---- RESP GET ----------------------------------------------------------------------

local function resp_body(len)
  return common.stream(SEED, 0, len) .. "\r\n"
end

local function check_reply(route, body, want, k)
  if #body ~= #want or body:byte(1) ~= want:byte(1) or body:byte(-3) ~= want:byte(-3)
      or body:sub(-2) ~= "\r\n" or (k % 64 == 0 and body ~= want) then
    error(string.format("%s: reply %d differs from the stream", route, k), 0)
  end
end

local resp = {
  reader = function(conn, ops, want)
    local r = fastsock.reader(conn)
    local t0 = now()
    for k = 1, ops do
      assert(conn:send("GET k\r\n"))
      local line = assert(r:readuntil("\r\n"))
      local n = math.tointeger(tonumber(line:sub(2, -3)))
      local body = assert(r:recvall(n + 2))
      check_reply("reader", body, want, k)
    end
    local dt = now() - t0
    r:close()
    return dt
  end,
  stdlib = function(conn, ops, want)
    local t0 = now()
    for k = 1, ops do
      assert(conn:send("GET k\r\n"))
      local line = assert(conn:receive("*l"))
      local n = math.tointeger(tonumber(line:sub(2)))
      local body = assert(conn:receive(n + 2))
      check_reply("stdlib", body, want, k)
    end
    return now() - t0
  end,
  bare_recvall = function(conn, ops, want)
    local recvall = fastsock.recvall
    local n = #want - 2
    local t0 = now()
    for k = 1, ops do
      assert(conn:send("GET k\r\n"))
      local head = assert(recvall(conn, 10)) -- "$1048576\r\n"
      if head ~= "$" .. n .. "\r\n" then error("bare_recvall: header " .. head, 0) end
      local body = assert(recvall(conn, n + 2))
      check_reply("bare_recvall", body, want, k)
    end
    return now() - t0
  end,
}

local function bench_resp(round, order, bench, len, ops)
  local want = resp_body(len)
  for _, route in ipairs(order) do
    local conn = common.request(server, string.format("resp len=%d seed=%d", len, SEED))
    -- A tenth as many first, unmeasured: the first route after the recvfile
    -- benches ran at a twentieth of its speed now and then (the machine
    -- still busy with their files).
    resp[route](conn, ops // 10, want)
    local dt = resp[route](conn, ops, want)
    conn:close()
    emit(bench, route, len, round, ops / dt, "ops/s")
  end
end

local function bench_split(round, order, bench)
  local lua = arg[-1]
  for k = -2, -10, -1 do
    if arg[k] == nil then break end
    lua = arg[k] -- the interpreter, before any of its options
  end
  for _, route in ipairs(order) do
    local h = assert(io.popen(string.format("'%s' '%s' --split %s:%s:%d%s", lua, arg[0], bench, route,
                                            round, quick and " --quick" or "")))
    local out = h:read("a")
    local ok = h:close()
    if not ok or not out:match("^{") then error(bench .. " " .. route .. ": the child failed", 0) end
    io.stdout:write(out)
    io.stdout:flush()
  end
end

-- ---- rounds ------------------------------------------------------------------------

local function rotated(routes, round)
  local out = {}
  for k = 1, #routes do out[k] = routes[(k + round - 1) % #routes + 1] end
  return out
end

local ok, err = pcall(function()
  for round = 0, rounds - 1 do
    bench_sendallv_3(round, rotated({ "sendallv", "sendall_prejoined", "join_then_sendall" }, round))
    bench_sendallv_small(round, rotated({ "sendallv", "sendall_per_piece" }, round))
    bench_recvfile(round, rotated({ "recvfile", "stdlib" }, round), "recvfile_shm", "/dev/shm")
    bench_recvfile(round, rotated({ "recvfile", "stdlib" }, round), "recvfile_disk", "/var/tmp")
    bench_resp(round, rotated({ "reader", "stdlib" }, round), "resp_1k", 1024, RESP_1K_OPS)
    bench_resp(round, rotated({ "reader", "bare_recvall" }, round), "resp_1m", MIB, RESP_1M_OPS)
    bench_split(round, rotated({ "fastsock_split", "stdlib_split" }, round), "split_4k")
    bench_split(round, rotated({ "fastsock_split", "stdlib_split" }, round), "split_70")
    io.stderr:write("protocol.lua: round ", round, " done\n")
  end
end)
common.stop_server(server)
if not ok then
  io.stderr:write("protocol.lua: ", tostring(err), "\n")
  os.exit(1)
end
