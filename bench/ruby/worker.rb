# frozen_string_literal: true

# Ruby side of the benchmark: one variant per request, driven by bench/run.py.
#
#   ruby bench/ruby/worker.rb --port PORT --file DATAFILE --max BYTES
#
# Speaks the driver's line protocol on stdin/stdout (see bench/README.md).
require "fastsock"
require "fiddle"
require "socket"

CHUNK = 64 * 1024

def status_kib(field)
  File.foreach("/proc/self/status") { |l| return l.split[1].to_i if l.start_with?(field) }
  0
end

# "5" resets VmHWM to the current RSS.
def reset_peak = File.write("/proc/self/clear_refs", "5")

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

opts = {}
args = ARGV.dup
until args.empty?
  key = args.shift
  opts[key.delete_prefix("--").to_sym] = args.shift
end
PORT = Integer(opts.fetch(:port))
MAX = Integer(opts.fetch(:max))
DATA_BYTES = File.binread(opts.fetch(:file), MAX).freeze
FILE_IO = File.open(opts.fetch(:file), "rb")
# Reused buffers, touched once here, as a program that keeps one would.
REUSED = "\0".b * MAX
OUTBUF = String.new(capacity: MAX, encoding: Encoding::BINARY)
SMALL = "\0".b * 64

def connect(request)
  s = TCPSocket.new("127.0.0.1", PORT)
  s.write(request)
  s
end

# More of the sink's request, set by the driver's "sink OPTIONS"
# (step=16384: a reader that takes 16 KiB a call).
$sink_extra = ""

def finish_send(s, n)
  s.close_write
  answer = s.read
  got = answer[/got=(\d+)/, 1].to_i
  raise "sink got #{got} of #{n}" unless got == n
end

RECV = {
  "read" => ->(s, n) { s.read(n) },
  "read_outbuf_reused" => ->(s, n) { s.read(n, OUTBUF) },
  "readpartial_loop" => lambda do |s, n|
    data = String.new(capacity: n, encoding: Encoding::BINARY)
    data << s.readpartial([CHUNK, n - data.bytesize].min) while data.bytesize < n
    data
  end,
  "fastsock_recvall" => ->(s, n) { Fastsock.recvall(s, n) },
  "fastsock_recvall_into" => ->(s, n) { Fastsock.recvall_into(s, REUSED, n) && REUSED }
}.freeze

SEND = {
  "write" => ->(s, n) { s.write(n == MAX ? DATA_BYTES : DATA_BYTES.byteslice(0, n)) },
  "copy_stream" => ->(s, n) { IO.copy_stream(FILE_IO, s, n, 0) },
  "fastsock_sendall" => ->(s, n) { Fastsock.sendall(s, DATA_BYTES, 0, n) },
  "fastsock_sendfile" => ->(s, n) { Fastsock.sendfile(s, FILE_IO, 0, n) }
}.freeze

MSG = {
  "readpartial_64" => lambda do |s, n|
    got = 0
    got += s.readpartial(64, SMALL).bytesize while got < n
  end,
  "fastsock_recv_into_64" => lambda do |s, n|
    got = 0
    got += Fastsock.recv_into(s, SMALL, 64) while got < n
  end,
  # A length prefix or a small header: exactly 64 bytes, the data waiting.
  "recv_waitall_64" => lambda do |s, n|
    got = 0
    got += s.recv(64, Socket::MSG_WAITALL).bytesize while got < n
  end,
  "fastsock_recvall_64" => lambda do |s, n|
    got = 0
    got += Fastsock.recvall(s, 64).bytesize while got < n
  end
}.freeze

# Requests per request/response measurement (bench/run.py's RPC_REQUESTS).
def rpc_requests(n) = n <= 64 * 1024 ? 10_000 : [16, (256 << 20) / n].max

