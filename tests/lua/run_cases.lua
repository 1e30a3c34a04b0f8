-- The Lua conformance runner: every case of tests/cases.txt through the
-- fastsock module and the loopback server, with the checks of tests/README.md.
--
--   lua5.4 run_cases.lua --server PATH --cases PATH [--only NAME]...
--   lua5.4 run_cases.lua --list --cases PATH
--
-- The case file is 0-based; Lua is not: a buffer offset becomes i = offset + 1,
-- a send range becomes i = offset + 1, j = offset + count, and what the module
-- returns (the last index sent, nil, "closed", 0 at end of stream) is turned
-- back into the case file's counts.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")

local socket = require "socket"

local LANG = "lua"
local SENTINEL = 0xA5

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local KEYS = set { "op", "req", "sock", "n", "bufsize", "offset", "count", "datalen", "file",
                   "timeout", "expect", "result", "result_max", "moved", "moved_min", "cycles_max",
                   "budget", "steps_min" }
local NUMERIC = set { "n", "bufsize", "offset", "count", "datalen", "timeout", "result",
                      "result_max", "moved", "moved_min", "cycles_max", "budget", "steps_min" }
local OPS = set { "recvall", "recvall_into", "recv_into", "send", "sendall", "sendfile",
                  "recv_steps", "recv_steps_into", "send_steps", "sendfile_steps" }
-- A progressive op is checked as the blocking call it does step by step.
local BLOCKING_OF = { recv_steps = "recvall", recv_steps_into = "recvall_into",
                      send_steps = "sendall", sendfile_steps = "sendfile" }
local EXPECTS = set { "ok", "closed", "timeout", "reset", "peer_gone", "badarg", "badsock",
                      "nomem", "wouldblock" }
local SOCKS = set { "fd", "int", "notsock", "closed" }

-- One line of the case file: nil for blank lines and comments, else the case.
local function parse_line(line)
  line = line:gsub("#.*$", "")
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  if #words == 0 then return nil end
  local c, overridden = { name = words[1] }, {}
  for k = 2, #words do
    local key, value = words[k]:match("^([^=]+)=(.*)$")
    if not key then error(c.name .. ": token without '=': " .. words[k], 0) end
    local base, lang = key:match("^(.-)@(.+)$")
    if not base or lang == LANG then
      base = base or key
      if not KEYS[base] then error(c.name .. ": unknown key " .. base, 0) end
      if NUMERIC[base] then
        local num = tonumber(value)
        if not num then error(c.name .. ": " .. base .. " is not a number: " .. value, 0) end
        value = num
      end
      if lang or not overridden[base] then c[base] = value end
      if lang then overridden[base] = true end
    end
  end
  if not (c.op and OPS[c.op]) then error(c.name .. ": missing or unknown op", 0) end
  if not (c.expect and EXPECTS[c.expect]) then error(c.name .. ": missing or unknown expect", 0) end
  if not c.req then error(c.name .. ": missing req", 0) end
  if c.sock and not SOCKS[c.sock] then error(c.name .. ": unknown sock " .. c.sock, 0) end
  if c.file and not (c.file == "empty" or c.file:match("^regular:%d+$") or c.file:match("^pipe:%d+$")) then
    error(c.name .. ": unknown file " .. c.file, 0)
  end
  if (c.op == "sendfile" or c.op == "sendfile_steps") and not c.file then
    error(c.name .. ": sendfile without file", 0)
  end
  if (c.budget or c.steps_min) and not BLOCKING_OF[c.op] then
    error(c.name .. ": budget and steps_min are for the progressive ops", 0)
  end
  return c
end

local function load_cases(path)
  local cases, seen = {}, {}
  for line in assert(io.lines(path)) do
    local c = parse_line(line)
    if c then
      if seen[c.name] then error("duplicate case " .. c.name, 0) end
      seen[c.name] = true
      cases[#cases + 1] = c
    end
  end
  return cases
end

-- ---- running a case ---------------------------------------------------------------

local fastsock -- loaded only to run cases: --list needs no module

-- Where LuaSocket's send starts for an i (buffer_meth_send's clamping).
local function send_start(i, len)
  local s = i or 1
  if s < 0 then s = len + s + 1 end
  if s < 1 then s = 1 end
  return s
