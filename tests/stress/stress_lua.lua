-- Concurrency stress of the Lua module, bounded, loopback only.
-- Lua has no threads, so the 64 connections are open at once and served
-- interleaved: each round sends a 64 KiB slice of 8 MiB down every
-- connection with sendall, then takes its echo back with recvall, until
-- 8 MiB have gone each way on each; every byte is checked. Two rounds; after
-- a full GC the descriptor count and the RSS must not have grown in the
-- second. Usage: lua5.4 stress_lua.lua --server PATH
package.path = arg[0]:gsub("[^/]*$", "") .. "../lua/?.lua;" .. package.path
local common = require "common"
local fastsock = require "fastsock"

local CONNS, EACH, SLICE = 64, 8 << 20, 64 << 10

local function fd_count()
  -- /proc/self would be ls's own: name this process.
  -- Closed at once: a handle left to the GC made the count flaky.
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  -- Pipes are left out: the write end of popen's own pipe is still open
  -- here, now and then, when ls looks (it is closed only after the fork),
  -- and the calls run here make no pipes. So is an entry ls lists but can
  -- no longer stat ("l?????????", that pipe closing meanwhile).
  local h = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null | " ..
                            "grep -c -v -e ' pipe:' -e '^total' -e '^l?'"))
  local n = tonumber(h:read("l"))
  h:close()
  return n
end

local function round(server, data)
  local conns = {}
  for i = 1, CONNS do conns[i] = common.request(server, "echo") end
  local verified = 0
  for off = 1, EACH, SLICE do
    local j = off + SLICE - 1
    for i = 1, CONNS do
      local last, err = fastsock.sendall(conns[i], data, off, j, 30)
      assert(last == j, ("connection %d: sendall %s"):format(i, tostring(err)))
      local got, rerr = fastsock.recvall(conns[i], SLICE, 30)
      assert(got == data:sub(off, j), ("connection %d at %d: %s"):format(i, off, tostring(rerr)))
      verified = verified + SLICE
    end
  end
  for i = 1, CONNS do conns[i]:close() end
  return verified
end

common.main(common.parse_args(arg).server, function(server)
  local data = common.stream(11, 0, EACH)
  collectgarbage("collect")
  local fd0, rss0 = fd_count(), common.rss()
  local t0 = os.clock()
  local v1 = round(server, data)
  collectgarbage("collect")
  local fd1, rss1 = fd_count(), common.rss()
  local v2 = round(server, data)
  collectgarbage("collect")
  local fd2, rss2 = fd_count(), common.rss()
  print(("concurrency: %d connections open at once, interleaved, x 2 rounds, %d MiB each way " ..
         "each, %d MiB received and verified in %.1f s CPU; fds %d -> %d -> %d; " ..
         "RSS %d -> %d -> %d KiB (round 2 delta %+d KiB)"):format(
    CONNS, EACH >> 20, (v1 + v2) >> 20, os.clock() - t0, fd0, fd1, fd2,
    rss0 // 1024, rss1 // 1024, rss2 // 1024, (rss2 - rss1) // 1024))
  assert(fd0 == fd1 and fd1 == fd2, "descriptors changed")
  if (os.getenv("LD_PRELOAD") or ""):find("asan") then
    print("concurrency: RSS not checked: ASan's allocator holds freed memory in quarantine")
  else
    assert(rss2 - rss1 < 32 << 20, "RSS grew in round 2")
  end
  print("ok concurrency")
end)
