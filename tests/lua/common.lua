-- What the Lua runner and the Lua tests share: the loopback server, the test
-- stream of tests/README.md, and small checks. Everything that is not the
-- operation under test goes through LuaSocket, as users' code would.
local socket = require "socket"

local M = {}

M.P = 65521 -- the stream's unit length (prime)

-- Command-line options: --name value, repeatable ones collected in lists.
function M.parse_args(argv, flags, lists)
  local opts = {}
  for _, name in ipairs(lists or {}) do opts[name] = {} end
  local k = 1
  while k <= #argv do
    local name = argv[k]:match("^%-%-(.+)$")
    if not name then error("unexpected argument " .. argv[k], 0) end
    if flags and flags[name] then
      opts[name] = true
      k = k + 1
    else
      local value = argv[k + 1]
      if value == nil then error("--" .. name .. " needs a value", 0) end
      if opts[name] and type(opts[name]) == "table" then
        table.insert(opts[name], value)
      else
        opts[name] = value
      end
      k = k + 2
    end
  end
  return opts
end

local units = {}

-- The unit of a seed: xorshift32 from the seed's start value, low bytes.
function M.unit(seed)
  if units[seed] then return units[seed] end
  local x = (seed * 2654435761 + 0x7F4A7C15) & 0xFFFFFFFF
  if x == 0 then x = 1 end
  local bytes, parts = {}, {}
  for i = 1, M.P do
    x = x ~ ((x << 13) & 0xFFFFFFFF)
    x = x ~ (x >> 17)
    x = x ~ ((x << 5) & 0xFFFFFFFF)
    bytes[#bytes + 1] = x & 0xFF
    if #bytes == 4096 or i == M.P then
      parts[#parts + 1] = string.char(table.unpack(bytes))
      bytes = {}
    end
  end
  units[seed] = table.concat(parts)
  return units[seed]
end

-- Stream bytes [off, off + len) of a seed.
function M.stream(seed, off, len)
  if len <= 0 then return "" end
  local phase = off % M.P
  local reps = (phase + len) // M.P + 1
  return string.rep(M.unit(seed), reps):sub(phase + 1, phase + len)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Starts the loopback server; returns a handle for stop_server and its port.
function M.start_server(path)
  local h = assert(io.popen(shell_quote(path) .. " --idle-exit 60", "r"))
  local line = h:read("l")
  local port = line and tonumber(line:match("^PORT (%d+)"))
  if not port then error("the server did not announce its port: " .. tostring(line), 0) end
  return { handle = h, port = port }
end

function M.stop_server(server)
  local c = socket.connect("127.0.0.1", server.port)
  if c then
    c:send("quit\n")
    c:close()
  end
  server.handle:close()
end

-- A connection that has sent its request ("gen,len=10,seed=3" or with spaces).
function M.request(server, req)
  local c = assert(socket.connect("127.0.0.1", server.port))
  assert(c:send(req:gsub(",", " ") .. "\n"))
  return c
end

-- A numeric key of a request, e.g. seed of "gen,len=10,seed=3"; 0 if absent.
function M.req_value(req, key)
  return math.tointeger(tonumber(req:match("[, ]" .. key .. "=(%d+)"))) or 0
end

-- After sending: shut down writing and read the sink's verdict.
function M.sink_answer(c)
  c:shutdown("send")
  c:settimeout(30) -- whatever the test set, the answer is worth waiting for
  local answer = c:receive("*a")
  local got, match = (answer or ""):match("^got=(%d+) match=(%d+)")
  return math.tointeger(tonumber(got)), math.tointeger(tonumber(match))
end

-- Runs f and returns the message it raised; fails if it raised nothing.
function M.raises(f, ...)
  local ok, err = pcall(f, ...)
  if ok then error("expected an error, got none", 2) end
  return tostring(err)
end

-- A named test: its name, then "ok" once f returned (an error ends the run).
function M.test(name, f)
  io.write(name, " ... ")
  f()
  print("ok")
end

-- f(...) must raise an error whose message holds pattern.
function M.expect_error(pattern, f, ...)
  local msg = M.raises(f, ...)
  if not msg:find(pattern) then error("error '" .. msg .. "' lacks '" .. pattern .. "'", 2) end
end

-- Where LuaSocket's send starts for an i into len bytes (buffer_meth_send's
-- clamping): the tests' own reading, not the binding's.
function M.send_start(i, len)
  local s = i or 1
  if s < 0 then s = len + s + 1 end
  if s < 1 then s = 1 end
  return s
end

-- Runs body(cq, beats) as a coroutine of a new cqueues controller, beside a
-- 1 ms heartbeat coroutine: beats() counts its beats so far, how many times
-- the controller ran something else (a call that blocks the controller lets
-- none through). Raises body's error, or the controller's.
function M.under_cqueues(body)
  local cqueues = require "cqueues" -- only the tests that run a controller have it
  local cq = cqueues.new()
  local count, running = 0, true
  cq:wrap(function()
    while running do
      cqueues.sleep(0.001)
      count = count + 1
    end
  end)
  local failure
  cq:wrap(function()
    local ok, err = xpcall(body, debug.traceback, cq, function() return count end)
    running = false
    if not ok then failure = err end
  end)
  local ok, err = cq:loop()
  if not ok then error(err, 0) end
  if failure then error(failure, 0) end
end

-- A field of /proc/self/status ("VmRSS:", "VmHWM:"), in MiB; 0 when absent.
function M.status_mb(field)
  for line in io.lines("/proc/self/status") do
    if line:sub(1, #field) == field then return tonumber(line:match("(%d+)")) / 1024 end
  end
  return 0
end

-- "5" resets VmHWM to the current RSS, which it returns (the base that the
-- transfer's peak is measured from).
function M.reset_peak()
  local f = assert(io.open("/proc/self/clear_refs", "w"))
  f:write("5")
  f:close()
  return M.status_mb("VmRSS:")
end

-- This process's resident set, in bytes.
function M.rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

-- Runs body(server) against a fresh loopback server, stops the server even
-- when body fails (else the server's idle exit holds the process), and exits.
function M.main(server_path, body)
  local server = M.start_server(assert(server_path, "--server PATH"))
  local ok, err = xpcall(body, debug.traceback, server)
  M.stop_server(server)
  if not ok then io.stderr:write(tostring(err), "\n") end
  os.exit(ok and 0 or 1)
end

return M
