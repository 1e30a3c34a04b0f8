# frozen_string_literal: true

# A minimal Fiber scheduler (Ruby 3.1's interface) over IO.select, so that
# fastsock's scheduler contract is tested against more than one gem's
# internals. Waits are kept per fiber, not per IO: two fibers may wait on one
# IO object. #cut(fiber) ends a fiber's wait early with a falsy answer (a
# scheduler-side timeout, the way ruby-async 1.30 reports with_timeout).
class MiniScheduler
  def initialize
    @waits = {}      # fiber => [io or nil, events, deadline or nil]
    @ready = []      # [fiber, value] to resume
    @blocked = {}    # fiber => true while in #block without a deadline
    @lock = Mutex.new
    @wake_r, @wake_w = IO.pipe
  end

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def io_wait(io, events, timeout = nil)
    wait_for(io, events, timeout)
  end

  def kernel_sleep(duration = nil)
    wait_for(nil, 0, duration)
    true
  end

  def block(_blocker, timeout = nil)
    @blocked[Fiber.current] = true
    wait_for(nil, 0, timeout)
  ensure
    @blocked.delete(Fiber.current)
  end

  # May come from another thread.
  def unblock(_blocker, fiber)
    @lock.synchronize { @ready << [fiber, true] }
    @wake_w.write_nonblock(".", exception: false)
  end

  def fiber(&block)
    f = Fiber.new(blocking: false, &block)
    f.resume
    f
  end

  # Ends fiber's wait now, as if the scheduler's own timeout had passed.
  def cut(fiber)
    return unless @waits.key?(fiber)

    @waits.delete(fiber)
    @ready << [fiber, nil]
  end

  # Drops fiber's wait without ever resuming it, as a scheduler that loses
  # a fiber would.
  def forget(fiber)
    @waits.delete(fiber)
  end

  def close
    run
    @wake_r.close
    @wake_w.close
  end

  def run
    until @waits.empty? && @ready.empty? && @blocked.empty?
      resume_ready
      break if @waits.empty? && @blocked.empty?

      select_once
    end
  end

  private

  def wait_for(io, events, timeout)
    fiber = Fiber.current
    @waits[fiber] = [io, events, timeout && (now + timeout)]
    Fiber.yield
  ensure
    @waits.delete(fiber)
  end

  def resume_ready
    batch = @lock.synchronize { @ready.slice!(0..) }
    batch.each { |fiber, value| fiber.resume(value) if fiber.alive? }
  end

  def select_once
    readers = [@wake_r]
    writers = []
    soonest = nil
    @waits.each_value do |io, events, deadline|
      readers << io if io && (events & IO::READABLE).positive?
      writers << io if io && (events & IO::WRITABLE).positive?
      soonest = deadline if deadline && (soonest.nil? || deadline < soonest)
    end
    delay = soonest && [soonest - now, 0].max
    delay = 0 unless @ready.empty?
    r, w = IO.select(readers.uniq, writers.uniq, nil, delay)
    @wake_r.read_nonblock(64, exception: false) if r&.include?(@wake_r)
    t = now
    @waits.to_a.each do |fiber, (io, events, deadline)|
      got = 0
      got |= IO::READABLE if io && r&.include?(io) && (events & IO::READABLE).positive?
      got |= IO::WRITABLE if io && w&.include?(io) && (events & IO::WRITABLE).positive?
      if got.positive?
        @waits.delete(fiber)
        @ready << [fiber, got]
      elsif deadline && t >= deadline
        @waits.delete(fiber)
        @ready << [fiber, io ? false : true]
      end
    end
  end
end
