-- Lua side of the benchmark: one variant per request, driven by bench/run.py.
--
--   lua5.4 bench/lua/worker.lua --port PORT --file DATAFILE --max BYTES
--
-- Speaks the driver's line protocol on stdin/stdout (see bench/README.md).
local socket = require "socket"
local fastsock = require "fastsock"
-- recv/send, one system call each: the native route (bench/lua/rawsock.c)
local raw = require "fastsock_bench.rawsock"

local CHUNK = 64 * 1024

local opts = {}
for i = 1, #arg, 2 do opts[arg[i]:gsub("^%-%-", "")] = arg[i + 1] end
local PORT = math.tointeger(tonumber(opts.port))
local MAX = math.tointeger(tonumber(opts.max))
local f = assert(io.open(opts.file, "rb"))
local DATA = f:read(MAX)
f:close()
local FILE = assert(io.open(opts.file, "rb"))
-- Reused buffers, touched once here, as a program that keeps one would.
local REUSED = fastsock.buffer(math.max(MAX, 1))
local SMALL = fastsock.buffer(64)

local function status_kib(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. "%s+(%d+)")
    if kb then return tonumber(kb) end
  end
  return 0
end

local function reset_peak()
  local c = assert(io.open("/proc/self/clear_refs", "w"))
  c:write("5") -- resets VmHWM to the current RSS
  c:close()
end

local function connect(request)
  local s = assert(socket.tcp())
  assert(s:connect("127.0.0.1", PORT))
  assert(s:send(request))
  return s
end

local function finish_send(s, n)
  s:shutdown("send")
  local answer = assert(s:receive("*a"))
  local got = tonumber(answer:match("got=(%d+)"))
  assert(got == n, "sink got " .. tostring(got) .. " of " .. n)
end

local function check(ok, err, partial)
  if not ok then error(tostring(err) .. " after " .. tostring(partial)) end
  return ok
end