end

-- The kind of a raised error, by the argument it names.
local function raised_kind(msg)
  if msg:match("bad argument #1 ") then return "badsock" end
  if msg:match("bad argument #%d+ ") then return "badarg" end
  if msg:match("cannot allocate") then return "nomem" end
  return "error: " .. msg
end

local function kind_matches(expect, kind)
  if expect == kind then return true end
  -- Which of the two a gone peer shows depends on timing.
  return expect == "peer_gone" and kind == "reset"
end

local function is_integer(v) return math.type(v) == "integer" end

-- Drives a receiver or sender as an event loop does: socket.select on the
-- connection for what the object wants, a step, again until it ends or the
-- case's timeout passes. Returns what a pcall of the blocking call would
-- (true, result... or false, message) and the per-step figures.
local function drive_steps(c, conn, make)
  local made, obj = pcall(make)
  if not made then return { false, obj, n = 2 } end
  if c.budget then obj:setbudget(c.budget) end
  local deadline = c.timeout and socket.gettime() + c.timeout
  local steps, largest = 0, 0
  while true do
    local before = obj:progress()
    local r = table.pack(true, obj:step())
    local moved = obj:progress() - before
    if moved > 0 then steps = steps + 1 end
    largest = math.max(largest, moved)
    if r[2] ~= nil or r[3] ~= "timeout" then
      return r, steps, largest, obj
    end
    local wait = deadline and deadline - socket.gettime()
    if wait and wait <= 0 then
      -- The runner's limit: the object's progress, and for a fresh receive
      -- the bytes, which closing it hands over.
      return { true, nil, "timeout", obj:close(), n = 4 }, steps, largest, obj
    end
    local want = obj:events()
    if want == "r" then
      socket.select({ conn }, nil, wait)
    else
      socket.select(nil, { conn }, wait)
    end
  end
end

