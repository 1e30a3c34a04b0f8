# frozen_string_literal: true

# fastsock inside non-blocking fibers with Fiber.scheduler set (issue 14):
# every test of SchedulerContract runs against Debian's ruby-async and
# against MiniScheduler (tests/ruby/mini_scheduler.rb), so the contract does
# not rest on one gem. Then what is particular to each, and the progressive
# Receiver/Sender objects outside any scheduler.
# FASTSOCK_LOOPBACK_SERVER names the server.
require "async"
require "openssl"
require "rbconfig"
require "tempfile"
require_relative "support"
require_relative "mini_scheduler"

# What every scheduler must get. Including classes define
#   in_scheduler { ... }  runs the block in a non-blocking fiber, returns its value
#   spawn { ... }         starts another fiber in the same scheduler; returns a handle
#   join(handle)          waits for it, returns its value or raises its exception
#   stop(handle)          stops it at its current wait (Async::Task#stop, or Fiber#raise)
module SchedulerContract
  include LoopbackTest

  # Runs the block while another fiber of the same scheduler sleeps `period`
  # at a time; returns [the sleeps it finished, the block's value]. Few of
  # them mean the block held the thread instead of waiting in the scheduler.
  def beating(period)
    count = 0
    done = false
    hb = spawn do
      until done
        sleep period
        count += 1
      end
    end
    value = yield
    done = true
    join(hb)
    [count, value]
  end

  # The fibers' scheduler is the one asked: fastsock must not block the thread.
  def test_other_fibers_run_during_a_big_recvall
    n = 32 << 20
    sock = connect("gen len=#{n} seed=1")
    beats, data = in_scheduler { beating(0.001) { Fastsock.recvall(sock, n) } }
    assert_equal n, data.bytesize
    assert_equal stream(1, 0, n), data
    assert_equal Encoding::BINARY, data.encoding
    assert_operator beats, :>=, 3, "the heartbeat fiber never ran during the transfer"
  end

  def test_a_trickled_recvall_waits_through_the_scheduler
    sock = connect("gen len=40000 seed=2 trickle=4000:20")
    beats, data = in_scheduler { beating(0.005) { Fastsock.recvall(sock, 40_000) } }
    assert_equal stream(2, 0, 40_000), data
    assert_operator beats, :>=, 10 # ~200 ms of trickle, 5 ms beats
  end

  def test_every_call_under_the_scheduler
    in_scheduler do
      buf = +"ab"
      s = connect("gen len=70000 seed=3")
      assert_equal 70_000, Fastsock.recvall_into(s, buf, 70_000, 2)
      assert_equal "ab".b + stream(3, 0, 70_000), buf.b

      s = connect("gen len=100 seed=4")
      small = "\0".b * 100
      got = 0
      while got < 100
        k = Fastsock.recv_into(s, small, 100 - got, got)
        break if k.nil?

        got += k
      end
      assert_equal stream(4, 0, 100), small
      assert_nil Fastsock.recv_into(s, small, 10)

      data = stream(5, 0, 3 << 20)
      s = connect("sink seed=5 off=0")
      off = 0
      off += Fastsock.send(s, data, off) while off < 1000
      assert_equal data.bytesize - off, Fastsock.sendall(s, data, off)
      assert_equal [data.bytesize, data.bytesize], Loopback.sink_answer(s)

      Tempfile.create("fastsock-sched") do |f|
        f.binmode
        f.write(data)
        f.flush
        s = connect("sink seed=5 off=1000")
        assert_equal data.bytesize - 1000, Fastsock.sendfile(s, f, 1000)
        assert_equal data.bytesize, f.pos
        assert_equal [data.bytesize - 1000] * 2, Loopback.sink_answer(s)
      end
    end
  end

  # The pipe is written by another fiber in pieces: sendfile must wait for
  # it through the scheduler, or the writer never runs.
  def test_sendfile_from_a_pipe_waits_for_the_pipe
    data = stream(14, 0, 3 << 20)
    sock = connect("sink seed=14 off=0")
    sent = in_scheduler do
      r, w = IO.pipe
      writer = spawn do
        (0...data.bytesize).step(256 << 10) do |off|
          w.write(data.byteslice(off, 256 << 10))
          sleep 0.005
        end
        w.close
      end
      n = Fastsock.sendfile(sock, r)
      join(writer)
      r.close
      n
    end
    assert_equal data.bytesize, sent
    assert_equal [data.bytesize] * 2, Loopback.sink_answer(sock)
  end

  def test_the_timeout_keyword_reports_what_came
    sock = connect("gen len=100000 seed=6 stall=12345 stall_ms=3000")
    err, dt = in_scheduler do
      t0 = now
      e = assert_raises(Fastsock::TimeoutError) { Fastsock.recvall(sock, 100_000, timeout: 0.3) }
      [e, now - t0]
    end
    assert_partial err, 6, 12_345
    assert_operator dt, :<, 2.0
  end

  def test_end_of_stream_and_reset_lose_nothing
    in_scheduler do
      s = connect("gen len=100000 seed=7 close=54321")
      e = assert_raises(Fastsock::IncompleteError) { Fastsock.recvall(s, 100_000) }
      assert_equal [54_321, 100_000], [e.nbytes, e.expected]
      assert_equal stream(7, 0, 54_321), e.partial

      s = connect("gen len=100000 seed=8 reset=4321")
      buf = +""
      e = assert_raises(Errno::ECONNRESET) { Fastsock.recvall_into(s, buf, 100_000) }
      assert_equal 4321, e.nbytes
      assert_equal stream(8, 0, 4321), buf.b
    end
  end

  def test_a_socket_closed_by_another_fiber
    sock = connect("gen len=10000000 seed=9 trickle=2000:5")
    err = in_scheduler do
      closer = spawn do
        sleep 0.1
        sock.close
      end
      e = assert_raises(Errno::EBADF, IOError) { Fastsock.recvall(sock, 10_000_000, timeout: 10) }
      join(closer)
      e
    end
    assert_operator err.nbytes, :>, 0
    assert_equal stream(9, 0, err.nbytes), err.partial
  end

  def test_two_receives_on_one_socket_are_refused
    sock = connect("gen len=100000 seed=10 stall=1000 stall_ms=3000")
    first, second = in_scheduler do
      a = spawn do
        Fastsock.recvall(sock, 100_000, timeout: 0.4)
      rescue Fastsock::TimeoutError => e
        e
      end
      sleep 0.05 # a is waiting
      b = begin
        Fastsock.recvall(sock, 10)
      rescue Fastsock::BusyError => e
        e
      end
      # Not even one message from the middle of a's stream.
      assert_raises(Fastsock::BusyError) { Fastsock.recv_into(sock, +"", 10) }
      [join(a), b]
    end
    assert_kind_of Fastsock::BusyError, second
    assert_kind_of IOError, second
    assert_match(/another fiber is receiving/, second.message)
    assert_kind_of Fastsock::TimeoutError, first
    assert_partial first, 10, 1000
  end

  # A Reader's readuntil waits through the scheduler (issue 17): the line
  # trickles in over ~250 ms while another fiber keeps beating, and the body
  # after it comes through the same Reader.
  def test_readuntil_waits_through_the_scheduler
    sock = connect("gen len=60000 seed=63 trickle=997:5")
    beats, (line, body) = in_scheduler do
      beating(0.005) do
        r = Fastsock::Reader.new(sock)
        l = r.readuntil("\r\n", max: 65_536)
        [l, r.recvall(60_000 - l.bytesize)]
      end
    end
    assert_equal 50_564, line.bytesize
    assert_equal stream(63, 0, 60_000), line + body
    assert_operator beats, :>=, 10, "the heartbeat fiber never ran during readuntil"
  end

  # sendallv and recvfile step between the scheduler's waits too: a slow
  # sink and a trickled stream take ~300 ms each while another fiber beats.
  def test_sendallv_and_recvfile_wait_through_the_scheduler
    head = stream(64, 0, 64)
    body = stream(64, 64, 16 << 20)
    out = connect("sink seed=64 pause_ms=300")
    inp = connect("gen len=3000000 seed=65 trickle=100000:10")
    file = Tempfile.create("fastsock-sched-recvfile")
    File.unlink(file.path)
    @open << file
    file.write("0123")
    beats, (sent, got) = in_scheduler do
      beating(0.002) do
        [Fastsock.sendallv(out, [head, body, "".b]),
         Fastsock.recvfile(inp, file, 3_000_000, nil, timeout: 30)]
      end
    end
    assert_equal (16 << 20) + 64, sent
    assert_equal [sent, sent], Loopback.sink_answer(out)
    assert_equal 3_000_000, got
    assert_equal 3_000_004, file.pos
    assert_equal stream(65, 0, 3_000_000), file.pread(3_000_000, 4)
    assert_operator beats, :>=, 20, "the heartbeat fiber did not run during sendallv and recvfile"
  end

  # A timeout or a stopped fiber hands nothing out and keeps what came in
  # the Reader, which is free for the next call.
  def test_readuntil_timeout_and_stop_keep_the_bytes
    sock = connect("gen len=60000 seed=63 trickle=997:5") # the line takes ~250 ms
    line, err, busy = in_scheduler do
      r = Fastsock::Reader.new(sock)
      e = assert_raises(Fastsock::TimeoutError) { r.readuntil("\r\n", timeout: 0.1) }
      waiting = spawn { r.readuntil("\r\n") }
      sleep 0.05
      b = assert_raises(Fastsock::BusyError) { r.readuntil("\r\n") }
      assert stop(waiting), "readuntil was not waiting"
      [r.readuntil("\r\n"), e, b]
    end
    assert_equal 0, err.nbytes
    assert_match(/in use/, busy.message)
    assert_equal stream(63, 0, 50_564), line
  end

  def test_full_duplex_on_one_socket
    n = 8 << 20
    data = stream(11, 0, n)
    sock = connect("echo")
    got = in_scheduler do
      reader = spawn { Fastsock.recvall(sock, n) }
      writer = spawn { Fastsock.sendall(sock, data) }
      assert_equal n, join(writer)
      join(reader)
    end
    assert_equal data, got
  end

  def test_tls_and_non_sockets_are_refused
    a, b = UNIXSocket.pair
    @open << a << b
    r, w = IO.pipe
    @open << r << w
    in_scheduler do
      e = assert_raises(TypeError) { Fastsock.recvall(OpenSSL::SSL::SSLSocket.new(a), 1) }
      assert_match(/SSLSocket/, e.message)
      assert_raises(Errno::ENOTSOCK) { Fastsock.recvall(r, 1) }
      assert_raises(Errno::ENOTSOCK) { Fastsock.sendall(w, "x") }
    end
  end

  # A stopped task returns nothing: the position lives in the caller's
  # String, whose bytesize is what came. 1,000 stops at random points, the
  # stream resumed from there each time, then once more without a stop, and
  # everything verified. The stream (64 MiB at 4 KiB a millisecond) outlasts
  # the stops, so every stop lands mid-transfer. Under ASan (its runtime
  # preloaded into the interpreter) a stop costs ~30x more: 100 there.
  STOPS = ENV.fetch("LD_PRELOAD", "").include?("libasan") ? 100 : 1000

  def test_a_thousand_stops_lose_nothing
    n = 64 << 20
    sock = connect("gen len=#{n} seed=12 trickle=4096:1")
    buf = String.new(encoding: Encoding::BINARY)
    stops = in_scheduler do
      count = 0
      while count < STOPS && buf.bytesize < n
        t = spawn { Fastsock.recvall_into(sock, buf, n - buf.bytesize, buf.bytesize) }
        sleep(rand * 0.0005)
        count += 1 if stop(t)
        join(t)
      end
      Fastsock.recvall_into(sock, buf, [100_000, n - buf.bytesize].min, buf.bytesize)
      count
    end
    assert_equal STOPS, stops
    assert_operator buf.bytesize, :>=, 100_000
    assert_equal stream(12, 0, buf.bytesize), buf
  end

  def test_a_receiver_in_a_fiber
    n = 3 << 20
    sock = connect("gen len=#{n} seed=13")
    data = in_scheduler do
      rx = Fastsock::Receiver.new(sock, n, budget: 256 << 10)
      sock.wait_readable while (r = rx.recv_nonblock(exception: false)) == :wait_readable
      r
    end
    assert_equal stream(13, 0, n), data
  end
