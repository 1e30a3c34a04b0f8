-- fastsock under any coroutine scheduler through fastsock.setwaiter (issue
-- 15): a copas-style loop written here (copas for Lua 5.4 is not in Debian)
-- runs several transfers at once on socket.select; coroutines abandoned
-- inside a fastsock call (coroutine.close, or dropped and collected) leak
-- nothing, leave their buffer consistent and their socket free, and a
-- receiver resumes the stream from the position it reports.
--
--   lua5.4 test_waiter.lua --server PATH
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local socket = require "socket"
local fastsock = require "fastsock"

local opts = common.parse_args(arg)

local function check(cond, ...)
  if not cond then error(string.format(...), 2) end
end

-- ---- a copas-style scheduler ----------------------------------------------------
-- Coroutines yield (fd, events, deadline) from the waiter; the loop selects
-- on those fds and resumes whoever is ready or past its deadline.

local function fdobj(fd) return { getfd = function() return fd end, dirty = function() return false end } end

local function waiter(fd, events, deadline)
  coroutine.yield(fd, events, deadline)
end

local Loop = {}
Loop.__index = Loop

-- most_waiting: the most tasks waiting in one round (all of them, if the
-- calls really hand their waits to the loop).
local function new_loop() return setmetatable({ tasks = {}, ticks = 0, most_waiting = 0 }, Loop) end

