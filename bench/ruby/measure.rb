# frozen_string_literal: true

# The clock and the peak-RSS measure that eventloop.rb and protocol.rb share,
# so that their rows' rss_peak_mb and rss_base_mb mean the same thing.
require "fiddle"

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def status_mb(field)
  File.foreach("/proc/self/status") { |l| return l.split[1].to_i / 1024.0 if l.start_with?(field) }
  0.0
end

# glibc keeps freed blocks below its (self-raising) mmap threshold in the
# heap: given back here, so that one route's payload does not count in the
# next one's peak.
MALLOC_TRIM = begin
  Fiddle::Function.new(Fiddle::Handle::DEFAULT["malloc_trim"], [Fiddle::TYPE_SIZE_T], Fiddle::TYPE_INT)
rescue Fiddle::DLError
  nil
end

# "5" resets VmHWM to the current RSS, which it returns (the base that the
# transfer's peak is measured from).
def reset_peak
  GC.start
  MALLOC_TRIM&.call(0)
  File.write("/proc/self/clear_refs", "5")
  status_mb("VmRSS:")
end
