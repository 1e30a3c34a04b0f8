# frozen_string_literal: true

# Ruby's event-loop benchmark (issue 14), run by bench/eventloop.py:
#
#   ruby bench/ruby/eventloop.rb --server PATH --sizes 1048576,67108864,268435456 --rounds N
#
# Routes under ruby-async (Fiber.set_scheduler), with a 1 ms heartbeat fiber
# in the same reactor: IO#read(n), IO#read(n, outbuf), and Fastsock's calls,
# which wait through the scheduler there; the same Fastsock calls in a plain
# thread (loop "thread", no scheduler: stall_ms 0); and 64 fibers receiving
# 16 MiB each at once against one fiber's 16 MiB. Sends go to the loopback
# server's sink, whose answer (got=N match=M) verifies them; receives are
# checked for length and against the stream at a few places.
#
# One JSON object per measurement on stdout; diagnostics on stderr.
require "async"
require "fastsock"
require "json"
require "socket"
require "tempfile"
require_relative "../../tests/ruby/loopback"
require_relative "measure"

MIB = 1 << 20
SEED = 7
CONCURRENT = 64
CONCURRENT_SIZE = 16 * MIB

opts = { rounds: 3, sizes: [MIB, 64 * MIB, 256 * MIB] }
args = ARGV.dup
until args.empty?
  case (a = args.shift)
  when "--server" then opts[:server] = args.shift
  when "--sizes" then opts[:sizes] = args.shift.split(",").map { Integer(_1) }
  when "--rounds" then opts[:rounds] = Integer(args.shift)
  else abort "usage: eventloop.rb --server PATH [--sizes N,...] [--rounds N] (not #{a})"
  end
end
abort "--server PATH is required" unless opts[:server]

SERVER = Loopback::Server.new(opts[:server])
MAX = opts[:sizes].max
SEND_FILE = Tempfile.create("fastsock-eventloop").tap do |f|
  File.unlink(f.path)
  f.binmode
  f.write(Loopback.stream(SEED, 0, MAX))
  f.flush
end

# What a route needs besides the socket, made before the clock starts and
# dropped after, so that the process holds one payload at a time and the
# peak RSS says what the route itself costs: the data to send, or a reused
# target, touched as a program that keeps one would have touched it.
def prepare(route, n)
  case route
  when "fastsock_sendall" then SEND_FILE.pread(n, 0)
  when "io_read_outbuf", "fastsock_recvall_into" then "\0".b * n
  end
end

# Length, and 4 KiB of the stream at the start, the middle and the end.
def verify!(route, data, n)
  raise "#{route}: got #{data&.bytesize.inspect} bytes of #{n}" unless data && data.bytesize >= n

  [0, n / 2, [n - 4096, 0].max].uniq.each do |off|
    len = [4096, n - off].min
    next if len <= 0
    raise "#{route}: bytes at #{off} differ from the stream" \
      unless data.byteslice(off, len) == Loopback.stream(SEED, off, len)
  end
end

def sink_done!(route, sock, n)
  got, match = Loopback.sink_answer(sock)
  raise "#{route}: the sink got #{got} of #{n} bytes (#{match} matching)" unless got == n && match == n
end

RECV = {
  "io_read" => ->(s, n, _) { s.read(n) },
  "io_read_outbuf" => ->(s, n, buf) { s.read(n, buf) },
  "fastsock_recvall" => ->(s, n, _) { Fastsock.recvall(s, n) },
  "fastsock_recvall_into" => ->(s, n, buf) { Fastsock.recvall_into(s, buf, n) && buf }
}.freeze

SEND = {
  "fastsock_sendall" => ->(s, n, data) { Fastsock.sendall(s, data, 0, n) },
  "fastsock_sendfile" => ->(s, n, _) { Fastsock.sendfile(s, SEND_FILE, 0, n) }
}.freeze

# [loop, route] pairs in a round; IO#read is the scheduler's own idiom only.
ROUTES = RECV.keys.map { ["ruby-async", _1] } +
         SEND.keys.map { ["ruby-async", _1] } +
         (RECV.keys.grep(/fastsock/) + SEND.keys).map { ["thread", _1] }

