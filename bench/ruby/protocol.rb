# frozen_string_literal: true

# Ruby's protocol benchmark (issue 17), run by bench/protocol.py:
#
#   ruby bench/ruby/protocol.rb --server PATH --rounds N [--quick]
#
#   sendallv_3       64 B + 16 MiB + 2 B to a sink: Fastsock.sendallv, one
#                    Fastsock.sendall of the bytes joined beforehand, and
#                    the join timed + Fastsock.sendall
#   sendallv_100x64  100 pieces of 64 B per op, 2,000 ops (--quick: 500) on
#                    one sink connection: sendallv, a sendall per piece
#   recvfile_shm     a 256 MiB stream (--quick: 64 MiB) into a new file in
#   recvfile_disk    /dev/shm, or /var/tmp (no fsync), deleted after:
#                    Fastsock.recvfile, IO.copy_stream(sock, file, n)
#   resp_1k          `resp len=1024`: "GET k\r\n", then "$1024\r\n" + body +
#                    "\r\n", ping-pong, 20,000 requests (--quick: 2,000):
#                    Fastsock::Reader (readuntil, recvall(n + 2)), and
#                    IO#gets("\r\n") + IO#read(n + 2)
#   resp_1m          the same with 1 MiB bodies, 300 requests (--quick: 50):
#                    the Reader, and Fastsock.recvall of the 10-byte header
#                    then of the body (bare recvall)
#   split_4k         64 MiB (--quick: 16 MiB) of 4096-byte records (4095
#   split_70         filler bytes + "\n"), or 70-byte ones, in one binary
#                    String: Fastsock.split (offsets), Fastsock.split(as:
#                    :strings), String#split("\n")
#
# Route order rotates each round. Every bench verifies its bytes: the sink's
# answer (got=N match=M) for sends, the file's size and samples of it for
# recvfile, every reply's body, and the record count and a record for split.
# One JSON object per measurement on stdout; diagnostics on stderr.
require "fastsock"
require "json"
require "socket"
require_relative "../../tests/ruby/loopback"
require_relative "measure"

MIB = 1 << 20
SEED = 17

opts = { rounds: 3, quick: false }
args = ARGV.dup
until args.empty?
  case (a = args.shift)
  when "--server" then opts[:server] = args.shift
  when "--rounds" then opts[:rounds] = Integer(args.shift)
  when "--quick" then opts[:quick] = true
  else abort "usage: protocol.rb --server PATH --rounds N [--quick] (not #{a})"
  end
end
abort "--server PATH is required" unless opts[:server]

QUICK = opts[:quick]
RECVFILE_SIZE = (QUICK ? 64 : 256) * MIB
SPLIT_SIZE = (QUICK ? 16 : 64) * MIB
RESP_1K_OPS = QUICK ? 2000 : 20_000
RESP_1M_OPS = QUICK ? 50 : 300
SMALL_OPS = QUICK ? 500 : 2000

def emit(bench, route, size, round, rate, unit, rss = nil)
  row = { lang: "ruby", bench: bench, route: route, size: size, round: round, rate: rate.round(1), unit: unit }
  row.merge!(rss_peak_mb: rss[0].round(1), rss_base_mb: rss[1].round(1)) if rss
  puts JSON.generate(row)
  $stdout.flush
end

SERVER = Loopback::Server.new(opts[:server])

def sink
  SERVER.connect("sink seed=#{SEED}")
end

def check_sink(route, sock, n)
  got, match = Loopback.sink_answer(sock)
  raise "#{route}: the sink got #{got} of #{n} bytes (#{match} matching)" unless got == n && match == n
ensure
  sock.close
end

# ---- sendallv_3 -------------------------------------------------------------------

HEAD = Loopback.stream(SEED, 0, 64)
BODY = Loopback.stream(SEED, 64, 16 * MIB)
TAIL = Loopback.stream(SEED, 64 + 16 * MIB, 2)
V3_SIZE = 64 + 16 * MIB + 2