-- Requests per request/response measurement (bench/run.py's RPC_REQUESTS).
local function rpc_requests(n)
  return n <= 64 * 1024 and 10000 or math.max(16, (256 << 20) // n)
end

-- Request/response: "GET\n", then an 8-byte big-endian length and the body,
-- with recv(s, k) reading exactly k bytes. Returns the first and the last
-- body: equal, checked after the clock.
local function rpc(s, n, recv)
  local first, last
  for _ = 1, rpc_requests(n) do
    check(s:send("GET\n"))
    last = recv(s, (string.unpack(">I8", recv(s, 8))))
    first = first or last
  end
  return { first, last }
end

local VARIANTS = {
  { "receive", "recv", function(s, n) return check(s:receive(n)) end },
  { "receive_64k_concat", "recv", function(s, n)
      local parts, got = {}, 0
      while got < n do
        local c, err, partial = s:receive(math.min(CHUNK, n - got))
        c = c or partial
        if err and #c == 0 then error(err) end
        parts[#parts + 1] = c
        got = got + #c
      end
      return table.concat(parts)
    end },
  { "fastsock_recvall", "recv", function(s, n) return check(fastsock.recvall(s, n)) end },
  { "fastsock_recvall_into", "recv", function(s, n)
      check(fastsock.recvall_into(s, REUSED, n))
      return REUSED
    end },
  { "send", "send", function(s, n) check(s:send(DATA, 1, n)) end },
  { "fastsock_sendall", "send", function(s, n) check(fastsock.sendall(s, DATA, 1, n)) end },
  { "fastsock_sendfile", "send", function(s, n) check(fastsock.sendfile(s, FILE, 0, n)) end },
  { "receive_64", "msg", function(s, n)
      local got = 0
      while got < n do got = got + #check(s:receive(64)) end
    end },
  { "raw_recv_64", "msg", function(s, n)
      local got, recv, fd = 0, raw.recv, s:getfd()
      while got < n do got = got + #check(recv(fd, 64)) end
    end },
  { "fastsock_recvall_64", "msg", function(s, n)
      local got, recvall = 0, fastsock.recvall
      while got < n do got = got + #check(recvall(s, 64)) end
    end },
  { "fastsock_recv_into_64", "msg", function(s, n)
      local got, recv_into = 0, fastsock.recv_into
      while got < n do got = got + check(recv_into(s, SMALL, 64)) end
    end },
  -- The same calls given sock:getfd(): without LuaSocket's getfd() and
  -- dirty() method calls per message (docs/lua.md).
  { "fastsock_recv_into_64_fd", "msg", function(s, n)
      local got, recv_into, fd = 0, fastsock.recv_into, s:getfd()
      while got < n do got = got + check(recv_into(fd, SMALL, 64)) end
    end },
  { "fastsock_recvall_64_fd", "msg", function(s, n)
      local got, recvall, fd = 0, fastsock.recvall, s:getfd()
      while got < n do got = got + #check(recvall(fd, 64)) end
    end },
  { "send_64", "smallsend", function(s, n)
      local chunk = DATA:sub(1, 64)
      for _ = 1, n // 64 do check(s:send(chunk)) end
    end },
  { "raw_send_64", "smallsend", function(s, n)
      local chunk, send, fd = DATA:sub(1, 64), raw.send, s:getfd()
      for _ = 1, n // 64 do check(send(fd, chunk)) end
    end },
  { "fastsock_sendall_64", "smallsend", function(s, n)
      local chunk, sendall = DATA:sub(1, 64), fastsock.sendall
      for _ = 1, n // 64 do check(sendall(s, chunk)) end
    end },
  { "fastsock_sendall_64_fd", "smallsend", function(s, n)
      local chunk, sendall, fd = DATA:sub(1, 64), fastsock.sendall, s:getfd()
      for _ = 1, n // 64 do check(sendall(fd, chunk)) end
    end },
  { "rpc_receive", "rpc", function(s, n)
      return rpc(s, n, function(c, k) return check(c:receive(k)) end)
    end },
  { "rpc_fastsock", "rpc", function(s, n)
      local recvall = fastsock.recvall
      return rpc(s, n, function(c, k) return check(recvall(c, k)) end)
    end },
}
local by_name = {}
for _, v in ipairs(VARIANTS) do by_name[v[1]] = v end

-- More of the sink's request, set by the driver's "sink OPTIONS"
-- (step=16384: a reader that takes 16 KiB a call).
local sink_extra = ""

local function run(name, n)
  local v = assert(by_name[name], "no variant " .. name)
  local side, fn = v[2], v[3]
  local sending = side == "send" or side == "smallsend"
  local s = connect(sending and ("sink seed=1 off=0 " .. sink_extra .. "\n") or
                    side == "rpc" and ("lenprefix len=" .. n .. " seed=1\n") or ("gen len=" .. n .. " seed=1\n"))
  -- The clock starts once data is there: the server's own set-up for a
  -- request is not the receiving side's cost.
  if not sending and side ~= "rpc" then socket.select({ s }, nil) end
  reset_peak()
  local before = status_kib("VmRSS:")
  local t0 = socket.gettime()
  local result = fn(s, n)
  if sending then finish_send(s, n) end
  local dt = socket.gettime() - t0
  local added = status_kib("VmHWM:") - before
  s:close()
  local align = -1
  if side == "rpc" then
    assert(#result[2] == n and result[1] == result[2], name .. ": the replies differ")
  elseif side == "recv" then
    assert(#result >= n, name .. ": short result")
    -- fastsock buffers are their own mappings; Lua strings' offsets can't be seen.
    if result == REUSED then align = 0 end
  end
  return dt, added * 1024, align
end

io.stdout:setvbuf("line")
print("ready")
for line in io.lines() do
  local cmd = {}
  for w in line:gmatch("%S+") do cmd[#cmd + 1] = w end
  if cmd[1] == "quit" then break end
  if cmd[1] == "list" then
    local names = {}
    for _, v in ipairs(VARIANTS) do names[#names + 1] = v[1] .. ":" .. v[2] end
    print(table.concat(names, " "))
  elseif cmd[1] == "sink" then
    sink_extra = table.concat(cmd, " ", 2)
    print("ok")
  elseif cmd[1] == "pid" then
    local stat = assert(io.open("/proc/self/stat")):read("l")
    print(stat:match("^(%d+)"))
  elseif cmd[1] == "run" then
    local ok, dt, added, align = pcall(run, cmd[2], math.tointeger(tonumber(cmd[3])))
    if ok then
      print(string.format("ok %.9f %d %d", dt, added, align))
    else
      print((("err " .. tostring(dt)):gsub("\n", " ")))
    end
  end
  collectgarbage()
  collectgarbage()
end