function Loop:spawn(f, ...)
  local co = coroutine.create(f)
  self.tasks[#self.tasks + 1] = { co = co, args = table.pack(...) }
  return co
end

-- One round: resume the runnable, select for the waiting. Returns false once
-- every task has ended.
function Loop:step()
  self.ticks = self.ticks + 1
  local reads, writes, by_fd, live = {}, {}, {}, {}
  local soonest
  for _, t in ipairs(self.tasks) do
    if coroutine.status(t.co) ~= "dead" then
      if t.fd == nil then
        local ok, fd, events, deadline = coroutine.resume(t.co, table.unpack(t.args, 1, t.args.n))
        t.args = { n = 0 }
        if not ok then error(fd, 0) end
        t.fd, t.events, t.deadline = fd, events, deadline
      end
      if coroutine.status(t.co) ~= "dead" then
        live[#live + 1] = t
        if t.fd then
          local o = fdobj(t.fd)
          by_fd[o] = t
          if t.events:find("r") then reads[#reads + 1] = o end
          if t.events:find("w") then writes[#writes + 1] = o end
          if t.deadline and (not soonest or t.deadline < soonest) then soonest = t.deadline end
        end
      end
    end
  end
  self.tasks = live
  if #live == 0 then return false end
  local waiting = 0
  for _ in pairs(by_fd) do waiting = waiting + 1 end
  self.most_waiting = math.max(self.most_waiting, waiting)
  local wait = 0.05
  if soonest then wait = math.max(0, math.min(wait, soonest - fastsock.monotime())) end
  local r, w = socket.select(reads, writes, wait)
  for _, list in ipairs { r, w } do
    for _, o in ipairs(list) do by_fd[o].fd = nil end
  end
  local now = fastsock.monotime()
  for _, t in ipairs(live) do
    if t.deadline and now >= t.deadline then t.fd = nil end
  end
  return true
end

function Loop:run()
  while self:step() do end
end

common.main(opts.server, function(server)
  local function gen(req) return common.request(server, "gen " .. req) end
  check(fastsock.setwaiter(waiter) == nil, "a waiter was set before the test")

  -- Several transfers at once in the loop: three receives (a string, a
  -- buffer, a receiver's finish) and a sendall to a paused reader; they
  -- interleave, which a blocking call would not allow.
  do
    local loop = new_loop()
    local N = 4 << 20
    local results = {}
    local order = {}
    local c1, c2, c3 = gen("len=" .. N .. " seed=21 trickle=262144:5"),
                       gen("len=" .. N .. " seed=22 trickle=262144:5"),
                       gen("len=" .. N .. " seed=23 trickle=262144:5")
    local buf = fastsock.buffer(N)
    local payload = common.stream(24, 0, N)
    local s = common.request(server, "sink seed=24 pause_ms=100")
    loop:spawn(function()
      results[1] = fastsock.recvall(c1, N, 20)
      order[#order + 1] = 1
    end)
    loop:spawn(function()
      results[2] = fastsock.recvall_into(c2, buf, N, 1, 20)
      order[#order + 1] = 2
    end)
    loop:spawn(function()
      results[3] = fastsock.receiver(c3, N):finish(20)
      order[#order + 1] = 3
    end)
    loop:spawn(function()
      results[4] = fastsock.sendall(s, payload, 1, -1, 20)
      order[#order + 1] = 4
    end)
    loop:run()
    check(results[1] == common.stream(21, 0, N), "recvall in the loop: bytes differ")
    check(results[2] == N and buf:tostring() == common.stream(22, 0, N), "recvall_into in the loop")
    check(results[3] == common.stream(23, 0, N), "receiver:finish in the loop: bytes differ")
    check(results[4] == N, "sendall in the loop returned %s", tostring(results[4]))
    local got, match = common.sink_answer(s)
    check(got == N and match == N, "sendall in the loop: the sink got %s", tostring(got))
    check(loop.most_waiting == 4, "the transfers did not wait together: at most %d at once",
          loop.most_waiting)
    for _, c in ipairs { c1, c2, c3, s } do c:close() end
  end

  -- 1,000 coroutines abandoned at random points of one receive: each drives
  -- the same receiver a random number of rounds and is closed; the stream
  -- goes on from r:progress() and ends whole.
  do
    math.randomseed(15)
    local N = 3000000
    local c = gen("len=" .. N .. " seed=25")
    local buf = fastsock.buffer(N):fill(0xA5)
    local r = fastsock.receiver(c, buf):setbudget(1000)
    local abandoned, result = 0, nil
    while result == nil do
      local co = coroutine.create(function() return r:finish(10) end)
      -- After 1,000 abandonments, one coroutine takes the rest.
      local rounds = abandoned < 1000 and math.random(0, 3) or math.huge
      local ok, fd, events = coroutine.resume(co)
      check(ok, "receiver coroutine failed: %s", tostring(fd))
      while coroutine.status(co) == "suspended" and rounds > 0 do
        socket.select(events == "r" and { fdobj(fd) } or nil, nil, 1)
        ok, fd, events = coroutine.resume(co)
        check(ok, "receiver coroutine failed: %s", tostring(fd))
        rounds = rounds - 1
      end
      if coroutine.status(co) == "dead" then
        result = fd -- finish's first result
      else
        check(coroutine.close(co), "coroutine.close failed")
        abandoned = abandoned + 1
        local done = r:progress()
        -- What the caller can read is exactly the stream so far.
        check(buf:tostring(1, done) == common.stream(25, 0, done), "abandoned at %d: bytes differ", done)
        check(buf:byte(done + 1) == 0xA5 or done == N, "abandoned at %d: written past progress", done)
      end
    end
    check(result == N and buf:tostring() == common.stream(25, 0, N), "the resumed receive: %s", tostring(result))
    check(abandoned == 1000, "%d abandonments", abandoned)
    c:close()
    io.stdout:write(string.format("abandoned a receiver's coroutine %d times\n", abandoned))
  end

  -- recvall_into in a coroutine closed while it waits: the buffer is
  -- unpinned at once and keeps what arrived, and the socket is free for the
  -- next receive. Collected instead of closed: the same after a collection.
  for _, how in ipairs { "close", "collect" } do
    local c = gen("len=1000 seed=26 trickle=300:200")
    socket.select({ c }, nil, 2)
    socket.sleep(0.05) -- the first 300 bytes are all there
    local buf = fastsock.buffer(1000):fill(0xA5)
    -- Made in a function of its own, so that no register of this one keeps
    -- the coroutine from the collector.
    local function start()
      local co = coroutine.create(function() return fastsock.recvall_into(c, buf) end)
      local ok = coroutine.resume(co)
      check(ok and coroutine.status(co) == "suspended", "recvall_into did not wait")
      return co
    end
    local co = how == "close" and start()
    if not co then start() end
    local msg = common.raises(buf.close, buf)
    check(msg:match("cannot close a buffer"), "close under a suspended recvall_into: %s", msg)
    if co then
      -- A live coroutine's receive holds the socket (a dropped one's is
      -- collected by this very check: see below).
      msg = common.raises(fastsock.recvall, c, 10)
      check(msg:match("another receive is in progress"), "a second receive: %s", msg)
      check(coroutine.close(co), "coroutine.close failed")
    else
      collectgarbage()
      collectgarbage()
    end
    check(buf:tostring(1, 300) == common.stream(26, 0, 300), "%s: the bytes received are gone", how)
    check(buf:tostring(301) == ("\xA5"):rep(700), "%s: bytes written past what arrived", how)
    -- The socket is free again; the stream goes on after what the
    -- abandoned call received.
    local rest = fastsock.recvall(c, 700, 5)
    check(rest == common.stream(26, 300, 700), "%s: the rest of the stream", how)
    buf:close()
    c:close()
  end

  -- A buffer closed by <close> in the coroutine that coroutine.close ends:
  -- the suspended transfer lets go first, then the buffer closes.
  do
    local c = gen("len=1000 seed=27 trickle=100:200")
    local closed_buf
    local co = coroutine.create(function()
      local buf <close> = fastsock.buffer(1000)
      closed_buf = buf
      return fastsock.recvall_into(c, buf)
    end)
    coroutine.resume(co)
    check(coroutine.status(co) == "suspended", "recvall_into did not wait")
    check(coroutine.close(co), "coroutine.close with a <close> buffer failed")
    check(tostring(closed_buf):match("closed"), "the <close> buffer is still open")
    c:close()
  end

  -- A receiver keeps its buffer from closing at the end of a <close> scope.
  do
    local c = gen("len=10 seed=28 trickle=5:100")
    local r
    local msg = common.raises(function()
      local buf <close> = fastsock.buffer(10)
      r = fastsock.receiver(c, buf)
    end)
    check(msg:match("cannot close a buffer"), "<close> under a receiver: %s", msg)
    r:close()
    c:close()
  end

  -- A receiver dropped without closing does not hold its socket: the next
  -- receive finds it collected, while a live one is a clear error.
  do
    local c = gen("len=100 seed=30")
    local function drop() fastsock.receiver(c, 10) end
    drop()
    local live = fastsock.receiver(c, 10)
    local msg = common.raises(fastsock.recvall, c, 10)
    check(msg:match("another receive is in progress"), "a live receiver: %s", msg)
    live:close()
    check(fastsock.recvall(c, 100, 5) == common.stream(30, 0, 100), "after a dropped receiver")
    c:close()
  end

  -- The waiter can be removed: calls block again.
  check(fastsock.setwaiter(nil) == waiter, "setwaiter did not return the old waiter")
  local c = gen("len=100 seed=29")
  check(fastsock.recvall(c, 100) == common.stream(29, 0, 100), "recvall without a waiter")
  c:close()
  print("test_waiter: all checks passed")
end)
