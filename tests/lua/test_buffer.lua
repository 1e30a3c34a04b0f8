-- fastsock.buffer: reads like string.sub/string.byte, never shows bytes nobody
-- wrote, costs no pass over a large fresh buffer, refuses receive ranges that
-- don't fit, and goes back to the system with the garbage collector.
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local fastsock = require "fastsock"

local opts = common.parse_args(arg)
local MiB = 1024 * 1024

local test, expect_error = common.test, common.expect_error

common.main(opts.server, function(server)

test("sizes and zeros", function()
  assert(#fastsock.buffer(0) == 0 and fastsock.buffer(0):tostring() == "")
  local b = fastsock.buffer(10)
  assert(math.type(#b) == "integer" and #b == 10)
  assert(b:tostring() == string.rep("\0", 10))
  for _, size in ipairs { 64 * 1024, 64 * 1024 + 1, 3 * MiB + 5 } do
    b = fastsock.buffer(size)
    assert(#b == size and b:byte(1) == 0 and b:byte(-1) == 0 and b:byte(size // 2) == 0)
    assert(b:tostring(size - 4095) == string.rep("\0", 4096))
  end
  assert(tostring(b):match("^fastsock.buffer %(3145733 bytes%)"))
end)

test("reads like string.sub and string.byte", function()
  local s = "the quick brown fox"
  local b = fastsock.buffer(#s)
  for k = 1, #s do b:fill(s:byte(k), k, k) end
  assert(b:tostring() == s)
  for i = -25, 25 do
    assert(b:tostring(i) == s:sub(i), i)
    assert(select("#", b:byte(i)) == select("#", s:byte(i)) and b:byte(i) == s:byte(i), i)
    for j = -25, 25 do
      assert(b:tostring(i, j) == s:sub(i, j), i .. "," .. j)
      local got, want = { b:byte(i, j) }, { s:byte(i, j) }
      assert(#got == #want and table.concat(got, ",") == table.concat(want, ","), i .. "," .. j)
    end
  end
  assert(b:fill(0x41, 3, -3) == b)
  assert(b:tostring() == "thAAAAAAAAAAAAAAAox")
  b:fill(0x42, 100, 200) -- clamps to nothing, like string.sub
  assert(b:tostring() == "thAAAAAAAAAAAAAAAox")
end)

test("bad arguments name themselves", function()
  expect_error("bad argument #1 to '[%w.]*buffer' %(negative size%)", fastsock.buffer, -1)
  expect_error("bad argument #1 to '[%w.]*buffer'.*integer", fastsock.buffer, 1.5)
  expect_error("bad argument #1 to '[%w.]*buffer'", fastsock.buffer, {})
  -- A string is the buffer's bytes (a copy), not a size.
  assert(fastsock.buffer("10"):tostring() == "10" and #fastsock.buffer("") == 0)
  expect_error("cannot allocate", fastsock.buffer, 1 << 60)
  local b = fastsock.buffer(4)
  expect_error("byte value out of range", b.fill, b, 256)
  expect_error("byte value out of range", b.fill, b, -1)
  expect_error("fastsock.buffer expected", b.tostring, "not a buffer")
  expect_error("fastsock.buffer expected", b.byte, io.stdout)
  assert(getmetatable(b) == "fastsock.buffer", "the metatable is protected")
end)

test("a fresh large buffer costs no pass over its memory", function()
  collectgarbage()
  local before = common.rss()
  local b = fastsock.buffer(256 * MiB)
  local grown = common.rss() - before
  assert(grown < 16 * MiB, string.format("256 MiB buffer made RSS grow by %d MiB", grown // MiB))
  assert(b:byte(128 * MiB) == 0)
end)

test("receive ranges must fit the buffer", function()
  local c = common.request(server, "gen,len=100,seed=5")
  local b = fastsock.buffer(10):fill(0xA5)
  expect_error("bad argument #3 to '[%w.]*recv_into'", fastsock.recv_into, c, b, 11)
  expect_error("bad argument #3 to '[%w.]*recv_into'", fastsock.recv_into, c, b, 1, 11)
  expect_error("bad argument #4 to '[%w.]*recv_into'", fastsock.recv_into, c, b, 0, 12)
  expect_error("bad argument #4 to '[%w.]*recv_into'", fastsock.recv_into, c, b, 1, 0)
  expect_error("bad argument #4 to '[%w.]*recv_into'", fastsock.recv_into, c, b, 1, -1)
  expect_error("bad argument #3 to '[%w.]*recv_into' %(negative count%)", fastsock.recv_into, c, b, -1)
  expect_error("bad argument #3 to '[%w.]*recvall_into'", fastsock.recvall_into, c, b, 6, 6)
  expect_error("bad argument #4 to '[%w.]*recvall_into'", fastsock.recvall_into, c, b, 0, 12)
  expect_error("bad argument #2 to '[%w.]*recv_into' %(fastsock.buffer expected, got string%)",
               fastsock.recv_into, c, "strings are immutable")
  assert(b:tostring() == string.rep("\xA5", 10), "a refused receive wrote")
  -- Empty ranges at the very end are fine.
  assert(fastsock.recvall_into(c, b, 0, 11) == 0)
  assert(fastsock.recvall_into(c, b, nil, 11) == 0)
  -- Nothing was consumed by the refusals.
  assert(fastsock.recvall_into(c, b, 4, 7) == 4)
  assert(b:tostring() == string.rep("\xA5", 6) .. common.stream(5, 0, 4))
  assert(fastsock.recvall_into(c, b, nil, 3) == 8)
  assert(b:tostring(3) == common.stream(5, 4, 8))
  c:close()
end)

test("a buffer is data for the sends", function()
  local b = fastsock.buffer(100000)
  local c = common.request(server, "gen,len=100000,seed=9")
  assert(fastsock.recvall_into(c, b) == 100000)
  c:close()
  c = common.request(server, "sink,seed=9,off=1")
  assert(fastsock.sendall(c, b, 2, -2) == 99999)
  local got, match = common.sink_answer(c)
  assert(got == 99998 and match == got, "sink got " .. tostring(got))
  c:close()
end)

test("a closed buffer refuses every use", function()
  local keep
  do
    local b <close> = fastsock.buffer(4 * MiB)
    keep = b
  end
  expect_error("buffer has been closed", function() return #keep end)
  expect_error("buffer has been closed", keep.tostring, keep)
  expect_error("buffer has been closed", keep.fill, keep, 1)
  local c = common.request(server, "sink,seed=1")
  expect_error("bad argument #2 to '[%w.]*sendall' %(buffer has been closed%)", fastsock.sendall, c, keep)
  c:close()
  assert(tostring(keep):match("closed"))
  keep = nil
  collectgarbage() -- __gc after __close: the mapping must not go twice
end)

-- /proc/self/maps lines: one per mapping, so leaked buffers show.
local function mappings()
  local n = 0
  for _ in io.lines("/proc/self/maps") do n = n + 1 end
  return n
end

test("dropped buffers go back to the system", function()
  collectgarbage()
  collectgarbage()
  local rss0, lua0, maps0 = common.rss(), collectgarbage("count"), mappings()
  local peak = 0
  for _ = 1, 200 do
    local b = fastsock.buffer(16 * MiB)
    b:fill(1) -- every page resident
    peak = math.max(peak, common.rss() - rss0)
  end
  for _ = 1, 300 do
    local b = fastsock.buffer(256 * MiB) -- untouched: only the mapping would pile up
    assert(b:byte(1) == 0)
  end
  collectgarbage()
  collectgarbage()
  local lua_growth = collectgarbage("count") - lua0
  local maps_growth = mappings() - maps0
  local rss_growth = common.rss() - rss0
  print(string.format("\n  peak RSS above start %d MiB, after %d MiB; Lua heap %+.0f KiB; mappings %+d",
                      peak // MiB, rss_growth // MiB, lua_growth, maps_growth))
  -- 200 x 16 MiB went through; without collection that is 3.2 GB.
  assert(peak < 6 * 16 * MiB, "RSS piled up")
  assert(rss_growth < 4 * MiB, "RSS did not come back")
  assert(lua_growth < 256, "the Lua heap grew")
  assert(maps_growth < 4, "mappings leaked")
end)

print("all buffer tests passed")
end)