V3 = {
  "sendallv" => lambda do |s, _|
    t0 = now
    Fastsock.sendallv(s, [HEAD, BODY, TAIL])
    now - t0
  end,
  "sendall_prejoined" => lambda do |s, joined|
    t0 = now
    Fastsock.sendall(s, joined)
    now - t0
  end,
  "join_then_sendall" => lambda do |s, _|
    t0 = now
    Fastsock.sendall(s, HEAD + BODY + TAIL)
    now - t0
  end
}.freeze

def bench_sendallv_3(round)
  V3.keys.rotate(round).each do |route|
    joined = route == "sendall_prejoined" ? HEAD + BODY + TAIL : nil
    GC.start
    s = sink
    dt = V3.fetch(route).call(s, joined)
    check_sink(route, s, V3_SIZE)
    emit("sendallv_3", route, V3_SIZE, round, V3_SIZE / dt / 1e6, "MB/s")
  end
end

# ---- sendallv_100x64 --------------------------------------------------------------

# Each op sends the next 6400 bytes of the stream, so that the sink checks
# every byte.
SMALL = begin
  all = Loopback.stream(SEED, 0, SMALL_OPS * 6400)
  Array.new(SMALL_OPS) { |op| Array.new(100) { |k| all.byteslice(op * 6400 + k * 64, 64) } }
end

SMALL_ROUTES = {
  "sendallv" => lambda do |s|
    t0 = now
    SMALL.each { |pieces| Fastsock.sendallv(s, pieces) }
    now - t0
  end,
  "sendall_per_piece" => lambda do |s|
    t0 = now
    SMALL.each { |pieces| pieces.each { |p| Fastsock.sendall(s, p) } }
    now - t0
  end
}.freeze

def bench_sendallv_small(round)
  SMALL_ROUTES.keys.rotate(round).each do |route|
    s = sink
    dt = SMALL_ROUTES.fetch(route).call(s)
    check_sink(route, s, SMALL_OPS * 6400)
    emit("sendallv_100x64", route, 6400, round, SMALL_OPS / dt, "ops/s")
  end
end

# ---- recvfile ---------------------------------------------------------------------

RECV_TO_FILE = {
  "recvfile" => ->(s, f, n) { Fastsock.recvfile(s, f, n) },
  "stdlib" => ->(s, f, n) { IO.copy_stream(s, f, n) }
}.freeze

# The file's size, and 64 KiB at its start, middle and end, against the stream.
def verify_file(route, path, n)
  size = File.size(path)
  raise "#{route}: the file holds #{size} of #{n} bytes" unless size == n

  File.open(path, "rb") do |f|
    [0, n / 2, n - 65_536].each do |off|
      raise "#{route}: the file's bytes at #{off} differ from the stream" \
        unless f.pread(65_536, off) == Loopback.stream(SEED, off, 65_536)
    end
  end
end

def bench_recvfile(bench, dir, round)
  n = RECVFILE_SIZE
  RECV_TO_FILE.keys.rotate(round).each do |route|
    path = File.join(dir, "fastsock-protocol-rb-#{Process.pid}-#{round}-#{route}")
    begin
      File.open(path, "wb") do |f|
        s = SERVER.connect("gen len=#{n} seed=#{SEED}")
        base = reset_peak
        t0 = now
        got = RECV_TO_FILE.fetch(route).call(s, f, n)
        dt = now - t0
        peak = status_mb("VmHWM:")
        s.close
        raise "#{route}: #{got} of #{n} bytes" unless got == n

        f.flush
        verify_file(route, path, n)
        emit(bench, route, n, round, n / dt / 1e6, "MB/s", [peak, base])
      end
    ensure
      File.unlink(path) if File.exist?(path)
    end
  end
end

# ---- resp -------------------------------------------------------------------------

REQUEST = "GET k\r\n"

def check_reply(route, body, want, k)
  raise "#{route}: reply #{k} differs from the stream" unless body.bytesize == want.bytesize + 2 &&
                                                             body.end_with?("\r\n") &&
                                                             body.start_with?(want)