# A 1 ms heartbeat fiber: its worst lateness since #reset, in ms.
class Heartbeat
  def initialize(task)
    @worst = 0.0
    @last = now
    @fiber = task.async do
      loop do
        sleep 0.001
        t = now
        @worst = [@worst, (t - @last) * 1000 - 1].max
        @last = t
      end
    end
  end

  # The gap in progress counts from here: what ran before (the GC, the
  # server's set-up) is not the transfer's.
  def reset
    @worst = 0.0
    @last = now
  end
  def worst = @worst
  def stop = @fiber.stop
end

# One transfer; returns [seconds, [peak RSS MB, base RSS MB], stall ms]. Runs inside the
# reactor when beat is a Heartbeat (the caller's fiber), else outside any
# scheduler.
def transfer(route, n, beat = nil)
  send = SEND.key?(route)
  extra = prepare(route, n)
  sock = SERVER.connect(send ? "sink seed=#{SEED} off=0" : "gen len=#{n} seed=#{SEED}")
  sock.wait_readable unless send # the server's set-up is not the receiver's cost
  base = reset_peak
  beat&.reset
  t0 = now
  result = (send ? SEND : RECV).fetch(route).call(sock, n, extra)
  dt = now - t0
  stall = beat ? beat.worst : 0.0
  rss = [status_mb("VmHWM:"), base]
  send ? sink_done!(route, sock, n) : verify!(route, result, n)
  [dt, rss, stall]
ensure
  sock&.close
  result.clear if result.is_a?(String) # frees its bytes now, not at some later GC
  extra&.clear
end

def emit(loop_name, route, size, round, dt, stall, rss)
  puts JSON.generate(lang: "ruby", loop: loop_name, route: route, size: size, round: round,
                     mbps: (size / dt / 1e6).round(1), stall_ms: stall.round(2),
                     rss_peak_mb: rss[0].round(1), rss_base_mb: rss[1].round(1))
  $stdout.flush
end

# Runs the block in a reactor with a 1 ms heartbeat fiber, which it gets.
def with_heartbeat
  Async do |task|
    beat = Heartbeat.new(task)
    sleep 0.005 # the heartbeat is running
    [yield(beat)]
  ensure
    beat&.stop
  end.wait.first
end

def concurrent(round)
  # One fiber's 16 MiB, then 64 fibers' at once, in the same reactor.
  dt1, rss1, stall1 = with_heartbeat { |beat| transfer("fastsock_recvall", CONCURRENT_SIZE, beat) }
  emit("ruby-async", "fastsock_recvall_1fiber", CONCURRENT_SIZE, round, dt1, stall1, rss1)
  dt, rss, stall = with_heartbeat do |beat|
    socks = Array.new(CONCURRENT) { SERVER.connect("gen len=#{CONCURRENT_SIZE} seed=#{SEED}") }
    socks.each(&:wait_readable)
    base = reset_peak
    beat.reset
    t0 = now
    results = Array.new(CONCURRENT)
    socks.each_with_index.map { |s, i| Async { results[i] = Fastsock.recvall(s, CONCURRENT_SIZE); nil } }
         .each(&:wait)
    dt = now - t0
    stall = beat.worst
    rss = [status_mb("VmHWM:"), base]
    results.each { verify!("fastsock_recvall_64fibers", _1, CONCURRENT_SIZE) }
    results.each(&:clear)
    socks.each(&:close)
    [dt, rss, stall]
  end
  emit("ruby-async", "fastsock_recvall_#{CONCURRENT}fibers", CONCURRENT * CONCURRENT_SIZE, round,
       dt, stall, rss)
end

puts "PORT #{SERVER.port}"
$stdout.flush
opts[:rounds].times do |round|
  opts[:sizes].each do |size|
    ROUTES.rotate(round).each do |loop_name, route|
      dt, rss, stall = if loop_name == "thread"
                         transfer(route, size)
                       else
                         with_heartbeat { |beat| transfer(route, size, beat) }
                       end
      emit(loop_name, route, size, round, dt, stall, rss)
    rescue StandardError => e
      warn "eventloop.rb: #{loop_name} #{route} #{size}: #{e.class}: #{e.message}"
      exit 1
    end
  end
end
# After the rounds: its 1 GiB would otherwise stay in the peaks that follow.
opts[:rounds].times { |round| concurrent(round) }
SERVER.stop