local function run_case(server, c)
  local blocking_op = BLOCKING_OF[c.op]
  c = setmetatable({ op = blocking_op or c.op }, { __index = c })
  local seed, off = common.req_value(c.req, "seed"), common.req_value(c.req, "off")
  -- Built before connecting: building 64 MiB is slow under valgrind, and the
  -- server's pause (sendall_timeout, sendfile_timeout) starts at the
  -- connection.
  local send_data = (c.op == "send" or c.op == "sendall") and common.stream(seed, 0, c.datalen)
  local cleanup = {}
  local path
  if c.op == "sendfile" then
    local len = math.tointeger(tonumber(c.file:match(":(%d+)$"))) or 0
    path = os.tmpname()
    cleanup[#cleanup + 1] = function() os.remove(path) end
    local w = assert(io.open(path, "wb"))
    w:write(common.stream(seed, 0, len))
    w:close()
  end
  local conn = common.request(server, c.req)
  local is_recv = c.op:match("^recv") ~= nil
  local function finish(why)
    for k = #cleanup, 1, -1 do cleanup[k]() end
    conn:close()
    return why
  end

  local target
  local kind = c.sock or "fd"
  if kind == "fd" then
    target = conn
  elseif kind == "int" then
    target = math.tointeger(conn:getfd())
  elseif kind == "notsock" then
    -- A regular file; Lua reaches an fd only through a handle.
    target = io.tmpfile()
    cleanup[#cleanup + 1] = function() target:close() end
  else -- closed
    target = require("socket").tcp()
    target:close()
  end

  local i, j = c.offset and c.offset + 1, c.count and (c.offset or 0) + c.count
  local buf, data, file, pipe_handle
  local r, steps, largest
  if blocking_op then
    local make
    if c.op == "recvall" then
      make = function() return fastsock.receiver(target, c.n) end
    elseif c.op == "recvall_into" then
      buf = fastsock.buffer(c.bufsize):fill(SENTINEL)
      make = function() return fastsock.receiver(target, buf, c.n, i) end
    elseif c.op == "sendall" then
      data = send_data
      make = function() return fastsock.sender(target, data, i, j) end
    else
      if c.file:match("^pipe:") then
        pipe_handle = assert(io.popen("cat " .. path .. " 2>/dev/null", "r"))
        file = pipe_handle
        cleanup[#cleanup + 1] = function() pipe_handle:close() end
      else
        file = assert(io.open(path, "rb"))
        cleanup[#cleanup + 1] = function() file:close() end
      end
      make = function() return fastsock.sender(target, file, c.offset, c.count) end
    end
    local obj
    r, steps, largest, obj = drive_steps(c, conn, make)
    if obj then obj:close() end
  elseif c.op == "recvall" then
    r = table.pack(pcall(fastsock.recvall, target, c.n, c.timeout))
  elseif is_recv then
    buf = fastsock.buffer(c.bufsize):fill(SENTINEL)
    r = table.pack(pcall(fastsock[c.op], target, buf, c.n, i, c.timeout))
  elseif c.op == "send" or c.op == "sendall" then
    data = send_data
    r = table.pack(pcall(fastsock[c.op], target, data, i, j, c.timeout))
  else -- sendfile, from the file made above
    if c.file:match("^pipe:") then
      pipe_handle = assert(io.popen("cat " .. path .. " 2>/dev/null", "r"))
      file = pipe_handle
      -- A count stops early; cat then meets a closed pipe and goes.
      cleanup[#cleanup + 1] = function() pipe_handle:close() end
    else
      file = assert(io.open(path, "rb"))
      cleanup[#cleanup + 1] = function() file:close() end
    end
    r = table.pack(pcall(fastsock.sendfile, target, file, c.offset, c.count, c.timeout))
  end

  -- Turn Lua's answer into the case file's kind, result and bytes moved.
  local got_kind, result, moved, received
  if not r[1] then
    got_kind, moved = raised_kind(tostring(r[2])), 0
  elseif r[2] == nil then
    local err, partial = r[3], r[4]
    if err == "closed" then
      got_kind = "closed"
    elseif err == "timeout" then
      got_kind = c.timeout == 0 and "wouldblock" or "timeout"
    elseif err == "Connection reset by peer" then
      got_kind = "reset"
    elseif err == "Broken pipe" then
      got_kind = "peer_gone"
    else
      got_kind = "error: " .. tostring(err)
    end
    if c.op == "recvall" then
      if type(partial) ~= "string" then return finish("partial is not a string: " .. tostring(partial)) end
      moved, received = #partial, partial
    elseif not is_integer(partial) then
      return finish("partial is not an integer: " .. tostring(partial))
    elseif c.op == "send" or c.op == "sendall" then
      moved = partial - (send_start(i, #data) - 1)
    else
      moved = partial
    end
    if c.op == "recv_into" and got_kind == "closed" and moved == 0 then
      got_kind, result = "ok", 0 -- end of stream is nil, "closed", 0 in Lua
    end
  else
    got_kind = "ok"
    if c.op == "recvall" then
      if type(r[2]) ~= "string" then return finish("recvall returned " .. type(r[2])) end
      received, result = r[2], #r[2]
    elseif not is_integer(r[2]) then
      return finish("returned " .. tostring(r[2]) .. ", not an integer")
    elseif c.op == "send" or c.op == "sendall" then
      result = r[2] - (send_start(i, #data) - 1)
    else
      result = r[2]
    end
    moved = result
  end

  if blocking_op and r[1] then
    if c.budget and largest > c.budget then
      return finish(string.format("a step moved %d bytes, over the budget %d", largest, c.budget))
    end
    if c.steps_min and steps < c.steps_min then
      return finish(string.format("%d steps moved data, expected at least %d", steps, c.steps_min))
    end
  end
  if not kind_matches(c.expect, got_kind) then
    return finish(string.format("expected %s, got %s", c.expect, got_kind))
  end
  if c.expect == "ok" then
    if c.result and result ~= c.result then
      return finish(string.format("result %s, expected %s", result, c.result))
    end
    if c.result_max and result > c.result_max then
      return finish(string.format("result %s above %s", result, c.result_max))
    end
  else
    if c.moved and moved ~= c.moved then
      return finish(string.format("moved %s, expected %s", moved, c.moved))
    end
    if c.moved_min and moved < c.moved_min then
      return finish(string.format("moved %s, expected at least %s", moved, c.moved_min))
    end
  end
  if (c.op == "recvall" or c.op == "recvall_into") and c.cycles_max
      and not os.getenv("FASTSOCK_PORTABLE_BUILD") and r[1] then
    local cycles = fastsock.recvall_cycles()
    if not is_integer(cycles) then return finish("recvall_cycles is not an integer") end
    if cycles > c.cycles_max then
      return finish(string.format("%d recv calls, expected at most %d", cycles, c.cycles_max))
    end
  end

  local refused = c.expect == "badarg" or c.expect == "badsock" or c.expect == "nomem"
  if received and received ~= common.stream(seed, off, moved) then
    return finish("received bytes differ from the stream")
  end
  if buf then
    local at = refused and 0 or (c.offset or 0)
    local n = refused and 0 or moved
    if buf:tostring(at + 1, at + n) ~= common.stream(seed, off, n) then
      return finish("received bytes differ from the stream")
    end
    if buf:tostring(1, at) ~= string.rep("\xA5", at)
        or buf:tostring(at + n + 1) ~= string.rep("\xA5", c.bufsize - at - n) then
      return finish(string.format("a byte outside [%d, %d) was written", at, at + n))
    end
  end
  if refused and is_recv then
    local first = conn:receive(1)
    if first ~= common.stream(seed, off, 1) then
      return finish("a refused receive consumed data")
    end
  end
  if not is_recv and c.expect ~= "peer_gone" then
    local got, match = common.sink_answer(conn)
    if got == nil then return finish("no answer from the sink") end
    if got ~= moved or match ~= got then
      return finish(string.format("sink got %d (matching %d), the call reported %d", got, match, moved))
    end
  end
  if c.op == "sendfile" and not pipe_handle and r[1] then
    local pos = file:seek("cur")
    if pos ~= (c.offset or 0) + moved then
      return finish(string.format("file position %s, expected %d", pos, (c.offset or 0) + moved))
    end
  end
  return finish(nil)
end

-- ---- main ---------------------------------------------------------------------------

local ok, opts = pcall(common.parse_args, arg, { list = true }, { "only" })
if not ok or not opts.cases or not (opts.list or opts.server) then
  io.stderr:write((ok and "" or opts .. "\n") ..
    "usage: run_cases.lua --server PATH --cases PATH [--only NAME]... | --list --cases PATH\n")
  os.exit(2)
end
local loaded, cases = pcall(load_cases, opts.cases)
if not loaded then
  io.stderr:write(opts.cases .. ": " .. tostring(cases) .. "\n")
  os.exit(1)
end
if opts.list then
  for _, c in ipairs(cases) do print(c.name) end
  os.exit(0)
end

local only = set(opts.only)
if #opts.only > 0 then
  for name in pairs(only) do
    local found = false
    for _, c in ipairs(cases) do found = found or c.name == name end
    if not found then
      io.stderr:write("no case named " .. name .. "\n")
      os.exit(2)
    end
  end
end

fastsock = require "fastsock"
local server = common.start_server(opts.server)
local passed, failed = 0, 0
for _, c in ipairs(cases) do
  if #opts.only == 0 or only[c.name] then
    local fine, why = pcall(run_case, server, c)
    if fine and why == nil then
      passed = passed + 1
      print("ok " .. c.name)
    else
      failed = failed + 1
      print(string.format("FAIL %s: %s", c.name, fine and why or ("runner error: " .. tostring(why))))
    end
    io.stdout:flush()
  end
end
common.stop_server(server)
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
