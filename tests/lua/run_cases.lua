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
                   "budget", "steps_min", "pieces", "delim", "max", "repeat", "then", "hay",
                   "needle", "sep", "from" }
local NUMERIC = set { "n", "bufsize", "offset", "count", "datalen", "timeout", "result",
                      "result_max", "moved", "moved_min", "cycles_max", "budget", "steps_min",
                      "max", "repeat", "then", "from" }
local OPS = set { "recvall", "recvall_into", "recv_into", "send", "sendall", "sendfile",
                  "recv_steps", "recv_steps_into", "send_steps", "sendfile_steps",
                  "sendallv", "recvfile", "readuntil", "find", "split" }
-- The protocol round's ops: run by run_more.
local MORE = set { "sendallv", "recvfile", "readuntil", "find", "split" }
local SEARCH = set { "find", "split" }
-- A progressive op is checked as the blocking call it does step by step.
local BLOCKING_OF = { recv_steps = "recvall", recv_steps_into = "recvall_into",
                      send_steps = "sendall", sendfile_steps = "sendfile" }
local EXPECTS = set { "ok", "closed", "timeout", "reset", "peer_gone", "badarg", "badsock",
                      "nomem", "wouldblock", "toolong", "badfile" }
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
  if SEARCH[c.op] then
    if c.req then error(c.name .. ": find and split make no connection", 0) end
  elseif not c.req then
    error(c.name .. ": missing req", 0)
  end
  if c.sock and not SOCKS[c.sock] then error(c.name .. ": unknown sock " .. c.sock, 0) end
  if c.op == "recvfile" then
    if not (c.file and (c.file == "empty" or c.file == "pipe" or c.file:match("^regular:%d+$")
                        or c.file:match("^append:%d+$") or c.file:match("^readonly:%d+$"))) then
      error(c.name .. ": unknown or missing recvfile file " .. tostring(c.file), 0)
    end
    if not c.n then error(c.name .. ": recvfile without n", 0) end
  elseif c.file and not (c.file == "empty" or c.file:match("^regular:%d+$") or c.file:match("^pipe:%d+$")) then
    error(c.name .. ": unknown file " .. c.file, 0)
  end
  if c.op == "sendallv" and not (c.pieces and (c.pieces == "none"
      or c.pieces:match("^[%dx*:]+$"))) then
    error(c.name .. ": bad or missing pieces " .. tostring(c.pieces), 0)
  end
  for _, key in ipairs { "delim", "needle", "sep" } do
    if c[key] and c[key] ~= "empty" and not (c[key]:match("^%x+$") and #c[key] % 2 == 0) then
      error(c.name .. ": " .. key .. " is not hex or empty: " .. c[key], 0)
    end
  end
  if c.hay and not (c.hay == "empty" or c.hay:match("^stream:%d+:%d+$") or c.hay:match("^hex:%x*$")) then
    error(c.name .. ": unknown hay " .. c.hay, 0)
  end
  if c.op == "readuntil" and not (c.delim and c.max) then
    error(c.name .. ": readuntil needs delim and max", 0)
  end
  if SEARCH[c.op] and not (c.hay and (c.needle or c.sep)) then
    error(c.name .. ": " .. c.op .. " needs hay and " .. (c.op == "find" and "needle" or "sep"), 0)
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

local send_start = common.send_start

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

local run_more

local function run_case(server, c)
  if MORE[c.op] then return run_more(server, c) end
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
  -- sendfile's source: the file made above, or cat reading it into a pipe.
  local function open_file()
    if c.file:match("^pipe:") then
      pipe_handle = assert(io.popen("cat " .. path .. " 2>/dev/null", "r"))
      file = pipe_handle
      -- A count stops early; cat then meets a closed pipe and goes.
      cleanup[#cleanup + 1] = function() pipe_handle:close() end
    else
      file = assert(io.open(path, "rb"))
      cleanup[#cleanup + 1] = function() file:close() end
    end
  end
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
      open_file()
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
  else -- sendfile
    open_file()
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

-- ---- sendallv, recvfile, readuntil, find and split ------------------------------------

local function unhex(spec)
  if spec == "empty" then return "" end
  return (spec:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function make_hay(spec)
  if spec == "empty" then return "" end
  local len, seed = spec:match("^stream:(%d+):(%d+)$")
  if len then return common.stream(math.tointeger(tonumber(seed)), 0, math.tointeger(tonumber(len))) end
  return unhex(spec:match("^hex:(.*)$"))
end

-- The answer of a call that failed (nil, err, partial) as a case's kind.
local function failure_kind(c, err)
  if err == "closed" then return "closed" end
  if err == "timeout" then return c.timeout == 0 and "wouldblock" or "timeout" end
  if err == "too long" then return "toolong" end
  if err == "file not open for writing" then return "badfile" end
  if err == "Connection reset by peer" then return "reset" end
  if err == "Broken pipe" then return "peer_gone" end
  return "error: " .. tostring(err)
end

-- expect, result, moved and moved_min against what a call did.
local function check_outcome(c, kind, result, moved)
  if not kind_matches(c.expect, kind) then
    return string.format("expected %s, got %s", c.expect, kind)
  end
  if c.expect == "ok" then
    if c.result and result ~= c.result then
      return string.format("result %s, expected %s", tostring(result), c.result)
    end
  else
    if c.moved and moved ~= c.moved then
      return string.format("moved %s, expected %s", tostring(moved), c.moved)
    end
    if c.moved_min and moved < c.moved_min then
      return string.format("moved %s, expected at least %s", tostring(moved), c.moved_min)
    end
  end
  return nil
end

-- A counting call's pcall results (a count, or nil, err, count) as kind,
-- result and moved; a fourth answer says how they broke the contract.
local function counted_outcome(c, r)
  if not r[1] then return raised_kind(tostring(r[2])), nil, 0 end
  if r[2] == nil then
    if not is_integer(r[4]) then return nil, nil, nil, "the count is no integer: " .. tostring(r[4]) end
    return failure_kind(c, r[3]), nil, r[4]
  end
  if not is_integer(r[2]) then return nil, nil, nil, "returned " .. tostring(r[2]) end
  return "ok", r[2], r[2]
end

-- find and split, over a string and over a buffer holding the same bytes:
-- both must answer alike.
local function run_search(c)
  local hay = make_hay(c.hay)
  local buf = fastsock.buffer(hay)
  local needle = unhex(c.op == "find" and c.needle or c.sep)
  local init = (c.from or 0) + 1 -- the case's 0-based from, as Lua's init
  local on_string, on_buffer
  if c.op == "find" then
    on_string = table.pack(pcall(fastsock.find, hay, needle, c.from and init))
    on_buffer = table.pack(pcall(buf.find, buf, needle, c.from and init))
  else
    on_string = table.pack(pcall(fastsock.split, hay, needle))
    on_buffer = table.pack(pcall(buf.split, buf, needle))
  end
  buf:close()
  if on_string[1] ~= on_buffer[1] then return "the string and the buffer forms disagree" end
  if not on_string[1] then
    local kind = raised_kind(tostring(on_string[2]))
    if kind ~= raised_kind(tostring(on_buffer[2])) then return "the two forms raise differently" end
    return check_outcome(c, kind, nil, 0)
  end
  local result
  if c.op == "find" then
    local i, j = on_string[2], on_string[3]
    if i ~= on_buffer[2] or j ~= on_buffer[3] then
      return string.format("string: %s, buffer: %s", tostring(i), tostring(on_buffer[2]))
    end
    if i == nil then
      result = -1
    else
      if not (is_integer(i) and is_integer(j)) then return "find did not return integers" end
      if j ~= i + #needle - 1 or hay:sub(i, j) ~= needle then
        return string.format("no needle at %d..%d", i, j)
      end
      if hay:find(needle, init, true) ~= i then return "string.find finds it elsewhere" end
      result = i - 1
    end
  else
    local t, u = on_string[2], on_buffer[2]
    if type(t) ~= "table" or #t % 2 ~= 0 or #t ~= #u then return "split's table is malformed" end
    local fields = {}
    for k = 1, #t, 2 do
      if t[k] ~= u[k] or t[k + 1] ~= u[k + 1] then return "the two forms' positions differ" end
      if not (is_integer(t[k]) and is_integer(t[k + 1])) then return "positions are no integers" end
      fields[#fields + 1] = hay:sub(t[k], t[k + 1])
    end
    if table.concat(fields, needle) ~= hay then return "the fields joined with sep differ from the hay" end
    result = #t // 2
  end
  return check_outcome(c, "ok", result, result)
end

-- pieces=64:16777216:2, LEN*K, none, x: consecutive stream bytes from 0, as
-- strings, buffers and {data, i, j} ranges in turn (large ones as ranges
-- of the one string: no copy); x is true, no buffer.
local function make_pieces(spec, seed)
  local lens = {}
  if spec ~= "none" then
    for tok in spec:gmatch("[^:]+") do
      if tok == "x" then
        lens[#lens + 1] = "x"
      else
        local len, times = tok:match("^(%d+)%*(%d+)$")
        len, times = math.tointeger(tonumber(len or tok)), math.tointeger(tonumber(times or 1))
        for _ = 1, times do lens[#lens + 1] = len end
      end
    end
  end
  local total = 0
  for _, len in ipairs(lens) do total = total + (len == "x" and 0 or len) end
  local data = common.stream(seed, 0, total)
  local pieces, at, buffers = {}, 0, {}
  for k, len in ipairs(lens) do
    if len == "x" then
      pieces[k] = true
    elseif len > 65536 or k % 3 == 1 then
      pieces[k] = { data, at + 1, at + len }
    elseif k % 3 == 2 then
      pieces[k] = data:sub(at + 1, at + len)
    else
      pieces[k] = fastsock.buffer(data:sub(at + 1, at + len))
      buffers[#buffers + 1] = pieces[k]
    end
    at = at + (len == "x" and 0 or len)
  end
  return pieces, buffers
end

-- A temporary file for recvfile, opened as the case's file says, with the
-- LEN bytes of 0xA5 it starts with. A pipe is `cat` into the file.
local function recvfile_target(spec)
  local path = os.tmpname()
  if spec == "pipe" then
    return assert(io.popen("cat > " .. path, "w")), path, 0
  end
  local kind, len = spec:match("^(%a+):(%d+)$")
  len = math.tointeger(tonumber(len)) or 0
  local w = assert(io.open(path, "wb"))
  w:write(string.rep("\xA5", len))
  w:close()
  local mode = ({ append = "ab", readonly = "rb" })[kind] or "r+b"
  return assert(io.open(path, mode)), path, len
end

function run_more(server, c)
  if SEARCH[c.op] then return run_search(c) end
  local seed, off = common.req_value(c.req, "seed"), common.req_value(c.req, "off")
  local cleanup = {}
  local function finish(why)
    for k = #cleanup, 1, -1 do cleanup[k]() end
    return why
  end
  local pieces, buffers
  if c.op == "sendallv" then pieces, buffers = make_pieces(c.pieces, seed) end
  local file, path, prefill
  if c.op == "recvfile" then
    file, path, prefill = recvfile_target(c.file)
    cleanup[#cleanup + 1] = function()
      if io.type(file) == "file" then file:close() end
      os.remove(path)
    end
  end
  local conn = common.request(server, c.req)
  cleanup[#cleanup + 1] = function() conn:close() end
  local target
  if (c.sock or "fd") == "fd" then
    target = conn
  elseif c.sock == "int" then
    target = math.tointeger(conn:getfd())
  elseif c.sock == "notsock" then
    target = io.tmpfile()
    cleanup[#cleanup + 1] = function() target:close() end
  else
    target = socket.tcp()
    target:close()
  end
  local refused = c.expect == "badarg" or c.expect == "badsock" or c.expect == "badfile"
  local kind, result, moved, why
  local consumed = 0 -- stream bytes the checks have seen

  if c.op == "sendallv" then
    local r = table.pack(pcall(fastsock.sendallv, target, pieces, c.timeout))
    for _, b in ipairs(buffers) do b:close() end
    kind, result, moved, why = counted_outcome(c, r)
    why = why or check_outcome(c, kind, result, moved)
    if why then return finish(why) end
    if c.expect ~= "peer_gone" then
      local got, match = common.sink_answer(conn)
      if got == nil then return finish("no answer from the sink") end
      if got ~= moved or match ~= got then
        return finish(string.format("sink got %d (matching %d), the call reported %d", got, match, moved))
      end
    end
    return finish(nil)
  end

  if c.op == "recvfile" then
    local r = table.pack(pcall(fastsock.recvfile, target, file, c.n, c.offset, c.timeout))
    kind, result, moved, why = counted_outcome(c, r)
    why = why or check_outcome(c, kind, result, moved)
    if why then return finish(why) end
    local at = c.file:match("^append:") and prefill or (c.offset or 0)
    if c.file == "pipe" then
      file:close() -- waits for cat, which has written everything
      at = 0
    elseif r[1] and not refused then
      local pos = file:seek("cur")
      if pos ~= at + moved then
        return finish(string.format("file position %s, expected %d", tostring(pos), at + moved))
      end
    end
    local got = assert(io.open(path, "rb")):read("a")
    local want_len = math.max(prefill, at + moved)
    if not refused and #got ~= want_len then
      return finish(string.format("the file holds %d bytes, expected %d", #got, want_len))
    end
    if got:sub(at + 1, at + moved) ~= common.stream(seed, off, moved) then
      return finish("the file's bytes differ from the stream")
    end
    if not refused and (got:sub(1, at) ~= string.rep("\xA5", at)
        or got:sub(at + moved + 1) ~= string.rep("\xA5", #got - at - moved)) then
      return finish(string.format("a byte of the file outside [%d, %d) was written", at, at + moved))
    end
    consumed = moved
  else -- readuntil
    local delim, total = unhex(c.delim), 0
    local made, reader = pcall(fastsock.reader, target)
    local r
    if not made then
      r = { false, reader, n = 2 }
    else
      cleanup[#cleanup + 1] = function() reader:close() end
      for line_no = 1, c["repeat"] or 1 do
        r = table.pack(pcall(reader.readuntil, reader, delim, c.max, c.timeout))
        if not r[1] then break end
        local line = r[2] == nil and r[4] or r[2]
        if type(line) ~= "string" then return finish("line " .. line_no .. " is no string") end
        if line ~= common.stream(seed, off + total, #line) then
          return finish("line " .. line_no .. " differs from the stream")
        end
        if r[2] ~= nil and line:sub(-#delim) ~= delim then
          return finish("line " .. line_no .. " does not end with the delimiter")
        end
        total = total + #line
        if r[2] == nil then break end
      end
    end
    if not r[1] then
      kind, moved = raised_kind(tostring(r[2])), 0
    elseif r[2] == nil then
      kind, moved = failure_kind(c, r[3]), total
    else
      kind, result, moved = "ok", total, total
    end
    why = check_outcome(c, kind, result, moved)
    if why then return finish(why) end
    if c["then"] and c["then"] > 0 then
      local body, err = reader:recvall(c["then"])
      if body ~= common.stream(seed, off + total, c["then"]) then
        return finish(string.format("the %d bytes after the line(s) differ from the stream (%s)",
                                    c["then"], tostring(err)))
      end
    end
    consumed = total + (c["then"] or 0)
  end
  if refused and moved ~= 0 then
    return finish(string.format("refused, yet %d bytes moved", moved))
  end
  if refused then
    local first = conn:receive(1)
    if first ~= common.stream(seed, off + consumed, 1) then
      return finish("a refused call consumed data")
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
