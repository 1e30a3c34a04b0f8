# frozen_string_literal: true

# Fastsock against Ruby's own ways of moving bulk data over loopback.
#
#   ruby -I <lib dirs> bench/ruby/bench.rb --server PATH [--runs N] [--sizes MiB,...]
#
# Receive: Fastsock.recvall vs sock.read(n), sock.read(n, outbuf) and a
# readpartial loop. Send: Fastsock.sendfile vs IO.copy_stream(file, sock).
# Peak RSS: each route receives 256 MiB in a fresh process, which reports
# VmHWM before and after. Times are the median of --runs runs.
require "fastsock"
require "socket"
require "tempfile"
require "rbconfig"
require_relative "../../tests/ruby/loopback"

MIB = 1 << 20
CHUNK = 64 * 1024

ROUTES = {
  "Fastsock.recvall" => ->(sock, n, _buf) { Fastsock.recvall(sock, n) },
  "sock.read(n)" => ->(sock, n, _buf) { sock.read(n) },
  "sock.read(n, outbuf)" => ->(sock, n, buf) { sock.read(n, buf) },
  # The same reused buffer as read(n, outbuf): both skip first-touch page faults.
  "Fastsock.recvall_into" => ->(sock, n, buf) { Fastsock.recvall_into(sock, buf, n) && buf },
  "readpartial loop" => lambda do |sock, n, _buf|
    data = String.new(capacity: n, encoding: Encoding::BINARY)
    data << sock.readpartial([CHUNK, n - data.bytesize].min) while data.bytesize < n
    data
  end
}.freeze

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def median(xs)
  s = xs.sort
  s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
end

# read(n, outbuf) grows an empty String; recvall_into writes into one that
# already has n bytes.
def reusable_buffer(route, n)
  case route
  when "sock.read(n, outbuf)" then String.new(capacity: n, encoding: Encoding::BINARY)
  when "Fastsock.recvall_into" then "\0".b * n
  end
end

def hwm_kib
  File.read("/proc/self/status")[/^VmHWM:\s+(\d+)/, 1].to_i
end

# One receive of n bytes by route, timed from the request to the last byte.
def receive_once(server, route, n, buf)
  sock = server.connect("gen len=#{n} seed=1")
  t0 = now
  data = ROUTES.fetch(route).call(sock, n, buf)
  dt = now - t0
  raise "#{route}: got #{data&.bytesize}" unless data&.bytesize == n

  dt
ensure
  sock&.close
end

def send_once(server, how, file, size)
  sock = server.connect("sink seed=1")
  file.rewind
  t0 = now
  sent = case how
         when "Fastsock.sendfile" then Fastsock.sendfile(sock, file)
         when "IO.copy_stream" then IO.copy_stream(file, sock)
         end
  got, = Loopback.sink_answer(sock, timeout: 120)
  dt = now - t0
  raise "#{how}: sent #{sent}, sink got #{got}" unless sent == size && got == size

  dt
ensure
  sock&.close
end

# Child mode: one 256 MiB receive by one route; prints VmHWM before and after.
if ARGV.first == "--rss"
  _, route, port, n = ARGV
  server = Loopback::Server.allocate
  server.instance_variable_set(:@port, Integer(port))
  n = Integer(n)
  GC.start
  before = hwm_kib
  buf = reusable_buffer(route, n)
  receive_once(server, route, n, buf)
  puts "#{before} #{hwm_kib}"
  exit 0
end

server_path = nil
runs = 5
sizes = [1, 16, 256]
args = ARGV.dup
until args.empty?
  case (a = args.shift)
  when "--server" then server_path = args.shift
  when "--runs" then runs = Integer(args.shift)
  when "--sizes" then sizes = args.shift.split(",").map { Integer(_1) }
  else abort "unknown argument #{a}"
  end
end
abort "--server PATH is required" unless server_path
server = Loopback::Server.new(server_path)

puts "ruby #{RUBY_VERSION}, median of #{runs} runs over loopback"
puts
puts format("%-22s %8s %10s %10s", "receive", "MiB", "ms", "MiB/s")
sizes.each do |mib|
  n = mib * MIB
  ROUTES.each_key do |route|
    buf = reusable_buffer(route, n)
    receive_once(server, route, n, buf) # warm-up
    times = Array.new(runs) { receive_once(server, route, n, buf) }
    m = median(times)
    puts format("%-22s %8d %10.2f %10.0f", route, mib, m * 1000, mib / m)
    GC.start
  end
end

puts
puts format("%-22s %8s %10s %10s", "send a file", "MiB", "ms", "MiB/s")
[16, 256].each do |mib|
  size = mib * MIB
  Tempfile.create("fastsock-bench") do |f|
    f.binmode
    block = Loopback.stream(1, 0, MIB)
    mib.times { f.write(block) }
    f.flush
    %w[Fastsock.sendfile IO.copy_stream].each do |how|
      send_once(server, how, f, size)
      times = Array.new(runs) { send_once(server, how, f, size) }
      m = median(times)
      puts format("%-22s %8d %10.2f %10.0f", how, mib, m * 1000, mib / m)
    end
  end
end

puts
puts "peak RSS of one 256 MiB receive, fresh process each (median of #{runs})"
puts format("%-22s %12s %12s %12s", "route", "before MiB", "peak MiB", "growth MiB")
ROUTES.each_key do |route|
  rows = Array.new(runs) do
    # The child finds fastsock as this process did: through RUBYLIB or -I.
    includes = $LOADED_FEATURES.grep(%r{/fastsock(\.rb|/native\.so)\z}).map do |f|
      f.end_with?(".so") ? File.dirname(f, 2) : File.dirname(f)
    end
    out = IO.popen([RbConfig.ruby, *includes.uniq.flat_map { ["-I", _1] }, __FILE__, "--rss", route, server.port.to_s, (256 * MIB).to_s], &:read)
    before, peak = out.split.map { Integer(_1) }
    [before, peak]
  end
  before = median(rows.map(&:first)) / 1024.0
  peak = median(rows.map(&:last)) / 1024.0
  puts format("%-22s %12.1f %12.1f %12.1f", route, before, peak, peak - before)
end
server.stop