end

class AsyncSchedulerTest < Minitest::Test
  include SchedulerContract

  # Async 1.30's Task#wait raises a result that is an exception, and these
  # blocks return the exceptions they caught: wrapped.
  def in_scheduler
    Async { [yield] }.wait.first
  end

  def spawn = Async { [yield] }
  def join(task) = task.wait&.first

  # true when the task was still running.
  def stop(task)
    running = task.running?
    task.stop
    running
  end

  def test_with_timeout_is_raised_with_the_progress
    sock = connect("gen len=100000 seed=20 stall=2222 stall_ms=3000")
    err = Async do |task|
      task.with_timeout(0.3) { Fastsock.recvall(sock, 100_000) }
    rescue Async::TimeoutError => e
      [e]
    end.wait.first
    assert_kind_of Async::TimeoutError, err
    assert_partial err, 20, 2222
  end

  def test_task_stop_carries_the_progress
    sock = connect("gen len=100000 seed=21 stall=3333 stall_ms=3000")
    seen = nil
    Async do |task|
      t = task.async do
        Fastsock.recvall(sock, 100_000)
      rescue Exception => e # rubocop:disable Lint/RescueException
        seen = e
        raise
      end
      sleep 0.2
      t.stop
    end.wait
    assert_partial seen, 21, 3333
  end

  # Ctrl-C lands in the reactor's own loop; the reactor stops its tasks on
  # the way out, and the receive's exception says what came.
  def test_ctrl_c_stops_a_reactor_waiting_in_fastsock
    dirs = $LOADED_FEATURES.grep(%r{(/fastsock\.rb|/fastsock/native\.so)\z}).map do |f|
      f.end_with?(".so") ? File.dirname(f, 2) : File.dirname(f)
    end
    script = <<~RUBY
      require "async"; require "fastsock"; require "socket"
      s = TCPSocket.new("127.0.0.1", Integer(ARGV[0]))
      s.write("gen len=100000 seed=1 stall=100 stall_ms=10000\\n")
      seen = nil
      t0 = nil
      begin
        Async do
          $stdout.puts "ready"; $stdout.flush
          t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          Fastsock.recvall(s, 100000)
          puts "finished"
        rescue Exception => e
          seen = e
          raise
        end
      rescue Interrupt
        puts "interrupted %.2f %s" % [Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, seen&.nbytes.inspect]
      end
    RUBY
    argv = [RbConfig.ruby, *dirs.uniq.flat_map { ["-I", _1] }, "-e", script, SERVER.port.to_s]
    IO.popen(argv, "r", err: File::NULL) do |io|
      assert_equal "ready\n", io.gets
      sleep 0.3
      Process.kill("INT", io.pid)
      line = io.gets
      assert_match(/\Ainterrupted /, line)
      _, dt, nbytes = line.split
      assert_operator Float(dt), :<, 1.5
      assert_equal "100", nbytes
    end
  end

  def test_thread_raise_reaches_a_reactor_waiting_in_fastsock
    sock = connect("gen len=100000 seed=22 stall=10 stall_ms=3000")
    assert_operator(raise_into_waiting { Async { Fastsock.recvall(sock, 100_000) }.wait }, :<, 1.0)
  end
