# frozen_string_literal: true

# The protocol calls (issue 17) beyond the conformance cases, where Ruby's
# own objects matter: Strings of every kind for sendallv, File positions and
# Ruby's IO buffers for recvfile, the Reader's look-ahead, threads and
# interrupts, and byte offsets in multi-byte Strings for find and split.
# The Reader under Fiber schedulers is in test_scheduler.rb.
# FASTSOCK_LOOPBACK_SERVER names the server.
require "tempfile"
require_relative "support"

class ProtocolTest < Minitest::Test
  include LoopbackTest

  # A file that is gone from /tmp as soon as it is open.
  def temp_file(content = "", mode = "r+b")
    f = Tempfile.create("fastsock-protocol-test")
    path = f.path
    f.close
    File.binwrite(path, content)
    file = File.open(path, mode)
    File.unlink(path)
    @open << file
    file
  end

  # Reads everything the peer sends until it closes, in a thread.
  def drain(sock)
    Thread.new do
      out = +"".b
      while (chunk = sock.read(65_536))
        out << chunk
      end
      out
    end
  end

  # -- sendallv ------------------------------------------------------------------

  def test_sendallv_takes_every_kind_of_string
    a, b = pair
    reader = drain(b)
    utf8 = "héllo wörld ✓" * 3 # multi-byte: bytes, not characters, are sent
    big = ("x" * 100_000).freeze
    binary = "\x00\xFF\xA5".b * 30
    short = +"ab" # embedded in its object
    pieces = [utf8, big, binary, short, "", short, utf8.encode("UTF-16LE")]
    want = pieces.map(&:b).join
    assert_equal want.bytesize, Fastsock.sendallv(a, pieces)
    a.close
    assert_equal want, reader.value
    # The Strings are as they were, and free again: locks released.
    short << "c"
    assert_equal "abc", short
    assert_equal "x" * 100_000, big
  end

  def test_sendallv_accepts_to_str_and_refuses_non_strings_before_sending
    a, b = pair
    conv = Object.new
    def conv.to_str = "converted"
    assert_equal 12, Fastsock.sendallv(a, ["abc", conv])
    assert_equal "abcconverted", b.read(12)
    err = assert_raises(TypeError) { Fastsock.sendallv(a, ["abc", nil, "def"]) }
    assert_match(/piece 1/, err.message)
    assert_raises(TypeError) { Fastsock.sendallv(a, ["abc", 42]) }
    assert_raises(TypeError) { Fastsock.sendallv(a, "not an array") }
    a.close
    assert_nil b.read(1), "a refused sendallv sent bytes"
  end

  def test_sendallv_locks_its_strings_while_the_gvl_is_released
    a, b = pair
    body = "y" * (4 << 20)
    sender = Thread.new { Fastsock.sendallv(a, ["head", body, "head"]) }
    sleep 0.05 until sender.status == "sleep" || !sender.alive?
    # The socket buffer is full and nobody reads: the send waits, locked.
    assert_raises(RuntimeError) { body << "z" }
    reader = drain(b)
    assert_equal (4 << 20) + 8, sender.value
    a.close
    got = reader.value
    assert_equal "head", got.byteslice(0, 4)
    assert_equal "head", got.byteslice(-4, 4)
    assert_equal (4 << 20) + 8, got.bytesize
    body << "z" # unlocked afterwards
  end

  def test_a_killed_sendallv_unlocks_its_strings
    a, b = pair
    body = "k" * (8 << 20)
    sender = Thread.new { Fastsock.sendallv(a, [body, body]) }
    sleep 0.01 until sender.status == "sleep"
    sender.kill.join
    body << "unlocked" # a String left locked would raise here
    assert_operator b.read_nonblock(1 << 20).bytesize, :>, 0
  end

  def test_sendallv_the_same_string_twice_and_a_timeout_with_progress
    sock = connect("sink seed=5 pause_ms=1500")
    piece = "q" * (1 << 20)
    err = assert_raises(Fastsock::TimeoutError) { Fastsock.sendallv(sock, [piece] * 64, timeout: 0.3) }
    assert_operator err.nbytes, :>, 0
    assert_operator err.nbytes, :<, 64 << 20
    piece << "still writable"
  end

  # -- recvfile ------------------------------------------------------------------

  def test_recvfile_writes_at_the_position_after_rubys_write_buffer
    f = temp_file("", "wb")
    f.sync = false
    f.write("header:") # held in Ruby's buffer, not yet in the file
    sock = connect("gen len=5000 seed=30")
    assert_equal 5000, Fastsock.recvfile(sock, f, 5000)
    assert_equal 7 + 5000, f.pos
    f.write("!")
    f.flush
    assert_equal "header:#{stream(30, 0, 5000)}!".b, File.binread("/proc/self/fd/#{f.fileno}")
  end

  def test_recvfile_at_rubys_position_with_a_read_buffer
    f = temp_file("0123456789", "r+b")
    assert_equal "01", f.read(2) # Ruby read the whole file ahead
    sock = connect("gen len=4 seed=31")
    assert_equal 4, Fastsock.recvfile(sock, f, 4)
    assert_equal 6, f.pos
    assert_equal "6789", f.read # not the stale read buffer
    f.rewind
    assert_equal "01#{stream(31, 0, 4)}6789".b, f.read
  end

  def test_recvfile_offset_and_integer_fd
    f = temp_file("." * 20)
    sock = connect("gen len=6 seed=32")
    assert_equal 3, Fastsock.recvfile(sock, f, 3, 10)
    assert_equal 13, f.pos
    assert_equal 3, Fastsock.recvfile(sock, f.fileno, 3, 2)
    assert_equal 5, IO.for_fd(f.fileno, autoclose: false).sysseek(0, IO::SEEK_CUR)
    assert_equal "..#{stream(32, 3, 3)}.....#{stream(32, 0, 3)}.......".b, f.pread(20, 0)
  end

  def test_recvfile_appending_file_and_pipe_take_no_offset
    f = temp_file("abc", "ab+")
    sock = connect("gen len=10 seed=33")
    assert_raises(ArgumentError) { Fastsock.recvfile(sock, f, 5, 1) }
    assert_equal 5, Fastsock.recvfile(sock, f, 5)
    assert_equal 8, f.pos
    assert_equal "abc#{stream(33, 0, 5)}".b, f.pread(8, 0)
    r, w = IO.pipe
    @open << r << w
    assert_raises(ArgumentError) { Fastsock.recvfile(sock, w, 5, 3) }
    assert_equal 5, Fastsock.recvfile(sock, w, 5)
    assert_equal stream(33, 5, 5), r.read(5)
  end

  def test_recvfile_refuses_a_file_not_open_for_writing_and_reads_nothing
    f = temp_file("abc", "rb")
    sock = connect("gen len=10 seed=34")
    assert_raises(IOError) { Fastsock.recvfile(sock, f, 5) }
    assert_raises(IOError) { Fastsock.recvfile(sock, f.fileno, 5) }
    assert_raises(ArgumentError) { Fastsock.recvfile(sock, temp_file, -1) }
    assert_equal stream(34, 0, 10), Fastsock.recvall(sock, 10)
  end

  def test_recvfile_takes_what_the_socket_io_read_ahead_first
    sock = connect("gen len=200000 seed=36")
    line = sock.gets("\n") # Ruby's IO reads ahead past the line
    assert_operator line.bytesize, :<, 4096 # so the IO holds bytes of the file
    f = temp_file("..")
    n = 200_000 - line.bytesize
    assert_equal n, Fastsock.recvfile(sock, f, n, 2)
    assert_equal 2 + n, f.pos
    assert_equal stream(36, line.bytesize, n), f.pread(n, 2)
  end

  def test_recvfile_interrupted_by_thread_raise_sets_the_position
    f = temp_file
    sock = connect("gen len=100000 seed=37 stall=3000 stall_ms=3000")
    receiver = Thread.new { Fastsock.recvfile(sock, f, 100_000, 10) }
    receiver.report_on_exception = false
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    sleep 0.01 until f.stat.size == 3010 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    receiver.raise(RuntimeError, "stop")
    err = assert_raises(RuntimeError) { receiver.join }
    assert_equal "stop", err.message
    assert_equal 3010, f.pos
    assert_equal stream(37, 0, 3000), f.pread(3000, 10)
  end

  def test_recvfile_end_of_stream_keeps_what_was_written
    f = temp_file
    sock = connect("gen len=1000 seed=35 close=700")
    err = assert_raises(Fastsock::IncompleteError) { Fastsock.recvfile(sock, f, 1000, 100) }
    assert_equal 700, err.nbytes
    assert_equal 800, f.pos
    assert_equal stream(35, 0, 700), f.pread(700, 100)
  end

  # -- Reader --------------------------------------------------------------------

  def test_reader_takes_what_the_io_read_ahead
    a, b = pair
    a.write("first\nsecond\r\nbody")
    assert_equal "first\n", b.gets
    r = Fastsock::Reader.new(b)
    assert_equal 12, r.buffered
    assert_equal "second\r\n", r.readuntil
    assert_equal "body", r.recvall(4)
    assert_equal 0, r.buffered
    assert_same b, r.socket
  end

  def test_reader_too_long_consumes_nothing
    a, b = pair
    a.write("abcdefgh\r\nrest")
    r = Fastsock::Reader.new(b)
    err = assert_raises(Fastsock::TooLongError) { r.readuntil("\r\n", max: 5) }
    assert_kind_of IOError, err
    assert_equal 0, err.nbytes
    assert_equal 14, r.buffered
    line = r.readuntil("\r\n", max: 10) # exactly max, delimiter included
    assert_equal "abcdefgh\r\n", line
    assert_equal Encoding::BINARY, line.encoding
    assert_equal "rest", r.recvall(4)
  end

  def test_reader_delimiter_across_receives_and_a_long_delimiter
    a, b = pair
    r = Fastsock::Reader.new(b)
    a.write("abc\r")
    writer = Thread.new do
      sleep 0.05
      a.write("\nxyz")
    end
    assert_equal "abc\r\n", r.readuntil
    writer.join
    delim = "-" * 100 # copied to the heap, not the stack
    a.write("z#{delim}tail")
    assert_equal "xyzz#{delim}", r.readuntil(delim)
    assert_equal "tail", r.recvall(4)
  end

  def test_reader_timeout_keeps_the_bytes_and_a_retry_goes_on
    a, b = pair
    r = Fastsock::Reader.new(b)
    a.write("partial")
    err = assert_raises(Fastsock::TimeoutError) { r.readuntil("\n", timeout: 0.1) }
    assert_equal 0, err.nbytes
    assert_equal 7, r.buffered
    a.write(" line\n")
    assert_equal "partial line\n", r.readuntil("\n")
  end

  def test_reader_end_of_stream_hands_out_the_partial
    a, b = pair
    r = Fastsock::Reader.new(b)
    a.write("no delimiter")
    a.close
    err = assert_raises(Fastsock::IncompleteError) { r.readuntil }
    assert_equal "no delimiter", err.partial
    assert_equal 12, err.nbytes
    assert_nil err.expected
    err = assert_raises(Fastsock::IncompleteError) { r.readuntil }
    assert_equal "", err.partial
  end

  def test_reader_bad_arguments
    _, b = pair
    r = Fastsock::Reader.new(b)
    assert_raises(ArgumentError) { r.readuntil("") }
    assert_raises(ArgumentError) { r.readuntil("\r\n", max: 1) }
    assert_raises(ArgumentError) { r.readuntil("\n", timeout: 0) }
    assert_raises(TypeError) { r.readuntil(nil) }
    assert_raises(Errno::ENOTSOCK) { Fastsock::Reader.new(temp_file) }
    c, = pair
    c.close
    assert_raises(IOError) { Fastsock::Reader.new(c) }
  end

  def test_reader_recvall_into_grows_the_string
    a, b = pair
    r = Fastsock::Reader.new(b)
    a.write("hdr\n0123456789")
    assert_equal "hdr\n", r.readuntil("\n")
    buf = +"ab"
    assert_equal 10, r.recvall_into(buf, 10, 2)
    assert_equal "ab0123456789", buf
    assert_equal Encoding::UTF_8, buf.encoding
    a.write("xy")
    a.close
    err = assert_raises(Fastsock::IncompleteError) { r.recvall(5) }
    assert_equal "xy", err.partial
    assert_equal 2, err.nbytes
  end

  def test_reader_body_after_the_look_ahead_comes_from_the_socket
    sock = connect("gen len=3000000 seed=63")
    r = Fastsock::Reader.new(sock)
    line = r.readuntil("\r\n", max: 65_536)
    assert_equal stream(63, 0, line.bytesize), line
    body = r.recvall(3_000_000 - line.bytesize)
    assert_equal stream(63, line.bytesize, 3_000_000 - line.bytesize), body
  end

  def test_reader_one_call_at_a_time_and_thread_kill
    a, b = pair
    r = Fastsock::Reader.new(b)
    waiting = Thread.new { r.readuntil("\n") }
    sleep 0.01 until waiting.status == "sleep"
    assert_raises(Fastsock::BusyError) { r.readuntil("\n") }
    a.write("kept")
    sleep 0.05
    waiting.kill.join
    a.write("\n")
    assert_equal "kept\n", r.readuntil("\n") # the killed call kept what it read
  end

  # Lines of every length up to a few KiB, delimiters of 1 to 5 bytes, sent
  # in pieces of random size: every delimiter that straddles two receives
  # is found, and nothing is lost or repeated.
  def test_reader_against_a_plain_split
    rng = Random.new(17)
    [":", "\r\n", "<!>", "-=-=-"].each do |delim|
      a, b = pair
      lines = Array.new(300) { "x".b * rng.rand(0..3000) + delim.b }
      data = lines.join
      writer = Thread.new do
        at = 0
        while at < data.bytesize
          n = rng.rand(1..700)
          a.write(data.byteslice(at, n))
          at += n
          sleep 0.0005 if rng.rand(8).zero?
        end
      end
      r = Fastsock::Reader.new(b)
      got = Array.new(lines.size) { r.readuntil(delim, max: 4096, timeout: 10) }
      writer.join
      assert_equal lines, got
      assert_equal 0, r.buffered
    end
  end

  # -- find and split ----------------------------------------------------------------

  def test_find_works_in_bytes
    s = "héllo, wörld" # é and ö are two bytes each
    assert_equal 6, Fastsock.find(s, ", ")
    assert_equal 9, Fastsock.find(s, "ö".b)
    assert_nil Fastsock.find(s, "ö", 11)
    assert_nil Fastsock.find(s, "d", 100)
    assert_nil Fastsock.find(s, "d", 2**70)
    assert_equal 13, Fastsock.find(s, "d", 13)
    assert_raises(ArgumentError) { Fastsock.find(s, "") }
    assert_raises(ArgumentError) { Fastsock.find(s, "h", -1) }
    assert_raises(TypeError) { Fastsock.find(nil, "h") }
  end

  def test_split_forms
    s = "é,,ü,"
    offs = Fastsock.split(s, ",")
    assert_equal [0, 2, 3, 3, 4, 6, 7, 7], offs
    strings = Fastsock.split(s, ",", as: :strings)
    assert_equal ["é", "", "ü", ""], strings
    assert(strings.all? { |f| f.encoding == Encoding::UTF_8 })
    assert_equal offs.each_slice(2).map { |x, y| s.byteslice(x, y - x) }, strings
    assert_equal [0, 0], Fastsock.split("", ",")
    assert_equal ["", "", ""], Fastsock.split("aaaa", "aa", as: :strings)
    assert_equal s, strings.join(",")
    long = ("r" * 100 + "\n") * 3
    fields = Fastsock.split(long.freeze, "\n", as: :strings)
    assert_equal ["r" * 100] * 3 + [""], fields
    assert_raises(ArgumentError) { Fastsock.split(s, "") }
    assert_raises(ArgumentError) { Fastsock.split(s, ",", as: :views) }
    assert_raises(TypeError) { Fastsock.split(s, 44) }
  end
end
