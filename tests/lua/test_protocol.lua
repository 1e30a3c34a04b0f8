-- The protocol calls (issue 17) beyond the conformance cases: the reader's
-- edges (a delimiter split across receives, a retry after a timeout or a
-- too-long line, the look-ahead handed to a body) also under cqueues, where
-- readuntil yields; sendallv of mixed pieces; recvfile into io handles that
-- hold buffered writes; find and split at their edges.
--
--   lua5.4 test_protocol.lua --server PATH
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local socket = require "socket"
local cqueues = require "cqueues"
local fastsock = require "fastsock"

local opts = common.parse_args(arg)

local function check(cond, ...)
  if not cond then error(string.format(...), 2) end
end

local function check_fail(what, want_err, want_partial, ok, err, partial)
  check(ok == nil and err == want_err and partial == want_partial,
        "%s: got %s, %s, %s; expected nil, %s, %s", what, tostring(ok), tostring(err),
        tostring(partial), want_err, tostring(want_partial))
end

local function reader_edges(server)
  -- The echo server sends back what we send, so the test decides where
  -- each receive ends.
  local c = common.request(server, "echo")
  local r = fastsock.reader(c)
  check(r:buffered() == 0, "a new reader holds nothing")
  assert(c:send("ab\r"))
  socket.sleep(0.05)
  check_fail("half a delimiter", "timeout", "", r:readuntil(nil, nil, 0))
  check(r:buffered() == 3, "the bytes stay in the reader: %d", r:buffered())
  assert(c:send("\nxyz"))
  check(r:readuntil() == "ab\r\n", "a delimiter split across two receives")
  check(r:buffered() == 3, "the look-ahead after the line: %d", r:buffered())
  -- A body longer than the look-ahead: its first bytes come from it.
  assert(c:send("0123456789"))
  check(r:recvall(8) == "xyz01234", "the body starts with the look-ahead")
  local buf = fastsock.buffer(12):fill(0xA5)
  check(r:recvall_into(buf, 5, 3) == 5, "recvall_into the rest")
  check(buf:tostring() == "\xA5\xA556789\xA5\xA5\xA5\xA5\xA5", "recvall_into wrote %q", buf:tostring())
  check(common.raises(r.recvall_into, r, buf, 20):match("bad argument #3"), "a count beyond the buffer")

  -- Too long: nothing consumed, a larger max then finds the line.
  assert(c:send("a long line\n"))
  socket.sleep(0.05)
  check_fail("too long", "too long", "", r:readuntil("\n", 5))
  check(r:readuntil("\n", 100) == "a long line\n", "the line after a too-long answer")
  check(common.raises(r.readuntil, r, ""):match("empty delimiter"), "an empty delimiter")
  check(common.raises(r.readuntil, r, "\r\n", 1):match("shorter than the delimiter"), "max < #delim")

  -- A timeout hands out nothing; the next call goes on.
  assert(c:send("part"))
  local t0 = socket.gettime()
  check_fail("timeout", "timeout", "", r:readuntil("\n", 100, 0.2))
  check(socket.gettime() - t0 >= 0.19, "the timeout bounded the wait")
  assert(c:send("ial\n"))
  check(r:readuntil("\n") == "partial\n", "the line after a timeout")

  -- End of stream: the partial line is handed out.
  assert(c:send("tail"))
  c:shutdown("send")
  check_fail("end of stream", "closed", "tail", r:readuntil())
  check_fail("after the end", "closed", "", r:readuntil())
  r:close()
  r:close()
  check(common.raises(r.buffered, r):match("closed"), "a closed reader")
  c:close()

  -- A LuaSocket object that holds read-ahead is refused; a closed one too.
  c = common.request(server, "gen len=100 seed=3")
  assert(c:receive(1))
  check(common.raises(fastsock.reader, c):match("unread data"), "a dirty socket")
  local r2 = fastsock.reader(common.request(server, "echo"))
  c:close()
  do
    local c3 = common.request(server, "gen len=100 seed=3")
    local r3 <close> = fastsock.reader(c3)
    c3:close()
    check(common.raises(r3.readuntil, r3):match("socket has been closed"), "a closed socket")
  end
  r2:close()

  -- RESP: header and body from one receive, and the next reply after it.
  c = common.request(server, "resp len=1000 seed=5")
  r = fastsock.reader(c)
  assert(c:send("GET a\r\nGET b\r\n"))
  for _ = 1, 2 do
    check(r:readuntil() == "$1000\r\n", "RESP header")
    check(r:recvall(1002) == common.stream(5, 0, 1000) .. "\r\n", "RESP body")
  end
  check(r:buffered() == 0, "nothing left over")
  r:close()
  c:close()