end

class MiniSchedulerTest < Minitest::Test
  include SchedulerContract

  def in_scheduler
    value = error = nil
    Thread.new do
      @sched = MiniScheduler.new
      Fiber.set_scheduler(@sched)
      Fiber.schedule do
        value = yield
      rescue Exception => e # rubocop:disable Lint/RescueException
        error = e
      end
      @sched.run
    ensure
      Fiber.set_scheduler(nil)
    end.join
    raise error if error

    value
  end

  Handle = Struct.new(:fiber, :value, :error, :done)

  def spawn
    h = Handle.new(nil, nil, nil, false)
    h.fiber = Fiber.schedule do
      h.value = yield
    rescue Exception => e # rubocop:disable Lint/RescueException
      h.error = e
    ensure
      h.done = true
    end
    h
  end

  def join(handle)
    sleep 0.001 until handle.done
    raise handle.error if handle.error && !handle.error.is_a?(StopTest)

    handle.value
  end

  class StopTest < StandardError; end

  def stop(handle)
    return false if handle.done

    handle.fiber.raise(StopTest)
    true
  end

  # A fiber the scheduler drops while it waits in a receive never ends it;
  # once the fiber is collected, the socket is free for another receive,
  # which gets the rest of the stream (the dropped one's bytes went with it).
  def test_a_dropped_fiber_does_not_hold_the_socket
    sock = connect("gen len=100000 seed=31 trickle=2000:5")
    rest = in_scheduler do
      # Both in fibers of their own: a conservative scan of this fiber's
      # stack could find the dropped one in a stale slot and keep it.
      join(spawn { lose_a_receive(sock) })
      join(spawn do
        got = String.new(encoding: Encoding::BINARY)
        nil while Fastsock.recv_into(sock, got, 65_536, got.bytesize, timeout: 10)
        got
      end)
    end
    assert_operator rest.bytesize, :>, 0
    assert_operator rest.bytesize, :<=, 100_000
    assert_equal stream(31, 100_000 - rest.bytesize, rest.bytesize), rest
  end

  def lose_a_receive(sock)
    lost = Fiber.new(blocking: false) { Fastsock.recvall(sock, 100_000) }
    lost.resume # runs until it waits
    @sched.forget(lost)
    nil
  end

  def test_a_wait_the_scheduler_cuts_short_is_a_timeout_with_the_progress
    sock = connect("gen len=100000 seed=30 stall=3000 stall_ms=3000")
    err = in_scheduler do
      me = Fiber.current
      cutter = spawn do
        sleep 0.2
        @sched.cut(me)
      end
      e = assert_raises(Fastsock::TimeoutError) { Fastsock.recvall(sock, 100_000) }
      join(cutter)
      e
    end
    assert_partial err, 30, 3000
  end