# Request/response: "GET\n", then an 8-byte big-endian length and the body.
# Each returns [first body, last body]: equal, checked after the clock.
RPC = {
  "rpc_read" => lambda do |s, n|
    first = last = nil
    rpc_requests(n).times do
      s.write("GET\n")
      last = s.read(s.read(8).unpack1("Q>"))
      first ||= last
    end
    [first, last]
  end,
  "rpc_fastsock" => lambda do |s, n|
    first = last = nil
    rpc_requests(n).times do
      s.write("GET\n")
      last = Fastsock.recvall(s, Fastsock.recvall(s, 8).unpack1("Q>"))
      first ||= last
    end
    [first, last]
  end
}.freeze

# 64-byte sends: per-call cost.
CHUNK_64 = DATA_BYTES.byteslice(0, 64).freeze
SMALLSEND = {
  "write_64" => ->(s, n) { (n / 64).times { s.write(CHUNK_64) } },
  "fastsock_sendall_64" => ->(s, n) { (n / 64).times { Fastsock.sendall(s, CHUNK_64) } }
}.freeze

def run(name, n)
  side, fn = if RECV.key?(name) then ["recv", RECV[name]]
             elsif SEND.key?(name) then ["send", SEND[name]]
             elsif SMALLSEND.key?(name) then ["smallsend", SMALLSEND[name]]
             elsif RPC.key?(name) then ["rpc", RPC[name]]
             else ["msg", MSG.fetch(name)]
             end
  s = connect(case side
              when "send", "smallsend" then "sink seed=1 off=0 #{$sink_extra}\n"
              when "rpc" then "lenprefix len=#{n} seed=1\n"
              else "gen len=#{n} seed=1\n"
              end)
  # The clock starts once data is there: the server's own set-up for a
  # request is not the receiving side's cost.
  IO.select([s]) unless %w[send smallsend rpc].include?(side)
  begin
    reset_peak
    before = status_kib("VmRSS:")
    t0 = now
    result = fn.call(s, n)
    finish_send(s, n) if %w[send smallsend].include?(side)
    dt = now - t0
    added = status_kib("VmHWM:") - before
    align = -1
    if side == "rpc"
      first, last = result
      raise "#{name}: replies of #{first&.bytesize} and #{last&.bytesize} bytes differ" unless
        last&.bytesize == n && first == last
    elsif side == "recv"
      raise "#{name}: got #{result&.bytesize} of #{n}" unless result && result.bytesize >= n

      align = Fiddle::Pointer[result].to_i % 4096 if n.positive?
      # A fresh result goes now, not when GC.start finds it dead: Ruby's GC
      # scans the machine stack conservatively, and a stale copy of this
      # VALUE there kept one route's 256 MiB alive through the next route's
      # transfer, which then faulted in memory the VM's host had taken back
      # (fastsock_recvall after readpartial_loop: 310-430 MB/s against
      # read(n)'s 1,600-1,900, every round).
      result.clear unless result.equal?(OUTBUF) || result.equal?(REUSED)
    end
    [dt, added * 1024, align]
  ensure
    s.close
  end
end

$stdout.sync = true
puts "ready"
$stdin.each_line do |line|
  cmd = line.split
  next if cmd.empty?
  break if cmd[0] == "quit"

  case cmd[0]
  when "list"
    puts [RECV.keys.map { "#{_1}:recv" }, SEND.keys.map { "#{_1}:send" },
          MSG.keys.map { "#{_1}:msg" }, RPC.keys.map { "#{_1}:rpc" },
          SMALLSEND.keys.map { "#{_1}:smallsend" }].flatten.join(" ")
  when "pid" then puts Process.pid
  when "sink"
    $sink_extra = cmd[1..].join(" ")
    puts "ok"
  when "run"
    begin
      dt, added, align = run(cmd[1], Integer(cmd[2]))
      puts format("ok %.9f %d %d", dt, added, align)
    rescue StandardError => e
      puts "err #{e.class}: #{e.message}".tr("\n", " ")
    end
  end
  GC.start
end
