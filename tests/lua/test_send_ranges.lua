-- Sink check of the send ranges: for every i, j below, fastsock's send and
-- sendall put exactly data:sub(i, j) on the wire and return what LuaSocket's
-- own send(data, i, j) returns for the same arguments (the last index sent).
local here = arg[0]:match("^(.*)/") or "."
local common = dofile(here .. "/common.lua")
local fastsock = require "fastsock"

local opts = common.parse_args(arg)
common.main(opts.server, function(server)

local LEN, SEED = 1000, 7
local data = common.stream(SEED, 0, LEN)
local buf = fastsock.buffer(LEN)
-- The same bytes in a buffer, written through the module's own receive.
do
  local c = common.request(server, "gen,len=" .. LEN .. ",seed=" .. SEED)
  assert(fastsock.recvall_into(c, buf) == LEN)
  c:close()
  assert(buf:tostring() == data)
end

local N = nil -- an absent argument
local ranges = {
  { N, N }, { 1, N }, { 2, N }, { 999, N }, { 1000, N }, { 1001, N }, { 1002, N }, { 5000, N },
  { 0, N }, { -1, N }, { -2, N }, { -999, N }, { -1000, N }, { -1001, N }, { -5000, N },
  { N, 0 }, { N, 1 }, { N, 999 }, { N, 1000 }, { N, 1001 }, { N, -1 }, { N, -2 }, { N, -1000 },
  { N, -1001 }, { 1, 1 }, { 5, 4 }, { 5, 5 }, { 3, -3 }, { -3, -1 }, { -3, -5 }, { -5, -3 },
  { 10, 2000 }, { -2000, 2000 }, { 0, 0 }, { 0, 5 }, { 500, 499 }, { 1001, 1001 }, { 2000, 10 },
  { -1, 1 }, { -(1 << 40), 1 << 40 }, { 1 << 40, -(1 << 40) },
}

local function start_of(i) return common.send_start(i, LEN) end

local function sink(i)
  return common.request(server, "sink,seed=" .. SEED .. ",off=" .. (start_of(i) - 1))
end

local failures = 0
local function check(what, i, j, last, want_last, got, match)
  local want = data:sub(i or 1, j or -1)
  local fine = math.type(last) == "integer" and last == want_last and got == #want and match == got
  if not fine then
    failures = failures + 1
    print(string.format("FAIL %s(i=%s, j=%s): returned %s (LuaSocket %s), sink got %s matching %s, want %d",
      what, tostring(i), tostring(j), tostring(last), tostring(want_last), tostring(got),
      tostring(match), #want))
  end
end

for _, r in ipairs(ranges) do
  local i, j = r[1], r[2]
  -- LuaSocket itself, for the expected return value.
  local c = sink(i)
  local want_last = c:send(data, i, j)
  c:close()
  for _, what in ipairs { "send", "sendall", "sendall(buffer)", "sendall(fd)" } do
    c = sink(i)
    local last
    if what == "sendall(buffer)" then
      last = fastsock.sendall(c, buf, i, j)
    elseif what == "sendall(fd)" then
      last = fastsock.sendall(math.tointeger(c:getfd()), data, i, j)
    else
      last = fastsock[what](c, data, i, j)
    end
    check(what, i, j, last, want_last, common.sink_answer(c))
    c:close()
  end
end

-- Positions that are not integers are errors, never silently truncated.
do
  local c = sink(1)
  local msg = common.raises(fastsock.sendall, c, data, 1.5)
  assert(msg:match("bad argument #3"), msg)
  msg = common.raises(fastsock.sendall, c, data, 1, 2^64)
  assert(msg:match("bad argument #4"), msg)
  local got = common.sink_answer(c)
  assert(got == 0, "a refused send sent bytes")
  c:close()
end

print(string.format("%d ranges, %d failures", #ranges, failures))
assert(failures == 0, "send ranges differ")
end)
