-- fastsock with LuaSocket objects, with and without settimeout: the data is
-- right, the object works as before afterwards, its own buffer is never
-- skipped, and only fastsock's timeout argument bounds a call.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local socket = require "socket"
local fastsock = require "fastsock"

local opts = common.parse_args(arg)

local test, expect_error = common.test, common.expect_error

common.main(opts.server, function(server)

for _, timeout in ipairs { "none", 0, 0.5, 5 } do
  test("recvall, recv_into, sendall with settimeout(" .. timeout .. ")", function()
    local c = common.request(server, "gen,len=3000000,seed=21")
    if timeout ~= "none" then c:settimeout(timeout) end
    local head = fastsock.recvall(c, 1000000)
    assert(head == common.stream(21, 0, 1000000), "recvall data")
    local b = fastsock.buffer(2000000)
    local n = 0
    while n < #b do
      local got = assert(fastsock.recv_into(c, b, #b - n, n + 1, 5))
      assert(math.type(got) == "integer" and got > 0)
      n = n + got
    end
    assert(b:tostring() == common.stream(21, 1000000, 2000000), "recv_into data")
    -- The stream is over: LuaSocket sees that, with its own conventions.
    c:settimeout(5)
    local rest, err = c:receive(1)
    assert(rest == nil and err == "closed", tostring(err))
    c:close()

    c = common.request(server, "sink,seed=22")
    if timeout ~= "none" then c:settimeout(timeout) end
    local data = common.stream(22, 0, 5000000)
    local last = fastsock.sendall(c, data)
    assert(math.type(last) == "integer" and last == #data)
    local got, match = common.sink_answer(c)
    assert(got == #data and match == got)
    c:close()
  end)
end

test("the object behaves as before: non-blocking, LuaSocket's timeout", function()
  local c = common.request(server, "gen,len=10,seed=23,stall=5,stall_ms=3000")
  c:settimeout(0.05)
  assert(fastsock.recvall(c, 5) == common.stream(23, 0, 5))
  local t0 = socket.gettime()
  local data, err = c:receive(1)
  local waited = socket.gettime() - t0
  assert(data == nil and err == "timeout", tostring(err))
  assert(waited < 1, "LuaSocket's own timeout no longer held")
  c:close()
end)

test("LuaSocket's timeout does not bound fastsock; the argument does", function()
  local c = common.request(server, "gen,len=6000,seed=24,trickle=1000:60")
  c:settimeout(0.01)
  -- ~0.3 s of trickle: far beyond the object's 10 ms, and no argument given.
  assert(fastsock.recvall(c, 6000) == common.stream(24, 0, 6000))
  c:close()
  c = common.request(server, "gen,len=100,seed=25,stall=40,stall_ms=3000")
  local t0 = socket.gettime()
  local data, err, partial = fastsock.recvall(c, 100, 0.2)
  local waited = socket.gettime() - t0
  assert(data == nil and err == "timeout" and partial == common.stream(25, 0, 40))
  assert(waited >= 0.19 and waited < 1.5, "waited " .. waited)
  c:close()
end)

test("timeout 0 never waits (event loops)", function()
  local c = common.request(server, "gen,len=10,seed=26,stall=0,stall_ms=3000")
  local b = fastsock.buffer(16)
  local t0 = socket.gettime()
  local n, err, count = fastsock.recv_into(c, b, nil, nil, 0)
  assert(n == nil and err == "timeout" and count == 0)
  assert(socket.gettime() - t0 < 0.1)
  expect_error("bad argument #3 to '[%w.]*recvall' %(0 %(never wait%)", fastsock.recvall, c, 10, 0)
  expect_error("bad argument #5 to '[%w.]*sendall'", fastsock.sendall, c, "x", 1, 1, 0)
  c:close()

  -- The selectors pattern: send what goes, keep the index, until it would block.
  c = common.request(server, "sink,seed=27,pause_ms=300")
  local data = common.stream(27, 0, 64 * 1024 * 1024)
  local i, calls = 1, 0
  t0 = socket.gettime()
  while true do
    local last, e, partial = fastsock.send(c, data, i, nil, 0)
    calls = calls + 1
    if not last then
      assert(e == "timeout" and partial == i - 1, tostring(e))
      break
    end
    i = last + 1
  end
  assert(socket.gettime() - t0 < 0.25, "a send with timeout 0 waited")
  assert(i - 1 < #data, "the slow sink took everything")
  local got, match = common.sink_answer(c)
  assert(got == i - 1 and match == got, "sink got " .. tostring(got) .. ", sent " .. (i - 1))
  c:close()
end)

test("unread data in LuaSocket's buffer is never skipped", function()
  local c = common.request(server, "gen,len=200000,seed=28")
  socket.sleep(0.05)
  assert(c:receive(10) == common.stream(28, 0, 10))
  assert(c:dirty(), "LuaSocket read ahead nothing; the test needs it to")
  expect_error("bad argument #1 to '[%w.]*recvall' %(.*sock:dirty", fastsock.recvall, c, 10)
  expect_error("sock:dirty", fastsock.recv_into, c, fastsock.buffer(1))
  expect_error("sock:dirty", fastsock.recvall_into, c, fastsock.buffer(1))
  local taken = 10
  while c:dirty() do
    assert(c:receive(1))
    taken = taken + 1
  end
  assert(fastsock.recvall(c, 200000 - taken) == common.stream(28, taken, 200000 - taken))
  c:close()

  -- Sending is unaffected by unread input.
  c = common.request(server, "echo")
  assert(c:send("abc"))
  assert(c:receive(1) == "a")
  assert(fastsock.sendall(c, "xyz") == 3)
  assert(c:receive(5) == "bcxyz")
  c:close()
end)

test("what a socket argument may be", function()
  local c = common.request(server, "gen,len=8,seed=29")
  assert(math.type(c:getfd()) == "float", "LuaSocket changed: getfd() used to return a float")
  assert(fastsock.recvall(math.tointeger(c:getfd()), 4) == common.stream(29, 0, 4))
  assert(fastsock.recvall(c:getfd(), 4) == common.stream(29, 4, 4)) -- 3.0 is an integer
  expect_error("bad argument #1 to '[%w.]*recvall' %(not a file descriptor%)", fastsock.recvall, 3.5, 1)
  expect_error("bad argument #1 to '[%w.]*recvall' %(not a file descriptor%)", fastsock.recvall, -1, 1)
  expect_error("bad argument #1 .*not an open file descriptor", fastsock.recvall, 1000000, 1)
  c:close()
  expect_error("bad argument #1 to '[%w.]*recvall' %(socket is closed%)", fastsock.recvall, c, 1)
  for _, wrong in ipairs { "3", {}, true, print, fastsock.buffer(1) } do
    expect_error("bad argument #1 to '[%w.]*sendall' %(socket", fastsock.sendall, wrong, "x")
  end
  expect_error("bad argument #1 to '[%w.]*sendall' %(socket", fastsock.sendall, nil, "x")
  local f = io.tmpfile()
  expect_error("bad argument #1 to '[%w.]*sendall' %(not a socket%)", fastsock.sendall, f, "x")
  f:close()
  expect_error("bad argument #1 to '[%w.]*sendall' %(file handle is closed%)", fastsock.sendall, f, "x")
  -- An unconnected socket: the system's message, as LuaSocket gives it.
  local t = socket.tcp4()
  local data, err, partial = fastsock.recvall(t, 1, 1)
  assert(data == nil and err == "Transport endpoint is not connected" and partial == "", tostring(err))
  t:close()
  expect_error("bad argument #2 to '[%w.]*sendall' %(string or fastsock.buffer expected", fastsock.sendall,
               socket.tcp4(), {})

  -- fastsock remembers the class of the last socket it asked getfd() of;
  -- other kinds of argument after one are still told apart.
  local e = common.request(server, "echo")
  assert(fastsock.sendall(e, "ab") == 2)
  expect_error("bad argument #1 to '[%w.]*sendall' %(socket", fastsock.sendall, fastsock.buffer(1), "x")
  f = io.tmpfile()
  expect_error("bad argument #1 to '[%w.]*sendall' %(not a socket%)", fastsock.sendall, f, "x")
  f:close()
  t = socket.tcp4()
  assert(select(2, fastsock.sendall(t, "x")) ~= nil, "an unconnected socket sent")
  t:close()
  assert(fastsock.sendall(e, "cd") == 2)
  assert(fastsock.recvall(e, 4) == "abcd")
  e:close()
  expect_error("bad argument #1 to '[%w.]*sendall' %(socket is closed%)", fastsock.sendall, e, "x")
end)

test("sendfile: handles and paths", function()
  local path = os.tmpname()
  local data = common.stream(30, 0, 300000)
  local w = assert(io.open(path, "wb"))
  w:write(data)
  w:close()
  -- A handle: stdio's buffer is flushed first, the position ends after the data.
  local h = assert(io.open(path, "r+b"))
  h:seek("set", 5)
  h:write("\0") -- still in stdio's buffer
  local c = common.request(server, "sink,seed=30,off=4")
  local sent = fastsock.sendfile(c, h, 4)
  assert(math.type(sent) == "integer" and sent == #data - 4)
  local got, match = common.sink_answer(c)
  assert(got == sent and match == 1, "the flushed byte did not go: match " .. tostring(match))
  assert(h:seek("cur") == #data)
  h:seek("set", 5)
  h:write(data:sub(6, 6))
  h:seek("set", 0)
  assert(h:read(3) == data:sub(1, 3)) -- stdio now holds read-ahead; offsets still rule
  c:close()
  c = common.request(server, "sink,seed=30,off=100")
  assert(fastsock.sendfile(c, h, 100, 1000) == 1000)
  assert(h:seek("cur") == 1100)
  got, match = common.sink_answer(c)
  assert(got == 1000 and match == 1000)
  c:close()
  h:close()
  -- A path, and a missing one.
  c = common.request(server, "sink,seed=30")
  assert(fastsock.sendfile(c, path) == #data)
  got, match = common.sink_answer(c)
  assert(got == #data and match == got)
  c:close()
  c = common.request(server, "sink,seed=30")
  local r, err, n = fastsock.sendfile(c, path .. ".missing")
  assert(r == nil and err:match("No such file") and n == 0, tostring(err))
  c:close()
  -- A pipe whose read-ahead stdio holds would lose bytes: refused.
  local p = assert(io.popen("cat " .. path .. " 2>/dev/null", "r"))
  assert(p:read(1) == data:sub(1, 1))
  c = common.request(server, "sink,seed=30")
  expect_error("bad argument #2 .*buffered input", fastsock.sendfile, c, p)
  p:close()
  expect_error("bad argument #2 .*file handle is closed", fastsock.sendfile, c, p)
  expect_error("bad argument #3 .*negative offset", fastsock.sendfile, c, path, -1)
  expect_error("bad argument #4 .*negative count", fastsock.sendfile, c, path, 0, -1)
  expect_error("bad argument #2 .*file handle, fd or path expected", fastsock.sendfile, c, {})
  c:close()
  os.remove(path)
end)

print("all LuaSocket tests passed")
end)