end

local function reader_under_cqueues(server)
  common.under_cqueues(function(cq, beats)
    -- The echo server sends back what another coroutine sends, later:
    -- readuntil waits for it, yielding.
    local c = common.request(server, "echo")
    local r = fastsock.reader(c)
    cq:wrap(function()
      cqueues.sleep(0.05)
      assert(c:send(("x"):rep(50000)))
      cqueues.sleep(0.05)
      assert(c:send("\r\n" .. ("y"):rep(50000)))
    end)
    local before = beats()
    local line = assert(r:readuntil("\r\n", 100000))
    check(line == ("x"):rep(50000) .. "\r\n", "the line under cqueues")
    check(beats() - before >= 5, "readuntil let only %d beats through", beats() - before)
    -- The rest, from the look-ahead and then stepped.
    local body = assert(r:recvall(50000))
    check(body == ("y"):rep(50000), "recvall under cqueues")
    check(r:buffered() == 0, "the look-ahead went into the body")
    r:close()
    c:close()

    -- A timeout keeps the bytes; recvall_into after it.
    c = common.request(server, "gen len=1000 seed=10 trickle=500:300")
    r = fastsock.reader(c)
    check_fail("timeout under cqueues", "timeout", "", r:readuntil("\0\1\2\3\4\5", 1000, 0.1))
    check(r:buffered() == 500, "the reader kept %d bytes", r:buffered())
    local buf = fastsock.buffer(1000)
    before = beats()
    check(r:recvall_into(buf) == 1000, "recvall_into under cqueues")
    check(beats() - before >= 5, "recvall_into let only %d beats through", beats() - before)
    check(buf:tostring() == common.stream(10, 0, 1000), "recvall_into's bytes")
    r:close()
    c:close()
  end)

  -- A controller dropped while its coroutine waits in readuntil (stepped
  -- from the main thread: one stepped from another controller's coroutine
  -- stays reachable from there): once collected, the socket's receive side
  -- is free again.
  local c = common.request(server, "gen len=100 seed=11 stall=0 stall_ms=300")
  r = fastsock.reader(c)
  local function start()
    local dropped = cqueues.new()
    dropped:wrap(function() r:readuntil() end)
    assert(dropped:step(0))
    check(common.raises(r.readuntil, r):match("another receive"), "two readuntils at once")
  end
  start()
  collectgarbage()
  collectgarbage()
  check_fail("after the dropped one", "closed", "", r:readuntil("\n", 1000))
  r:close()
  c:close()
end

-- Under a waiter (fastsock.setwaiter): readuntil hands its wait to it.
local function reader_under_waiter(server)
  local c = common.request(server, "echo")
  local r = fastsock.reader(c)
  fastsock.setwaiter(function(fd, events, deadline) coroutine.yield(fd, events, deadline) end)
  local co = coroutine.create(function() return r:readuntil("\n", 100, 5) end)
  local ok, fd, events, deadline = coroutine.resume(co)
  check(ok and coroutine.status(co) == "suspended", "readuntil did not yield: %s", tostring(fd))
  check(fd == math.tointeger(c:getfd()) and events == "r" and deadline > fastsock.monotime(),
        "the waiter got %s %s %s", tostring(fd), tostring(events), tostring(deadline))
  assert(c:send("hel"))
  socket.select({ c }, nil, 2)
  ok, fd = coroutine.resume(co)
  check(ok and coroutine.status(co) == "suspended", "half a line: it waits again")
  assert(c:send("lo\n"))
  socket.select({ c }, nil, 2)
  local line
  ok, line = coroutine.resume(co)
  check(ok and line == "hello\n", "the line through the waiter: %s", tostring(line))
  fastsock.setwaiter(nil)
  r:close()
  c:close()
