# frozen_string_literal: true

# What the Ruby runner and tests share: the loopback server (tests/README.md)
# and the stream it serves, computed here without a hashing library.
require "socket"

module Loopback
  UNIT = 65_521

  @units = {}

  # The P-byte unit of a seed: stream byte k is unit[k % P].
  def self.unit(seed)
    @units[seed] ||= begin
      x = (seed * 2_654_435_761 + 0x7F4A7C15) & 0xFFFF_FFFF
      x = 1 if x.zero?
      bytes = Array.new(UNIT)
      UNIT.times do |i|
        x ^= (x << 13) & 0xFFFF_FFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFF_FFFF
        bytes[i] = x & 0xFF
      end
      bytes.pack("C*")
    end
  end

  # Stream bytes [off, off + len) of seed, binary.
  def self.stream(seed, off, len)
    u = unit(seed)
    phase = off % UNIT
    rotated = u.byteslice(phase, UNIT - phase) + u.byteslice(0, phase)
    (rotated * ((len + UNIT - 1) / UNIT)).byteslice(0, len) || "".b
  end

  # The server, started once; #port to connect, #stop sends `quit`.
  class Server
    attr_reader :port

    def initialize(path)
      @io = IO.popen([path], "r")
      line = @io.gets
      raise "loopback server said #{line.inspect}, not PORT n" unless line&.start_with?("PORT ")

      @port = Integer(line.split[1])
    end

    # A connection that has sent the request line (spaces, or ',' as in cases.txt).
    def connect(request)
      sock = TCPSocket.new("127.0.0.1", @port)
      sock.write(request.tr(",", " "), "\n")
      sock
    end

    def stop
      connect("quit").close
      Process.wait(@io.pid)
      @io.close
    rescue Errno::ECONNREFUSED, Errno::ECHILD
      @io.close
    end
  end

  # Reads the sink's `got=N match=M` answer after shutting down writing.
  def self.sink_answer(sock, timeout: 30)
    sock.shutdown(Socket::SHUT_WR)
    line = +""
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until line.end_with?("\n")
      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise "no answer from the sink" if left <= 0 || !sock.wait_readable(left)

      chunk = sock.read_nonblock(256, exception: false)
      break if chunk.nil?
      next if chunk == :wait_readable

      line << chunk
    end
    m = /\Agot=(\d+) match=(\d+)/.match(line) or raise "sink answered #{line.inspect}"
    [Integer(m[1]), Integer(m[2])]
  end
end
