# frozen_string_literal: true

# Ruby's own behaviour of the module, beyond the conformance cases: the GVL,
# interrupts, threads, encodings, frozen targets, IO read-ahead, SIGPIPE.
# FASTSOCK_LOOPBACK_SERVER names the server; FASTSOCK_EXPECT_LOADED_FROM the
# directories (':'-separated) the module must have been loaded from: the build
# tree, or the install prefix in the installed run.
require "tempfile"
require "timeout"
require "rbconfig"
require_relative "support"

class FastsockTest < Minitest::Test
  include LoopbackTest

  # -- what was loaded ---------------------------------------------------------

  def test_loaded_from_the_expected_place
    rb = $LOADED_FEATURES.find { |f| File.basename(f) == "fastsock.rb" }
    so = $LOADED_FEATURES.find { |f| f.end_with?("fastsock/native.so") }
    refute_nil rb
    refute_nil so
    allowed = ENV.fetch("FASTSOCK_EXPECT_LOADED_FROM").split(":").map { |d| File.realpath(d) }
    assert_includes allowed, File.realpath(File.dirname(rb))
    assert_includes allowed, File.realpath(File.dirname(so, 2))
  end

  # -- the GVL -----------------------------------------------------------------

  def test_other_threads_run_during_a_slow_recvall
    # ~20 chunks 25 ms apart: half a second inside one recvall.
    sock = connect("gen len=200000 seed=3 trickle=10000:25")
    counter = 0
    running = true
    worker = Thread.new { counter += 1 while running }
    t0 = now
    data = Fastsock.recvall(sock, 200_000)
    elapsed = now - t0
    seen = counter
    running = false
    worker.join
    assert_equal stream(3, 0, 200_000), data
    assert_operator elapsed, :>, 0.3
    # With the GVL held through the transfer the worker would not have run at
    # all; pure Ruby counts millions a second.
    assert_operator seen, :>, 100_000, "the worker made no progress: the GVL was held"
  end

  def test_concurrent_recvalls_in_threads
    threads = (1..8).map do |seed|
      Thread.new do
        sock = connect("gen len=#{4 << 20} seed=#{seed} off=#{seed * 7}")
        data = Fastsock.recvall(sock, 4 << 20)
        [seed, data == stream(seed, seed * 7, 4 << 20), Fastsock.recvall_cycles]
      end
    end
    threads.map(&:value).each do |seed, ok, cycles|
      assert ok, "thread #{seed} received the wrong bytes"
      assert_operator cycles, :>=, 1
    end
  end

  def test_concurrent_sendalls_of_one_string
    data = stream(9, 0, 8 << 20).dup # mutable: each call locks it or snapshots it
    threads = 4.times.map do
      Thread.new do
        sock = connect("sink seed=9")
        sent = Fastsock.sendall(sock, data)
        [sent, Loopback.sink_answer(sock)]
      end
    end
    threads.map(&:value).each do |sent, (got, match)|
      assert_equal 8 << 20, sent
      assert_equal [sent, sent], [got, match]
    end
    data << "still writable"
  end

  def test_small_targets_stay_put_while_gc_compacts
    skip "GC.compact is not available here" unless GC.respond_to?(:compact)

    # An embedded String keeps its bytes inside the object: if compaction
    # moved it during the transfer, the bytes would land in freed memory.
    stop = false
    compactor = Thread.new { GC.compact until stop }
    10.times do |i|
      buf = "\xA5".b * 20
      sock = connect("gen len=20 seed=#{i} trickle=5:10")
      assert_equal 20, Fastsock.recvall_into(sock, buf)
      assert_equal stream(i, 0, 20), buf
      assert_equal stream(i, 0, 20), Fastsock.recvall(connect("gen len=20 seed=#{i} trickle=4:5"), 20)
      sink = connect("sink seed=#{i}")
      small = stream(i, 0, 20)
      sent = 0
      sent += Fastsock.send(sink, small, sent) while sent < 20
      assert_equal [20, 20], Loopback.sink_answer(sink)
    end
  ensure
    stop = true
    compactor&.join
  end

  # -- interrupts ----------------------------------------------------------------

  def stalled(prefix)
    connect("gen len=1000000 seed=5 stall=#{prefix} stall_ms=10000")
  end

  def test_thread_raise_interrupts_a_stalled_recvall_promptly
    sock = stalled(12_345)
    assert_operator(raise_into_waiting { Fastsock.recvall(sock, 1_000_000) }, :<, 1.0)
  end

  def test_thread_raise_leaves_the_target_string_usable
    buf = "\0".b * 1_000_000
    sock = stalled(50)
    raise_into_waiting { Fastsock.recvall_into(sock, buf) }
    # The bytes that came are in place, and the String is unlocked.
    assert_equal stream(5, 0, 50), buf.byteslice(0, 50)
    buf << "x"
    buf.replace("y")
    assert_equal "y", buf
  end

  def test_thread_kill_interrupts_a_stalled_recvall_promptly
    sock = stalled(0)
    th = Thread.new { Fastsock.recvall(sock, 1_000_000) }
    sleep 0.3
    t0 = now
    th.kill
    th.join
    assert_operator now - t0, :<, 1.0
    refute th.alive?
  end

  def test_timeout_timeout_interrupts_a_stalled_recvall_promptly
    sock = stalled(777)
    t0 = now
    assert_raises(Timeout::Error) { Timeout.timeout(0.3) { Fastsock.recvall(sock, 1_000_000) } }
    assert_operator now - t0, :<, 1.3
  end

  def test_timeout_keyword_reports_what_came
    sock = stalled(12_345)
    t0 = now
    err = assert_raises(Fastsock::TimeoutError) { Fastsock.recvall(sock, 1_000_000, timeout: 0.3) }
    assert_operator now - t0, :<, 1.3
    assert_kind_of(defined?(IO::TimeoutError) ? IO::TimeoutError : IOError, err)
    assert_partial err, 5, 12_345
    assert_equal Encoding::BINARY, err.partial.encoding
  end

  def test_errno_errors_carry_the_partial_data
    sock = connect("gen len=100000 seed=14 reset=4321")
    err = assert_raises(Errno::ECONNRESET) { Fastsock.recvall(sock, 100_000) }
    assert_kind_of Fastsock::TransferError, err
    assert_partial err, 14, 4321
  end

  def test_incomplete_error
    sock = connect("gen len=1000 seed=2 close=600")
    err = assert_raises(Fastsock::IncompleteError) { Fastsock.recvall(sock, 1000) }
    assert_kind_of EOFError, err
    assert_equal [600, 1000], [err.nbytes, err.expected]
    assert_equal stream(2, 0, 600), err.partial
  end

  def test_signal_handlers_run_and_the_transfer_resumes
    # A trapped signal interrupts the system call; Ruby runs the handler with
    # the GVL back, and the transfer goes on from where it was.
    fired = 0
    old = Signal.trap("USR1") { fired += 1 }
    sock = connect("gen len=300000 seed=21 trickle=30000:30")
    main = Thread.current
    kicker = Thread.new do
      5.times do
        sleep 0.04
        Process.kill("USR1", Process.pid)
      end
    end
    data = Fastsock.recvall(sock, 300_000)
    kicker.join
    assert_equal stream(21, 0, 300_000), data
    assert_operator fired, :>=, 1
    assert_same main, Thread.current
  ensure
    Signal.trap("USR1", old || "DEFAULT")
  end

  def child_ruby(script, *args)
    dirs = $LOADED_FEATURES.grep(%r{(/fastsock\.rb|/fastsock/native\.so)\z}).map do |f|
      f.end_with?(".so") ? File.dirname(f, 2) : File.dirname(f)
    end
    includes = dirs.uniq.flat_map { |d| ["-I", d] }
    [RbConfig.ruby, *includes, "-e", script, *args.map(&:to_s)]
  end

  def test_ctrl_c_interrupts_a_recvall_in_the_main_thread
    script = <<~RUBY
      require "fastsock"; require "socket"
      s = TCPSocket.new("127.0.0.1", Integer(ARGV[0]))
      s.write("gen len=100000 seed=1 stall=100 stall_ms=10000\\n")
      $stdout.puts "ready"; $stdout.flush
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      begin
        Fastsock.recvall(s, 100000)
        puts "finished"
      rescue Interrupt
        puts "interrupted %.2f" % (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
      end
    RUBY
    IO.popen(child_ruby(script, SERVER.port), "r") do |io|
      assert_equal "ready\n", io.gets
      sleep 0.3
      Process.kill("INT", io.pid)
      line = io.gets
      assert_match(/\Ainterrupted /, line)
      assert_operator Float(line.split[1]), :<, 1.5
    end
  end

  def test_no_sigpipe_death
    # SIGPIPE at its default action would kill the child; it must get EPIPE.
    script = <<~RUBY
      require "fastsock"; require "socket"; require "tempfile"
      Signal.trap("PIPE", "SYSTEM_DEFAULT")
      a, b = UNIXSocket.pair
      b.close
      results = []
      begin; Fastsock.sendall(a, "x" * 100000); rescue Errno::EPIPE, Errno::ECONNRESET => e; results << e.class; end
      begin; Fastsock.send(a, "x" * 10); rescue Errno::EPIPE, Errno::ECONNRESET => e; results << e.class; end
      f = Tempfile.create("fastsock"); File.unlink(f.path); f.write("y" * 100000); f.flush
      begin; Fastsock.sendfile(a, f); rescue Errno::EPIPE, Errno::ECONNRESET => e; results << e.class; end
      puts results.join(" ")
    RUBY
    out = IO.popen(child_ruby(script), "r", &:read)
    assert_predicate $?, :success?, "the child died: #{$?.inspect}"
    assert_equal 3, out.split.size, out
  end

  # -- encodings and sizes -----------------------------------------------------------

  def test_utf8_target_is_written_in_bytes_and_keeps_its_encoding
    buf = "é" * 50 # 100 bytes, 50 characters
    assert buf.valid_encoding? # caches "valid" on the String
    sock = connect("gen len=100 seed=40")
    assert_equal 100, Fastsock.recvall_into(sock, buf, 100)
    assert_equal Encoding::UTF_8, buf.encoding
    assert_equal 100, buf.bytesize
    assert_equal stream(40, 0, 100), buf.b
    # Random bytes are not UTF-8: the cached answer must have been dropped.
    assert_equal stream(40, 0, 100).force_encoding("UTF-8").valid_encoding?, buf.valid_encoding?
  end

  def test_offsets_and_counts_are_bytes_in_a_multibyte_string
    a, b = pair
    text = "日本語テキスト" # 21 bytes, 7 characters
    assert_equal 6, Fastsock.sendall(a, text, 3, 6) # bytes 3..8: "本語"
    assert_equal "本語".b, Fastsock.recvall(b, 6)
    buf = +"ααααα" # 10 bytes
    Fastsock.sendall(a, "xyz")
    assert_equal 3, Fastsock.recvall_into(b, buf, 3, 1)
    assert_equal "\xCExyz".b + ("α" * 3).b, buf.b
    assert_equal Encoding::UTF_8, buf.encoding
    Fastsock.sendall(a, text)
    assert_equal text, Fastsock.recvall(b, text.bytesize).force_encoding("UTF-8")
  end

  def test_recvall_returns_binary_filled_in_place
    sock = connect("gen len=1000003 seed=4")
    data = Fastsock.recvall(sock, 1_000_003)
    assert_equal Encoding::BINARY, data.encoding
    refute_predicate data, :frozen?
    assert_equal stream(4, 0, 1_000_003), data
  end

  # -- growing *_into targets (IO#read(len, outbuf)) -----------------------------------

  def test_recvall_into_grows_a_utf8_target_in_bytes
    buf = "é" * 5 # 10 bytes, 5 characters
    assert buf.valid_encoding?
    sock = connect("gen len=1000 seed=41")
    assert_equal 1000, Fastsock.recvall_into(sock, buf, 1000, 7) # mid-character
    assert_equal Encoding::UTF_8, buf.encoding
    assert_equal 1007, buf.bytesize
    assert_equal ("é" * 5).b.byteslice(0, 7) + stream(41, 0, 1000), buf.b
    assert_equal (("é" * 5).b.byteslice(0, 7) + stream(41, 0, 1000)).force_encoding("UTF-8").valid_encoding?,
                 buf.valid_encoding?
    buf << "é" # still an ordinary, unlocked String
    assert_equal 1009, buf.bytesize
  end

  def test_recvall_into_appends_with_the_bytesize_as_offset
    sock = connect("gen len=300000 seed=42")
    log = +""
    3.times { Fastsock.recvall_into(sock, log, 100_000, log.bytesize) }
    assert_equal stream(42, 0, 300_000), log.b
  end

  def test_an_offset_beyond_the_string_is_still_refused
    a, b = pair
    Fastsock.sendall(a, "abc")
    buf = "\xA5".b * 10
    err = assert_raises(ArgumentError) { Fastsock.recvall_into(b, buf, 1, 11) }
    assert_match(/offset 11 lies beyond the 10-byte String/, err.message)
    assert_raises(ArgumentError) { Fastsock.recv_into(b, buf, 1, 11) }
    assert_equal "\xA5".b * 10, buf
    assert_equal "abc", Fastsock.recvall(b, 3) # nothing moved
  end

  def test_an_error_mid_transfer_leaves_the_bytes_that_came
    buf = "\xA5".b * 100
    sock = connect("gen len=100000 seed=43 close=6000")
    err = assert_raises(Fastsock::IncompleteError) { Fastsock.recvall_into(sock, buf, 100_000, 60) }
    assert_equal [6000, 100_000], [err.nbytes, err.expected]
    assert_equal 6060, buf.bytesize
    assert_equal ("\xA5".b * 60) + stream(43, 0, 6000), buf

    # Fewer bytes than the old size: the String keeps its size.
    buf = "\xA5".b * 100
    sock = connect("gen len=100000 seed=44 reset=30")
    err = assert_raises(Errno::ECONNRESET) { Fastsock.recvall_into(sock, buf, 100_000, 50) }
    assert_equal 30, err.nbytes
    assert_equal ("\xA5".b * 50) + stream(44, 0, 30) + ("\xA5".b * 20), buf

    buf = +"ab"
    sock = connect("gen len=100000 seed=45 stall=777 stall_ms=3000")
    err = assert_raises(Fastsock::TimeoutError) { Fastsock.recvall_into(sock, buf, 100_000, 2, timeout: 0.2) }
    assert_equal 777, err.nbytes
    assert_equal "ab".b + stream(45, 0, 777), buf.b
  end

  def test_thread_raise_leaves_a_grown_target_at_what_came
    buf = "\xA5".b * 3
    sock = stalled(5000)
    raise_into_waiting { Fastsock.recvall_into(sock, buf, 1_000_000, 3) }
    assert_equal 5003, buf.bytesize
    assert_equal ("\xA5".b * 3) + stream(5, 0, 5000), buf
    buf << "x" # unlocked
  end

  def test_recv_into_grows_to_what_one_receive_gave
    require "objspace"
    a, b = pair
    Fastsock.sendall(a, "hello")
    buf = "\xA5".b * 4
    assert_equal 5, Fastsock.recv_into(b, buf, 1 << 30, 2)
    assert_equal "\xA5\xA5hello".b, buf
    # The room reserved for a GiB that never came was given back.
    assert_operator ObjectSpace.memsize_of(buf), :<, 1 << 20
    a.close
    assert_nil Fastsock.recv_into(b, buf, 100, 7) # end of stream: nothing grows
    assert_equal 7, buf.bytesize
  end

  def test_a_size_that_cant_be_allocated_moves_nothing
    a, b = pair
    Fastsock.sendall(a, "abc")
    buf = "\xA5".b * 10
    assert_raises(NoMemoryError) { Fastsock.recvall_into(b, buf, 1 << 62) }
    assert_raises(NoMemoryError) { Fastsock.recv_into(b, buf, 1 << 62, 10) }
    assert_raises(NoMemoryError) { Fastsock.recvall_into(b, buf, (1 << 64) - 2, 1) }
    assert_equal "\xA5".b * 10, buf
    assert_equal "abc", Fastsock.recvall(b, 3)
  end

  def test_growing_targets_stay_put_while_gc_compacts
    skip "GC.compact is not available here" unless GC.respond_to?(:compact)

    # Short Strings start inside their object, where compaction moves and
    # protects them: the grown bytes must be outside, and stay valid.
    stop = false
    compactor = Thread.new { GC.compact until stop }
    12.times do |i|
      buf = "\xA5".b * (i % 4) * 3
      before = buf.bytesize
      sock = connect("gen len=#{20 + i * 50} seed=#{i} trickle=7:5")
      assert_equal 20 + i * 50, Fastsock.recvall_into(sock, buf, 20 + i * 50, before)
      assert_equal ("\xA5".b * before) + stream(i, 0, 20 + i * 50), buf
      small = +""
      got = Fastsock.recv_into(connect("gen len=9 seed=#{i}"), small, 9)
      assert_equal stream(i, 0, got), small.b
    end
  ensure
    stop = true
    compactor&.join
  end

  # -- frozen targets and bad arguments ----------------------------------------------

  def test_frozen_targets_are_refused_before_anything_moves
    sock = connect("gen len=10 seed=6")
    frozen = ("\0" * 10).freeze
    assert_raises(FrozenError) { Fastsock.recvall_into(sock, frozen) }
    assert_raises(FrozenError) { Fastsock.recv_into(sock, frozen) }
    assert_raises(FrozenError) { Fastsock.recvall_into(sock, "literal, frozen by the magic comment") }
    assert_equal stream(6, 0, 10), Fastsock.recvall(sock, 10)
  end

  def test_frozen_data_can_be_sent
    a, b = pair
    assert_equal 5, Fastsock.sendall(a, "hello")
    assert_equal "hello", Fastsock.recvall(b, 5)
  end

  def test_bad_arguments
    a, = pair
    assert_raises(TypeError) { Fastsock.recvall(Object.new, 1) }
    assert_raises(TypeError) { Fastsock.recvall(a, "1") }
    assert_raises(TypeError) { Fastsock.recvall_into(a, [1, 2]) }
    assert_raises(TypeError) { Fastsock.sendall(a, :sym) }
    assert_raises(ArgumentError) { Fastsock.recvall(a, -1) }
    assert_raises(NoMemoryError) { Fastsock.recvall(a, 1 << 62) }
    assert_raises(NoMemoryError) { Fastsock.recvall(a, 1 << 70) }
    assert_raises(ArgumentError) { Fastsock.recvall(a, 1, timeout: 0) }
    assert_raises(ArgumentError) { Fastsock.recvall(a, 1, timeout: -1) }
    assert_raises(ArgumentError) { Fastsock.sendall(a, "x", nonblock: true) }
    assert_raises(ArgumentError) { Fastsock.sendfile(a, $stdin, nonblock: true) }
    err = assert_raises(ArgumentError) { Fastsock.recvall_into(a, +"abc", 0, 4) }
    assert_match(/offset 4 lies beyond the 3-byte String/, err.message)
    err = assert_raises(ArgumentError) { Fastsock.send(a, "abc", 4) }
    assert_match(/offset 4/, err.message)
    closed, other = UNIXSocket.pair
    closed.close
    other.close
    assert_raises(IOError) { Fastsock.recvall(closed, 1) }
  end

  def test_ssl_sockets_are_refused
    require "openssl"
    a, = pair
    ssl = OpenSSL::SSL::SSLSocket.new(a)
    err = assert_raises(TypeError) { Fastsock.sendall(ssl, "x") }
    assert_match(/SSLSocket/, err.message)
    assert_raises(TypeError) { Fastsock.recvall(ssl, 1) }
  end

  # -- Ruby's IO buffers ------------------------------------------------------------------

  def test_bytes_read_ahead_by_gets_come_first
    sock = connect("gen len=200000 seed=8")
    line = sock.gets # reads ahead well past the line
    refute_nil line
    rest = 200_000 - line.bytesize
    data = Fastsock.recvall(sock, rest)
    assert_equal stream(8, 0, 200_000), line.b + data
  end

  def test_bytes_read_ahead_serve_recv_into_and_recvall_into
    sock = connect("gen len=100000 seed=12")
    head = sock.read(3) # Ruby's IO reads a whole buffer's worth
    sock.ungetc("Z")
    buf = "\xA5".b * 10
    assert_equal 1, Fastsock.recv_into(sock, buf, 1, 2)
    assert_equal "\xA5\xA5Z".b, buf.byteslice(0, 3)
    big = "\0".b * (100_000 - 3)
    assert_equal big.bytesize, Fastsock.recvall_into(sock, big)
    assert_equal stream(12, 0, 100_000), head + big
  end

  def test_write_buffer_is_flushed_before_a_send
    a, b = pair
    a.sync = false
    a.write("abc") # held in Ruby's write buffer
    Fastsock.sendall(a, "def")
    assert_equal "abcdef", Fastsock.recvall(b, 6)
  end

  # -- single-shot calls ------------------------------------------------------------------

  def test_nonblocking_recv_into_and_send
    a, b = pair
    buf = "\0".b * 16
    err = assert_raises(IO::EAGAINWaitReadable) { Fastsock.recv_into(b, buf, nonblock: true) }
    assert_kind_of IO::WaitReadable, err
    assert_equal 0, err.nbytes
    big = "x" * (1 << 20)
    sent = 0
    sent += Fastsock.send(a, big, 0, nil, nonblock: true) while sent < (64 << 20)
    flunk "a socket pair took 64 MiB"
  rescue IO::EAGAINWaitWritable => e
    assert_kind_of IO::WaitWritable, e
    assert_operator sent, :>, 0
  end

  def test_recv_into_returns_nil_at_end_of_stream
    a, b = pair
    Fastsock.sendall(a, "hey")
    a.close
    buf = "\0".b * 8
    assert_equal 3, Fastsock.recv_into(b, buf)
    assert_nil Fastsock.recv_into(b, buf)
    assert_equal 0, Fastsock.recv_into(b, buf, 0)
  end

  def test_send_from_an_offset_in_a_loop
    a, b = pair
    data = stream(1, 0, 3 << 20)
    reader = Thread.new { Fastsock.recvall(b, data.bytesize) }
    off = 0
    off += Fastsock.send(a, data, off) while off < data.bytesize
    assert_equal data, reader.value
  end

  # -- sendfile -------------------------------------------------------------------------

  def test_sendfile_flushes_a_written_file_and_leaves_its_position
    f = Tempfile.create("fastsock")
    File.unlink(f.path) # the open file stays readable; nothing is left in /tmp
    @open << f
    f.write(stream(2, 0, 50_000)) # partly still in Ruby's write buffer
    sock = connect("sink seed=2 off=1000")
    assert_equal 20_000, Fastsock.sendfile(sock, f, 1000, 20_000)
    assert_equal 21_000, f.pos
    assert_equal [20_000, 20_000], Loopback.sink_answer(sock)
  end

  def test_sendfile_takes_an_fd
    f = Tempfile.create("fastsock")
    File.unlink(f.path)
    @open << f
    f.write(stream(3, 0, 10_000))
    f.flush
    sock = connect("sink seed=3")
    assert_equal 10_000, Fastsock.sendfile(sock, f.fileno)
    assert_equal 10_000, f.pos
    assert_equal [10_000, 10_000], Loopback.sink_answer(sock)
  end
end