end

local function sendallv_pieces(server)
  local data = common.stream(20, 0, 100000)
  local buf = fastsock.buffer(data:sub(1001, 2000))
  local pieces = {
    data:sub(1, 500),                -- a string
    { data, 501, 1000 },             -- a range
    buf,                             -- a buffer
    { buf, 5000, -1 },               -- an empty range (i past the end)
    { data, 2001, 2000 },            -- an empty range (j < i)
    { data, -98000, 3000 },          -- negative i: from the end
    { data, 3001 },                  -- j absent: to the end
    "",
  }
  local c = common.request(server, "sink seed=20")
  check(fastsock.sendallv(c, pieces) == 100000, "mixed pieces")
  local got, match = common.sink_answer(c)
  check(got == 100000 and match == 100000, "the sink got %s (%s matching)", got, match)
  c:close()

  -- 1000 pieces: more than the stack holds, more than one sendmsg batch.
  local many = {}
  for k = 1, 1000 do many[k] = { data, (k - 1) * 100 + 1, k * 100 } end
  c = common.request(server, "sink seed=20")
  check(fastsock.sendallv(c, many, 10) == 100000, "1000 pieces")
  got, match = common.sink_answer(c)
  check(got == 100000 and match == 100000, "the sink got %s (%s matching)", got, match)
  c:close()

  -- Bad pieces are refused before any byte moves.
  local closed = fastsock.buffer(10)
  closed:close()
  for what, bad in pairs {
    number = { "ab", 12 },
    closed_buffer = { "ab", closed },
    bad_index = { "ab", { data, 1.5 } },
    bad_data = { { 42, 1, 2 } },
  } do
    c = common.request(server, "sink seed=20")
    check(common.raises(fastsock.sendallv, c, bad):match("bad argument #2"), "%s piece", what)
    got = common.sink_answer(c)
    check(got == 0, "%s: the sink got %s", what, got)
    c:close()
  end

  -- A partial send answers a count.
  c = common.request(server, "sink seed=21 pause_ms=1000")
  local big = common.stream(21, 0, 8 << 20)
  local ok, err, sent = fastsock.sendallv(c, { big, big }, 0.2)
  check(ok == nil and err == "timeout" and math.type(sent) == "integer" and sent > 0 and sent < 16 << 20,
        "a timeout's partial count: %s %s %s", tostring(ok), tostring(err), tostring(sent))
  got = common.sink_answer(c)
  check(got == sent, "the sink got %s of %s", got, sent)
  c:close()
  buf:close()
end