end

# The progressive objects, outside any scheduler.
class ProgressiveTest < Minitest::Test
  include LoopbackTest

  def test_a_fresh_result_is_handed_out_only_when_complete
    sock = connect("gen len=300000 seed=40 trickle=30000:10")
    rx = Fastsock::Receiver.new(sock, 300_000, budget: 50_000)
    assert_raises(IO::EAGAINWaitReadable) { rx.recv_nonblock } until rx.nbytes.positive?
    refute rx.complete?
    assert_nil rx.result
    assert_equal :read, rx.want
    until (r = rx.recv_nonblock(exception: false)).is_a?(String)
      assert_nil rx.result
      IO.select([rx])
      GC.start
      GC.compact if GC.respond_to?(:compact)
    end
    assert_same r, rx.result
    assert_equal stream(40, 0, 300_000), r
    assert_nil rx.want
    assert_operator rx.steps, :>=, 6
  end

  def test_a_target_string_shows_only_what_came
    sock = connect("gen len=200000 seed=41 trickle=20000:5")
    buf = +"head"
    rx = Fastsock::Receiver.new(sock, 200_000, buf, 4, budget: 30_000)
    loop do
      r = rx.recv_nonblock(exception: false)
      assert_equal 4 + rx.nbytes, buf.bytesize
      assert_equal "head".b + stream(41, 0, rx.nbytes), buf.b
      break if r == 200_000

      IO.select([sock])
      GC.compact if GC.respond_to?(:compact)
    end
    assert rx.complete?
  end

  def test_a_shortened_target_is_refused
    sock = connect("gen len=100000 seed=42 trickle=10000:10")
    buf = +""
    rx = Fastsock::Receiver.new(sock, 100_000, buf)
    IO.select([sock])
    rx.recv_nonblock(exception: false)
    buf.clear
    IO.select([sock])
    assert_raises(RuntimeError) { rx.recv_nonblock(exception: false) }
  end

  def test_a_sender_sends_the_string_as_it_was
    data = stream(43, 0, 1 << 20)
    src = data.dup
    sock = connect("sink seed=43 off=0")
    tx = Fastsock::Sender.new(sock, src, budget: 100_000)
    src.replace("changed")
    IO.select(nil, [tx]) while tx.send_nonblock(exception: false) == :wait_writable
    assert_equal data.bytesize, tx.nbytes
    assert_equal [data.bytesize] * 2, Loopback.sink_answer(sock)
  end

  def test_a_file_sender_leaves_the_position_after_what_went
    Tempfile.create("fastsock-sender") do |f|
      f.binmode
      f.write(stream(44, 0, 500_000))
      f.flush
      sock = connect("sink seed=44 off=1000")
      tx = Fastsock::Sender.new(sock, f, 1000, nil)
      tx.send_nonblock
    rescue IO::EAGAINWaitWritable
      IO.select(nil, [sock])
      retry
    else
      assert_equal 499_000, tx.count
      assert_equal 500_000, f.pos
      assert_equal [499_000] * 2, Loopback.sink_answer(sock)
    end
  end

  def test_end_of_stream_gives_the_partial
    sock = connect("gen len=10000 seed=45 close=777")
    rx = Fastsock::Receiver.new(sock, 10_000)
    err = assert_raises(Fastsock::IncompleteError) do
      IO.select([sock]) while rx.recv_nonblock(exception: false) == :wait_readable
    end
    assert_partial err, 45, 777
    assert_equal stream(45, 0, 777), rx.partial
    assert rx.ended?
    assert_raises(Fastsock::IncompleteError) { rx.recv_nonblock }
  end
end
