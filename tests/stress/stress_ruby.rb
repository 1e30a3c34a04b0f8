# Concurrency stress of the Ruby module, bounded, loopback only: 64
# connections at once through the server's echo, a sender and a receiver
# thread each, 8 MiB each way through sendall and recvall, every byte
# checked. Two rounds; after GC the descriptor count and the RSS must not
# have grown in the second.
# Usage: ruby stress_ruby.rb --server PATH
require "rbconfig"

# glibc's sliding mmap threshold would keep freed 8 MiB Strings in the heap
# after the first round, and RSS would measure the allocator's cache rather
# than what the module leaves behind: fix the threshold, before anything runs.
TUNABLE = "glibc.malloc.mmap_threshold=1048576"
unless ENV.fetch("GLIBC_TUNABLES", "").include?(TUNABLE)
  ENV["GLIBC_TUNABLES"] = [ENV["GLIBC_TUNABLES"], TUNABLE].compact.join(":")
  exec(RbConfig.ruby, "-w", __FILE__, *ARGV)
end

require "socket"
require "fastsock"
require_relative "../ruby/loopback"

CONNS = 64
EACH = 8 << 20

def fd_count = Dir.children("/proc/self/fd").size
def rss_kib = File.read("/proc/self/statm").split[1].to_i * 4

def round(server, data)
  socks = Array.new(CONNS) { server.connect("echo") }
  ok = Array.new(CONNS, false)
  threads = socks.each_with_index.flat_map do |s, i|
    [Thread.new { Fastsock.sendall(s, data, timeout: 60); s.shutdown(Socket::SHUT_WR) },
     Thread.new { ok[i] = Fastsock.recvall(s, EACH, timeout: 60) == data }]
  end
  threads.each(&:join)
  socks.each(&:close)
  ok.count(true)
end

server_path = ARGV[ARGV.index("--server") + 1]
server = Loopback::Server.new(server_path)
begin
  data = Loopback.stream(11, 0, EACH)
  GC.start
  fd0, rss0 = fd_count, rss_kib
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  ok1 = round(server, data)
  GC.start
  fd1, rss1 = fd_count, rss_kib
  ok2 = round(server, data)
  GC.start
  fd2, rss2 = fd_count, rss_kib
  secs = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  puts format("concurrency: %d connections x 2 rounds, a sender and a receiver thread each, " \
              "%d MiB each way each, %d MiB received and verified in %.2f s; fds %d -> %d -> %d; " \
              "RSS %d -> %d -> %d KiB (round 2 delta %+d KiB)",
              CONNS, EACH >> 20, (ok1 + ok2) * EACH >> 20, secs, fd0, fd1, fd2,
              rss0, rss1, rss2, rss2 - rss1)
  raise "only #{ok1}, #{ok2} of #{CONNS} verified" unless ok1 == CONNS && ok2 == CONNS
  raise "descriptors #{fd0} -> #{fd1} -> #{fd2}" unless fd0 == fd1 && fd1 == fd2
  if ENV.fetch("LD_PRELOAD", "").include?("asan")
    puts "concurrency: RSS not checked: ASan's allocator holds freed memory in quarantine"
  elsif rss2 - rss1 >= 32 * 1024
    raise "RSS grew by #{rss2 - rss1} KiB in round 2"
  end
  puts "ok concurrency"
ensure
  server.stop
end