local function recvfile_handles(server)
  local path = os.tmpname()
  -- Buffered writes go first; the position ends after the bytes received.
  local f = assert(io.open(path, "w+b"))
  f:write("header:")
  local c = common.request(server, "gen len=100000 seed=30")
  check(fastsock.recvfile(c, f, 100000) == 100000, "recvfile after buffered writes")
  check(f:seek("cur") == 100007, "the position after: %s", f:seek("cur"))
  f:write(":trailer")
  f:close()
  c:close()
  local all = assert(io.open(path, "rb")):read("a")
  check(all == "header:" .. common.stream(30, 0, 100000) .. ":trailer", "the file's bytes")

  -- An offset writes there and leaves the position after.
  f = assert(io.open(path, "r+b"))
  c = common.request(server, "gen len=10 seed=31")
  check(fastsock.recvfile(c, f, 10, 3) == 10, "recvfile at an offset")
  check(f:seek("cur") == 13, "the position after an offset")
  f:close()
  c:close()
  all = assert(io.open(path, "rb")):read("a")
  check(all:sub(1, 3) == "hea" and all:sub(4, 13) == common.stream(31, 0, 10)
        and all:sub(14, 107) == common.stream(30, 6, 94), "bytes around the offset")

  -- Appending: after the buffered write, at the end; an offset is refused.
  f = assert(io.open(path, "ab"))
  f:write("+")
  c = common.request(server, "gen len=5 seed=32")
  check(common.raises(fastsock.recvfile, c, f, 5, 0):match("bad argument #4"), "an offset when appending")
  check(fastsock.recvfile(c, f, 5) == 5, "recvfile appending")
  f:close()
  c:close()
  all = assert(io.open(path, "rb")):read("a")
  check(all:sub(-6) == "+" .. common.stream(32, 0, 5), "the appended bytes")

  -- Not open for writing: nothing read from the socket.
  f = assert(io.open(path, "rb"))
  c = common.request(server, "gen len=5 seed=33")
  check_fail("a read-only file", "file not open for writing", 0, fastsock.recvfile(c, f, 5))
  check(c:receive(5) == common.stream(33, 0, 5), "the socket kept its bytes")
  f:close()
  check(common.raises(fastsock.recvfile, c, f, 5):match("closed"), "a closed handle")
  check(common.raises(fastsock.recvfile, c, path, 5):match("bad argument #2"), "a path")
  c:close()

  -- End of stream: what came stays written.
  f = assert(io.open(path, "w+b"))
  c = common.request(server, "gen len=1000 seed=34 close=700")
  check_fail("end of stream", "closed", 700, fastsock.recvfile(c, f, 1000))
  check(f:seek("cur") == 700, "the position after a partial")
  f:close()
  c:close()
  check(assert(io.open(path, "rb")):read("a") == common.stream(34, 0, 700), "the partial's bytes")
  os.remove(path)
end

-- sendallv and recvfile under cqueues: they yield while they wait.
local function calls_under_cqueues(server)
  common.under_cqueues(function(cq, beats)
    -- A slow sink: the pieces (a buffer, a range of a string) wait for it.
    local data = common.stream(40, 0, 8 << 20)
    local buf = fastsock.buffer(data:sub(1, 1 << 20))
    local c = common.request(server, "sink seed=40 pause_ms=300")
    local before = beats()
    check(fastsock.sendallv(c, { buf, { data, (1 << 20) + 1 } }) == 8 << 20, "sendallv under cqueues")
    check(beats() - before >= 5, "sendallv let only %d beats through", beats() - before)
    local got, match = common.sink_answer(c)
    check(got == 8 << 20 and match == got, "the sink got %s (%s matching)", got, match)
    c:close()
    buf:close() -- unpinned once the call ended

    c = common.request(server, "sink seed=40 pause_ms=1500")
    local t0 = cqueues.monotime()
    local sent, e, count = fastsock.sendallv(c, { data, data }, 0.3)
    check(sent == nil and e == "timeout" and count > 0 and count < 16 << 20,
          "a timeout under cqueues: %s %s %s", tostring(sent), tostring(e), tostring(count))
    check(cqueues.monotime() - t0 < 1, "the timeout bounded the call")
    got = common.sink_answer(c)
    check(got == count, "the sink got %s of %s", got, count)
    c:close()

    -- A trickled stream into a file that holds a buffered write.
    local path = os.tmpname()
    local f = assert(io.open(path, "w+b"))
    f:write("hdr")
    c = common.request(server, "gen len=3000000 seed=41 trickle=1000000:100")
    before = beats()
    check(fastsock.recvfile(c, f, 3000000) == 3000000, "recvfile under cqueues")
    check(beats() - before >= 5, "recvfile let only %d beats through", beats() - before)
    check(f:seek("cur") == 3000003, "the position after: %s", f:seek("cur"))
    f:close()
    c:close()
    check(assert(io.open(path, "rb")):read("a") == "hdr" .. common.stream(41, 0, 3000000),
          "the file's bytes")
    -- End of stream: what came stays written, and counts.
    f = assert(io.open(path, "w+b"))
    c = common.request(server, "gen len=5000 seed=42 close=3000")
    check_fail("recvfile's end of stream", "closed", 3000, fastsock.recvfile(c, f, 5000))
    check(f:seek("cur") == 3000, "the position after a partial")
    f:close()
    c:close()
    os.remove(path)
  end)

  -- A controller dropped while its coroutine waits in sendallv: the buffer
  -- is pinned meanwhile; once collected, unpinned, and the socket's send
  -- side free again.
  local c = common.request(server, "sink seed=43 pause_ms=300")
  local data = common.stream(43, 0, 4 << 20)
  local buf = fastsock.buffer(data)
  local function start()
    local dropped = cqueues.new()
    dropped:wrap(function() fastsock.sendallv(c, { buf }) end)
    assert(dropped:step(0))
    check(common.raises(buf.close, buf):match("cannot close"), "the waiting sendallv pins its buffer")
    check(common.raises(fastsock.sendallv, c, { "x" }):match("another send"), "two sends at once")
  end
  start()
  collectgarbage()
  collectgarbage()
  buf:close()
  c:close()
