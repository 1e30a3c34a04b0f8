-- fastsock inside cqueues (issue 15): the calls yield to the controller
-- instead of blocking it, the progressive objects are cqueues pollables, and
-- faults (reset, end of stream, a socket closed by another coroutine, a
-- buffer closed under a suspended transfer, two receives on one socket) end
-- with a clear answer and nothing lost.
--
--   lua5.4 test_cqueues.lua --server PATH
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local cqueues = require "cqueues"
local fastsock = require "fastsock"

local opts = common.parse_args(arg)

local beats -- the running controller's heartbeat count
local function run(body)
  common.under_cqueues(function(cq, counter)
    beats = counter
    return body(cq)
  end)
end

-- Beats of the heartbeat while f runs.
local function beats_during(f)
  local before = beats()
  local r = table.pack(f())
  return beats() - before, table.unpack(r, 1, r.n)
end

-- A call that blocked the controller lets no beat through while it waits;
-- one that yields lets through about one per millisecond, fewer under load.
local MIN_BEATS = 5

local function check(cond, ...)
  if not cond then error(string.format(...), 2) end
end

common.main(opts.server, function(server)
  local function gen(req) return common.request(server, "gen " .. req) end

  run(function(cq)
    assert(select(2, cqueues.running()), "the test body runs as the controller's coroutine")

    -- recvall over a stalled stream: the controller keeps running while the
    -- call waits, and the bytes are whole.
    local c = gen("len=200000 seed=1 trickle=100000:200")
    local b, got = beats_during(function() return fastsock.recvall(c, 200000) end)
    check(got == common.stream(1, 0, 200000), "recvall across a pause: bytes differ")
    check(b >= MIN_BEATS, "recvall blocked the controller during a 200 ms pause: %d heartbeats", b)
    c:close()
    c = gen("len=300000 seed=1 trickle=65536:20")
    b, got = beats_during(function() return fastsock.recvall(c, 300000) end)
    check(got == common.stream(1, 0, 300000), "recvall under cqueues: bytes differ")
    check(b >= MIN_BEATS, "recvall blocked the controller: %d heartbeats in ~100 ms", b)
    c:close()

    -- recvall_into a buffer, at an index, beside the heartbeat.
    local buf = fastsock.buffer(300010):fill(0xA5)
    c = gen("len=300000 seed=2 trickle=65536:20")
    b, got = beats_during(function() return fastsock.recvall_into(c, buf, 300000, 6) end)
    check(got == 300000, "recvall_into returned %s", tostring(got))
    check(buf:tostring(6, 300005) == common.stream(2, 0, 300000), "recvall_into: bytes differ")
    check(buf:tostring(1, 5) == ("\xA5"):rep(5) and buf:tostring(300006) == ("\xA5"):rep(5),
          "recvall_into wrote outside its range")
    check(b >= MIN_BEATS, "recvall_into blocked the controller: %d heartbeats", b)
    c:close()

    -- sendall and sendfile to a paused reader: the heartbeat runs during the
    -- pause, and the sink gets every byte.
    local data16 = common.stream(3, 0, 16 << 20)
    c = common.request(server, "sink seed=3 pause_ms=150")
    b, got = beats_during(function() return fastsock.sendall(c, data16) end)
    check(got == #data16, "sendall returned %s", tostring(got))
    check(b >= MIN_BEATS, "sendall blocked the controller: %d heartbeats", b)
    local n_got, match = common.sink_answer(c)
    check(n_got == #data16 and match == n_got, "sink got %s (%s matching)", n_got, match)
    c:close()

    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(data16)
    f:close()
    f = assert(io.open(path, "rb"))
    c = common.request(server, "sink seed=3 off=100 pause_ms=150")
    b, got = beats_during(function() return fastsock.sendfile(c, f, 100) end)
    check(got == #data16 - 100, "sendfile returned %s", tostring(got))
    check(f:seek("cur") == #data16, "sendfile left the file at %s", f:seek("cur"))
    check(b >= MIN_BEATS, "sendfile blocked the controller: %d heartbeats", b)
    n_got, match = common.sink_answer(c)
    check(n_got == #data16 - 100 and match == n_got, "sink got %s (%s matching)", n_got, match)
    c:close()
    f:close()
    os.remove(path)

    -- recv_into and send wait through the controller too.
    c = gen("len=10 seed=4 stall=0 stall_ms=100")
    local small = fastsock.buffer(10)
    b, got = beats_during(function() return fastsock.recv_into(c, small) end)
    check(got == nil and b >= MIN_BEATS, "recv_into on a silent socket: %s after %d beats", tostring(got), b)
    c:close()
    c = gen("len=10 seed=4 trickle=5:100")
    got = fastsock.recv_into(c, small, nil, nil, 5)
    check(got == 5, "recv_into got %s", tostring(got))
    b, got = beats_during(function() return fastsock.recv_into(c, small, nil, 6, 5) end)
    check(got == 5 and small:tostring() == common.stream(4, 0, 10), "recv_into got %s", tostring(got))
    check(b >= MIN_BEATS, "recv_into blocked the controller: %d heartbeats", b)
    c:close()
    -- send: one call at a time to a paused reader, until one has to wait.
    c = common.request(server, "sink seed=3 pause_ms=200")
    local sent, waited = 0, 0
    while sent < #data16 and waited < MIN_BEATS do
      local last
      waited, last = beats_during(function() return fastsock.send(c, data16, sent + 1, nil, 5) end)
      check(last and last > sent, "send returned %s", tostring(last))
      sent = last
    end
    check(waited >= MIN_BEATS, "no send waited through the controller (%d bytes sent)", sent)
    n_got, match = common.sink_answer(c)
    check(n_got == sent and match == sent, "send: the sink got %s of %d", n_got, sent)
    c:close()

    -- Timeouts: nil, "timeout", partial, while the controller runs.
    c = gen("len=100000 seed=5 stall=12345 stall_ms=2000")
    b, got, err, partial = beats_during(function() return fastsock.recvall(c, 100000, 0.2) end)
    check(got == nil and err == "timeout" and partial == common.stream(5, 0, 12345),
          "recvall timeout: %s %s %s", tostring(got), tostring(err), tostring(partial and #partial))
    check(b >= MIN_BEATS, "the timeout blocked the controller: %d heartbeats", b)
    c:close()

    -- Faults: end of stream and reset mid-transfer keep what came.
    c = gen("len=100000 seed=6 close=54321")
    got, err, partial = fastsock.recvall(c, 100000)
    check(got == nil and err == "closed" and partial == common.stream(6, 0, 54321),
          "EOF mid-transfer: %s %s", tostring(got), tostring(err))
    c:close()
    c = gen("len=100000 seed=6 reset=4321")
    buf = fastsock.buffer(100000)
    got, err, partial = fastsock.recvall_into(c, buf)
    check(got == nil and err == "Connection reset by peer" and partial == 4321
          and buf:tostring(1, 4321) == common.stream(6, 0, 4321),
          "reset mid-transfer: %s %s %s", tostring(got), tostring(err), tostring(partial))
    c:close()

    -- The socket closed by another coroutine (cqueues.cancel, then close,
    -- as cqueues' own sockets close): the waiting call wakes and reports
    -- what it received (the bytes still in the kernel's buffer went with the
    -- socket).
    c = gen("len=1000000 seed=7 stall=600000 stall_ms=3000")
    local closer_ran = false
    cq:wrap(function()
      cqueues.sleep(0.1)
      cqueues.cancel(c:getfd())
      c:close()
      closer_ran = true
    end)
    got, err, partial = fastsock.recvall(c, 1000000, 2)
    check(closer_ran and got == nil and err == "Bad file descriptor" and #partial > 0
          and #partial <= 600000 and partial == common.stream(7, 0, #partial),
          "closed by another coroutine: %s %s %s", tostring(got), tostring(err),
          tostring(partial and #partial))

    -- Two receives on one socket: the second is a clear error, the first
    -- goes on and gets every byte.
    c = gen("len=200000 seed=8 trickle=100000:100")
    local first
    cq:wrap(function() first = fastsock.recvall(c, 200000, 5) or false end)
    cqueues.sleep(0.02)
    local msg = common.raises(fastsock.recvall, c, 10)
    check(msg:match("another receive is in progress"), "second receive: %s", msg)
    msg = common.raises(fastsock.recv_into, c, fastsock.buffer(10))
    check(msg:match("another receive is in progress"), "second recv_into: %s", msg)
    while first == nil do cqueues.sleep(0.01) end
    check(first == common.stream(8, 0, 200000), "the first receive lost bytes")
    c:close()

    -- Full duplex: a send in one coroutine and a receive in another on the
    -- same socket, against the echo server.
    local N = 8 << 20
    local payload = common.stream(9, 0, N)
    c = common.request(server, "echo")
    local echoed
    cq:wrap(function() echoed = fastsock.recvall(c, N, 20) or false end)
    check(fastsock.sendall(c, payload) == N, "full duplex: sendall")
    while echoed == nil do cqueues.sleep(0.01) end
    check(echoed == payload, "full duplex: the echo differs")
    c:close()

    -- A buffer that a suspended transfer uses refuses to close; once the
    -- transfer is over it closes.
    c = gen("len=1000 seed=10 stall=10 stall_ms=3000")
    local pinned = fastsock.buffer(1000)
    cq:wrap(function() fastsock.recvall_into(c, pinned, 1000, 1, 0.3) end)
    cqueues.sleep(0.02)
    msg = common.raises(pinned.close, pinned)
    check(msg:match("cannot close a buffer that a transfer is using"), "close while pinned: %s", msg)
    msg = common.raises(function() local b2 <close> = pinned end)
    check(msg:match("cannot close a buffer"), "<close> while pinned: %s", msg)
    cqueues.sleep(0.4) -- the receive times out and lets go
    pinned:close()
    check(tostring(pinned):match("closed"), "the buffer did not close")
    c:close()

    -- The progressive objects are cqueues pollables.
    c = gen("len=2000000 seed=11 trickle=100000:2")
    local r = fastsock.receiver(c, 2000000)
    check(r:pollfd() == math.tointeger(c:getfd()) and r:events() == "r" and r:timeout() == nil,
          "receiver as a pollable: %s %s %s", r:pollfd(), r:events(), tostring(r:timeout()))
    local polls = 0
    repeat
      local done = r:step()
      if done then
        check(done == common.stream(11, 0, 2000000), "receiver: bytes differ")
        break
      end
      check(cqueues.poll(r, 5) == r, "cqueues.poll did not return the receiver")
      polls = polls + 1
    until false
    check(polls >= 5, "only %d polls for a trickled stream", polls)
    check(r:events() == "", "an ended receiver still wants %s", r:events())
    c:close()

    -- finish() yields to the controller and honours its timeout without
    -- ending the transfer: a later finish completes it.
    c = gen("len=50000 seed=12 trickle=20000:300")
    buf = fastsock.buffer(50000)
    r = fastsock.receiver(c, buf)
    b, got, err, partial = beats_during(function() return r:finish(0.1) end)
    check(got == nil and err == "timeout" and partial == 20000 and b >= MIN_BEATS,
          "finish(0.1): %s %s %s after %d beats", tostring(got), tostring(err), tostring(partial), b)
    got = r:finish(5)
    check(got == 50000 and buf:tostring() == common.stream(12, 0, 50000), "finish: %s", tostring(got))
    c:close()

    -- A sender over a buffer and over a file, polled by cqueues.
    local sbuf = fastsock.buffer(3 << 20)
    local chunk = common.stream(13, 0, 65521)
    -- Fill the buffer through recvall_into, from the stream itself.
    c = gen("len=" .. (3 << 20) .. " seed=13")
    assert(fastsock.recvall_into(c, sbuf) == 3 << 20)
    c:close()
    check(sbuf:tostring(1, 65521) == chunk, "sender buffer set-up")
    c = common.request(server, "sink seed=13 off=5 pause_ms=50")
    local s = fastsock.sender(c, sbuf, 6)
    msg = common.raises(sbuf.close, sbuf)
    check(msg:match("cannot close"), "a sender's buffer closed: %s", msg)
    repeat
      local last = s:step()
      if last then check(last == 3 << 20, "sender returned %s", last) break end
      cqueues.poll(s)
    until false
    n_got, match = common.sink_answer(c)
    check(n_got == (3 << 20) - 5 and match == n_got, "buffer sender: sink got %s", n_got)
    sbuf:close() -- the sender ended: the pin is gone
    c:close()
  end)

  -- A controller dropped while its coroutine waits inside recvall_into:
  -- once collected, the buffer is unpinned and keeps what arrived, and the
  -- socket is free for the rest of the stream.
  do
    local c = gen("len=1000 seed=15 trickle=300:300")
    require("socket").select({ c }, nil, 2)
    require("socket").sleep(0.05) -- the first 300 bytes are all there
    local buf = fastsock.buffer(1000):fill(0xA5)
    local function start()
      local dropped = cqueues.new()
      dropped:wrap(function() fastsock.recvall_into(c, buf) end)
      assert(dropped:step(0))
      check(common.raises(buf.close, buf):match("cannot close a buffer"),
            "the suspended call did not pin the buffer")
    end
    start()
    collectgarbage()
    collectgarbage()
    check(buf:tostring(1, 300) == common.stream(15, 0, 300) and buf:tostring(301) == ("\xA5"):rep(700),
          "the dropped call's buffer")
    buf:close()
    check(fastsock.recvall(c, 700, 5) == common.stream(15, 300, 700), "the rest of the stream")
    c:close()
  end

  -- Outside any controller the calls block as always.
  local c = gen("len=100 seed=14")
  check(fastsock.recvall(c, 100) == common.stream(14, 0, 100), "recvall outside cqueues")
  c:close()
  print("test_cqueues: all checks passed")
end)
