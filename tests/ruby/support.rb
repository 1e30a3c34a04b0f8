# frozen_string_literal: true

# What the Minitest files share: one loopback server for the process
# (FASTSOCK_LOOPBACK_SERVER names it) and the per-test bookkeeping that closes
# every socket and file a test opened, whatever the test's outcome.
require "minitest/autorun"
require "fastsock"
require "socket"
require_relative "loopback"

SERVER = Loopback::Server.new(ENV.fetch("FASTSOCK_LOOPBACK_SERVER"))
Minitest.after_run { SERVER.stop }

module LoopbackTest
  def setup
    @open = []
  end

  def teardown
    @open.each { |io| io.close unless io.closed? }
  end

  def connect(request)
    SERVER.connect(request).tap { |s| @open << s }
  end

  def pair
    UNIXSocket.pair.each { |s| @open << s }
  end

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  def stream(seed, off, len) = Loopback.stream(seed, off, len)

  # Thread#raise into a thread left 0.3 s in the block, where it waits;
  # returns how long the RuntimeError took to come out of its join.
  def raise_into_waiting(&work)
    th = Thread.new(&work)
    th.report_on_exception = false
    sleep 0.3
    t0 = now
    th.raise(RuntimeError, "stop")
    err = assert_raises(RuntimeError) { th.join }
    assert_equal "stop", err.message
    now - t0
  end

  # err reports exactly the first n bytes of seed's stream as what came.
  def assert_partial(err, seed, n)
    assert_equal n, err.nbytes
    assert_equal stream(seed, 0, n), err.partial
  end
end