end

local function find_split_edges()
  local s = "ab\r\nc\r\n\r\nd"
  local b = fastsock.buffer(s)
  for _, case in ipairs {
    { "\r\n", nil }, { "\r\n", 4 }, { "\r\n", -3 }, { "\r\n", -100 }, { "d", 11 }, { "d", 12 },
    { "d", 13 }, { "abc", 1 }, { s, 1 }, { s .. "x", 1 }, { "\n\r", 2 },
  } do
    local i, j = string.find(s, case[1], case[2], true)
    local bi, bj = b:find(case[1], case[2])
    local si, sj = fastsock.find(s, case[1], case[2])
    check(bi == i and bj == j and si == i and sj == j, "find(%q, %s): %s %s, string.find %s %s",
          case[1], tostring(case[2]), tostring(bi), tostring(bj), tostring(i), tostring(j))
  end
  check(common.raises(b.find, b, "x", 0):match("bad argument #3"), "init 0")
  check(common.raises(b.find, b, ""):match("bad argument #2"), "an empty needle")
  check(common.raises(fastsock.find, 12, "1"):match("bad argument #1"), "a number as data")

  local t = b:split("\r\n")
  check(#t == 8, "4 fields, two positions each: %d", #t)
  local fields = {}
  for k = 1, #t, 2 do fields[#fields + 1] = b:tostring(t[k], t[k + 1]) end
  check(table.concat(fields, "|") == "ab|c||d", "the fields: %s", table.concat(fields, "|"))
  -- Positions are sendallv pieces as they are.
  check(t[5] == t[6] + 1, "an empty field has j = i - 1")
  local e = fastsock.split("\n", "\n")
  check(#e == 4 and e[1] == 1 and e[2] == 0 and e[3] == 2 and e[4] == 1, "a lone separator")
  check(common.raises(b.split, b, ""):match("bad argument #2"), "an empty separator")
  -- The buffer holds a copy: changing it leaves the string alone.
  b:fill(0x2A, 1, 2)
  check(b:tostring(1, 3) == "**\r" and s:sub(1, 2) == "ab", "fastsock.buffer(string) copies")
  b:close()
  check(common.raises(b.find, b, "x"):match("closed"), "a closed buffer")
end

common.main(opts.server, function(server)
  reader_edges(server)
  reader_under_cqueues(server)
  reader_under_waiter(server)
  calls_under_cqueues(server)
  sendallv_pieces(server)
  recvfile_handles(server)
  find_split_edges()
  print("test_protocol: all checks passed")
end)