end

# The request loop every route times alike; the block reads one reply, whose
# header says the body's length, and returns the body with its "\r\n".
def timed_requests(route, s, ops, want)
  t0 = now
  ops.times do |k|
    s.write(REQUEST)
    check_reply(route, yield, want, k)
  end
  now - t0
end

def body_len(header) = Integer(header.byteslice(1, header.bytesize - 3), 10)

RESP = {
  "reader" => lambda do |s, ops, want|
    r = Fastsock::Reader.new(s)
    timed_requests("reader", s, ops, want) { r.recvall(body_len(r.readuntil("\r\n")) + 2) }
  end,
  "stdlib" => lambda do |s, ops, want|
    timed_requests("stdlib", s, ops, want) { s.read(body_len(s.gets("\r\n")) + 2) }
  end,
  # The header's length is known ("$1048576\r\n"): fastsock's bare recvall
  # of it, then of the body.
  "bare_recvall" => lambda do |s, ops, want|
    timed_requests("bare_recvall", s, ops, want) { Fastsock.recvall(s, body_len(Fastsock.recvall(s, 10)) + 2) }
  end
}.freeze

def bench_resp(bench, len, ops, routes, round)
  want = Loopback.stream(SEED, 0, len)
  routes.rotate(round).each do |route|
    s = SERVER.connect("resp len=#{len} seed=#{SEED}")
    # Untimed first: the first route of a round otherwise pays for faulting
    # in the heap that the others reuse (half the 1 MiB rate).
    RESP.fetch(route).call(s, [ops / 5, 20].max, want)
    GC.start
    dt = RESP.fetch(route).call(s, ops, want)
    s.close
    emit(bench, route, len, round, ops / dt, "ops/s")
  end
end

# ---- split ------------------------------------------------------------------------

SPLITTERS = {
  "fastsock_split" => lambda do |data|
    t0 = now
    offs = Fastsock.split(data, "\n")
    dt = now - t0
    # n records end in n separators: n + 1 fields, the last one empty.
    [dt, offs.size / 2 - 1, ->(k) { data.byteslice(offs[2 * k], offs[2 * k + 1] - offs[2 * k]) }]
  end,
  "fastsock_split_strings" => lambda do |data|
    t0 = now
    fields = Fastsock.split(data, "\n", as: :strings)
    dt = now - t0
    [dt, fields.size - 1, ->(k) { fields[k] }]
  end,
  "stdlib_split" => lambda do |data|
    t0 = now
    fields = data.split("\n")
    dt = now - t0
    [dt, fields.size, ->(k) { fields[k] }]
  end
}.freeze

def bench_split(bench, record, round)
  records = SPLIT_SIZE / record
  filler = "x".b * (record - 1)
  data = ("#{filler}\n".b * records).freeze
  size = data.bytesize
  SPLITTERS.keys.rotate(round).each do |route|
    base = reset_peak
    dt, count, field = SPLITTERS.fetch(route).call(data)
    peak = status_mb("VmHWM:")
    raise "#{route}: #{count} records of #{records}, or a record's bytes differ" \
      unless count == records && field.call(records - 1) == filler && field.call(0) == filler

    emit(bench, route, size, round, size / dt / 1e6, "MB/s", [peak, base])
  end
end

begin
  opts[:rounds].times do |round|
    bench_sendallv_3(round)
    bench_sendallv_small(round)
    bench_recvfile("recvfile_shm", "/dev/shm", round)
    bench_recvfile("recvfile_disk", "/var/tmp", round)
    bench_resp("resp_1k", 1024, RESP_1K_OPS, %w[reader stdlib], round)
    bench_resp("resp_1m", MIB, RESP_1M_OPS, %w[reader bare_recvall], round)
    bench_split("split_4k", 4096, round)
    bench_split("split_70", 70, round)
  end
ensure
  SERVER.stop
end
