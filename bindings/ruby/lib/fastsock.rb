# frozen_string_literal: true

# Bulk socket I/O with few copies and few system calls.
#
# Every call runs its whole transfer in C with the GVL released: other
# threads keep running, and Thread#raise, Thread#kill, Timeout.timeout and
# Ctrl-C interrupt a blocked transfer promptly.
#
# Inside a non-blocking fiber with Fiber.scheduler set (ruby-async, or any
# scheduler implementing +io_wait+), every call that would wait waits through
# the scheduler instead, and the other fibers run meanwhile: the data moves
# in non-blocking steps of at most about 1 MiB between waits. +timeout:+, the
# scheduler's own timeouts (Async::Task#with_timeout), Async::Task#stop and
# Thread#raise stop such a transfer between steps; the exception carries
# {TransferError#nbytes} (and +partial+ for {recvall}) as in a thread. A
# stopped task returns nothing, so a transfer that must be resumed keeps its
# position where the caller can read it: {recvall_into} a String the caller
# owns (its bytesize grows with every byte received), or a {Receiver}. Two
# bulk receives on one socket at once raise {BusyError}; a receive in one
# fiber and a send in another (full duplex) is fine. {sendfile} from a pipe
# waits for the pipe through the scheduler too.
#
# A +sock+ is a BasicSocket or any IO (or an object answering +to_io+), or
# an Integer file descriptor. Bytes the IO has already read ahead (after
# +gets+) are taken first, never skipped. OpenSSL::SSL::SSLSocket is refused:
# raw bytes would bypass the encryption.
#
# Sizes, offsets and counts are in bytes, whatever a String's encoding.
#
# Errors: Errno::* (SystemCallError) from the system, IO::EAGAINWaitReadable
# and IO::EAGAINWaitWritable for +nonblock: true+, Fastsock::TimeoutError,
# Fastsock::IncompleteError, ArgumentError and TypeError for bad arguments
# (before any byte moves), NoMemoryError when +n+ can't be allocated (also
# before any byte moves). Every error after part of a transfer carries
# {TransferError#nbytes}.
#
# The +*_into+ calls write into the target String in place and grow it as
# IO#read(len, outbuf) grows its outbuf: when +offset + n+ lies beyond its
# bytesize, room is reserved first and the bytes are received straight into
# it. Afterwards, also after an error or an interrupt, its bytesize is
# max(its old bytesize, +offset+ + bytes received): no byte that nobody wrote
# ever shows. An +offset+ beyond the bytesize is an ArgumentError (growing
# would leave a gap). The String keeps its encoding and is locked during the
# call (another thread that resizes it gets a RuntimeError).
module Fastsock
  # Mixed into every error a transfer raises (Errno::* instances included):
  # how much moved before it failed.
  module TransferError
    # @return [Integer] bytes received or sent before the error
    attr_reader :nbytes

    # @return [String, nil] the bytes {Fastsock.recvall} received before the
    #   error (binary); nil for the other calls, whose bytes are in the
    #   caller's String
    attr_reader :partial
  end

  # The stream ended before the count was reached.
  class IncompleteError < EOFError
    include TransferError

    # @return [Integer] the bytes that were asked for
    attr_reader :expected
  end

  # Another fiber is already receiving on this socket under the Fiber
  # scheduler: two receives would split one stream between them.
  class BusyError < IOError
    include TransferError
  end

  # The timeout passed before the transfer was complete.
  TimeoutError = Class.new(defined?(IO::TimeoutError) ? IO::TimeoutError : IOError) do
    include TransferError
  end

  # {Reader#readuntil} found no delimiter within +max+ bytes. Nothing was
  # consumed: the bytes stay in the Reader (its {Reader#buffered} says how
  # many), so a longer +max+ or a {Reader#recvall} can still take them.
  class TooLongError < IOError
    include TransferError
  end
end

require "fastsock/native"

module Fastsock
  # @return [String] the release, "X.Y.Z" (the top-level VERSION file, compiled in)
  VERSION = Native::VERSION

  class << self
    # Receives exactly +n+ bytes.
    #
    # The result is allocated once, at +n+ bytes, and filled in place.
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param n [Integer] bytes to receive
    # @param timeout [Numeric, nil] seconds for the whole transfer; nil: no limit
    # @return [String] +n+ bytes, binary (ASCII-8BIT)
    # @raise [IncompleteError] end of stream first; +partial+ holds what came
    # @raise [TimeoutError] +nbytes+ and +partial+ say what came
    # @raise [NoMemoryError] +n+ bytes can't be allocated
    def recvall(sock, n, timeout: nil)
      Native.recvall(sock, n, bulk_timeout(timeout))
    end

    # Receives exactly +n+ bytes into +buf+ at byte +offset+, in place.
    #
    # +buf+ grows when +offset + n+ lies beyond it, as IO#read(len, outbuf)
    # grows its outbuf: room for all +n+ bytes is reserved before the
    # transfer, and afterwards +buf.bytesize+ is max(its old bytesize,
    # +offset+ + bytes received), on success and on every error, so a failed
    # call leaves +buf+ ending at the last byte that came (when it grew).
    # Its encoding is kept.
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param buf [String] the target; frozen is a FrozenError
    # @param n [Integer, nil] bytes to receive; nil: up to the end of +buf+
    # @param offset [Integer] byte offset into +buf+, at most +buf.bytesize+
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] +n+
    # @raise [ArgumentError] +offset+ beyond +buf.bytesize+, or negative
    # @raise [NoMemoryError] +offset + n+ bytes can't be allocated; nothing moved
    # @raise [IncompleteError] end of stream first; +nbytes+ were written
    # @raise [TimeoutError] +nbytes+ were written
    def recvall_into(sock, buf, n = nil, offset = 0, timeout: nil)
      Native.recvall_into(sock, buf, offset, n, bulk_timeout(timeout))
    end

    # One receive into +buf+ at byte +offset+: waits until data is there,
    # then takes what one system call gives (or what the IO had read ahead).
    #
    # +buf+ grows as in {recvall_into}: room for +n+ bytes is reserved, and
    # afterwards +buf.bytesize+ is max(its old bytesize, +offset+ + bytes
    # received); the room for bytes that did not come is given back.
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param buf [String] the target; frozen is a FrozenError
    # @param n [Integer, nil] at most this many bytes; nil: up to the end of +buf+
    # @param offset [Integer] byte offset into +buf+, at most +buf.bytesize+
    # @param nonblock [Boolean] never wait: IO::EAGAINWaitReadable when nothing is there
    # @param timeout [Numeric, nil] seconds to wait for data
    # @return [Integer, nil] bytes received; nil at end of stream, like IO#read(n, buf)
    # @raise [ArgumentError] +offset+ beyond +buf.bytesize+, or negative
    # @raise [NoMemoryError] +offset + n+ bytes can't be allocated; nothing moved
    def recv_into(sock, buf, n = nil, offset = 0, nonblock: false, timeout: nil)
      Native.recv_into(sock, buf, offset, n, 0, single_timeout(nonblock, timeout))
    end

    # One send of +data+[offset, count] (bytes), without slicing: waits
    # until the socket is writable, then sends what one system call takes.
    #
    # Note that this is Fastsock.send: use +__send__+ to call a method by name.
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param data [String]
    # @param offset [Integer] byte offset into +data+
    # @param count [Integer, nil] bytes; nil: to the end of +data+
    # @param nonblock [Boolean] never wait: IO::EAGAINWaitWritable when nothing can be sent
    # @param timeout [Numeric, nil] seconds to wait for room
    # @return [Integer] bytes sent
    # @raise [Errno::EPIPE, Errno::ECONNRESET] the peer is gone (never SIGPIPE)
    def send(sock, data, offset = 0, count = nil, nonblock: false, timeout: nil)
      Native.send(sock, data, offset, count, single_timeout(nonblock, timeout))
    end

    # Sends all of +data+[offset, count] (bytes).
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param data [String]
    # @param offset [Integer] byte offset into +data+
    # @param count [Integer, nil] bytes; nil: to the end of +data+
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] bytes sent
    # @raise [TimeoutError] +nbytes+ went out
    def sendall(sock, data, offset = 0, count = nil, timeout: nil)
      Native.sendall(sock, data, offset, count, bulk_timeout(timeout))
    end

    # Sends +count+ bytes of +file+ from byte +offset+ with sendfile(2),
    # falling back to read and send where the kernel can't (a pipe).
    #
    # As Python's socket.sendfile: +offset+ counts from the start of the
    # file, not from its position, and afterwards the position is
    # +offset+ plus the bytes sent (also after an error).
    #
    # @param sock [BasicSocket, IO, Integer]
    # @param file [File, IO, Integer]
    # @param offset [Integer] byte offset into the file (0 for a pipe)
    # @param count [Integer, nil] bytes; nil or beyond the end: to the end
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] bytes sent
    def sendfile(sock, file, offset = 0, count = nil, timeout: nil)
      Native.sendfile(sock, file, offset, count, bulk_timeout(timeout))
    end

    # @return [Integer] recv system calls the last {recvall} or
    #   {recvall_into} of this thread made
    def recvall_cycles
      Native.recvall_cycles
    end

    # Sends several Strings as one stream, like IO#write(*strings), without
    # joining them: sendmsg(2) over their bytes in batches, a short send
    # resuming inside the right String.
    #
    # Up to 64 KiB in all go in one system call with the GVL held when the
    # socket has room; the rest with the GVL released, each String locked
    # for the call. Under a Fiber scheduler it sends up to 1 MiB at a time
    # between the scheduler's waits, as {sendall} does.
    #
    # @example a header, a body and a trailer
    #   Fastsock.sendallv(sock, ["$#{body.bytesize}\r\n", body, "\r\n"])
    # @param sock [BasicSocket, IO, Integer]
    # @param strings [Array<String>] sent in order; their encodings don't matter
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] bytes sent: the sum of the bytesizes
    # @raise [TypeError] an element is not a String (nothing sent)
    # @raise [TimeoutError] +nbytes+ went out
    # @raise [Errno::EPIPE, Errno::ECONNRESET] the peer is gone (+nbytes+ went out)
    def sendallv(sock, strings, timeout: nil)
      Native.sendallv(sock, strings, bulk_timeout(timeout))
    end

    # Receives exactly +count+ bytes from +sock+ into +file+, in the kernel
    # where it can: splice(2) through a pipe, so the bytes never enter Ruby.
    # It falls back to recv and write for a file opened for appending, a
    # pipe, or the portable build.
    #
    # Position, as for {sendfile}: Ruby's write buffer is flushed first;
    # +offset+ nil means the file's current position; afterwards the
    # position is +offset+ plus the bytes written (also after an error). A
    # file opened for appending, or a pipe, is written where it stands and
    # takes no +offset+. Under a Fiber scheduler it moves up to 1 MiB at a
    # time between the scheduler's waits (a pipe that is full still blocks
    # the thread while it is written).
    #
    # @example a file upload of known length
    #   File.open("upload.bin", "wb") { |f| Fastsock.recvfile(sock, f, length) }
    # @param sock [BasicSocket, IO, Integer]
    # @param file [File, IO, Integer] open for writing
    # @param count [Integer] bytes to receive
    # @param offset [Integer, nil] byte offset in the file; nil: its position
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] +count+
    # @raise [IOError] +file+ is not opened for writing (nothing received)
    # @raise [ArgumentError] a negative +count+ or +offset+, an +offset+ for
    #   an appending file or a pipe
    # @raise [IncompleteError] end of stream first; +nbytes+ were written
    # @raise [TimeoutError] +nbytes+ were written
    def recvfile(sock, file, count, offset = nil, timeout: nil)
      Native.recvfile(sock, file, count, offset, bulk_timeout(timeout))
    end

    # The byte offset of the first +needle+ in +str+ at or after byte
    # +from+, for Ruby 3.1, which has no String#byteindex. Bytes are
    # compared as they are, whatever the encodings.
    #
    # @example
    #   Fastsock.find("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n")   # => 23
    # @param str [String]
    # @param needle [String] not empty
    # @param from [Integer] byte offset to start at; beyond the end: nil
    # @return [Integer, nil] the byte offset, or nil when there is none
    # @raise [ArgumentError] an empty +needle+, a negative +from+
    def find(str, needle, from = 0)
      Native.find(str, needle, from)
    end

    # Splits +str+ at every +sep+, by bytes, without copying the fields.
    #
    # The fields are the ones Python's bytes.split(sep) makes: n separators
    # give n + 1 fields, empty ones included (String#split drops trailing
    # empty fields; this does not).
    #
    # @example offsets, then a field
    #   offs = Fastsock.split("a\nbb\n", "\n")   # => [0, 1, 2, 4, 5, 5]
    #   "a\nbb\n".byteslice(offs[2], offs[3] - offs[2])   # => "bb"
    # @param str [String]
    # @param sep [String] not empty
    # @param as [Symbol] +:offsets+: a flat Array of Integers, each field's
    #   start and end byte offsets ([start, end), as MatchData#offset), no
    #   object per field; +:strings+: Strings sharing +str+'s bytes (those
    #   of at most 23 bytes are copied, as String#byteslice does)
    # @return [Array<Integer>, Array<String>]
    # @raise [ArgumentError] an empty +sep+, an unknown +as+
    def split(str, sep, as: :offsets)
      strings = case as
                when :offsets then false
                when :strings then true
                else raise ArgumentError, "fastsock.split: as must be :offsets or :strings, not #{as.inspect}"
                end
      Native.split(str, sep, strings)
    end

    private

    # The all-or-nothing calls have no non-blocking form: a transfer that
    # stops half-way has to be resumed by the caller (use recv_into/send
    # with nonblock: true for that).
    def bulk_timeout(timeout)
      return nil if timeout.nil?
      raise TypeError, "timeout must be Numeric or nil, not #{timeout.class}" unless timeout.is_a?(Numeric)
      raise ArgumentError, "timeout must be > 0 seconds (or nil)" unless timeout.positive?

      timeout
    end

    def single_timeout(nonblock, timeout)
      return 0 if nonblock

      bulk_timeout(timeout)
    end
  end
end

module Fastsock
  # Receives exactly {#count} bytes, step by step, for a loop the program
  # drives itself (IO.select, nio4r): each {#recv_nonblock} moves what the
  # socket has now, up to {#budget} bytes, and never waits. It follows
  # IO#read_nonblock's conventions.
  #
  # Into a fresh String (+Receiver.new(sock, n)+), which nobody can see
  # until it is complete: {#result} is nil until then. Or into the caller's
  # String at +offset+ (+Receiver.new(sock, n, buf, offset)+), grown as
  # {Fastsock.recvall_into} grows it: after every step its bytesize is
  # max(its old bytesize, offset + {#nbytes}), so it never shows a byte that
  # was not received, and a stopped loop can resume from there.
  #
  # Bytes the IO has already read ahead (after +gets+) are taken first.
  #
  # @example an IO.select loop
  #   rx = Fastsock::Receiver.new(sock, 64 << 20)
  #   until (data = rx.recv_nonblock(exception: false)).is_a?(String)
  #     IO.select([sock])
  #   end
  class Receiver
    # @param sock [BasicSocket, IO, Integer]
    # @param n [Integer, nil] bytes to receive; nil with +buf+: to its end
    # @param buf [String, nil] the target; nil: a fresh binary String
    # @param offset [Integer] byte offset into +buf+, at most +buf.bytesize+
    # @param budget [Integer, nil] bytes one step moves at most; nil: 1 MiB
    # @raise [ArgumentError] +offset+ beyond +buf.bytesize+, negative sizes
    # @raise [NoMemoryError] +n+ (or +offset + n+) bytes can't be allocated
    # @raise [TypeError] not a socket object, an SSL socket, +buf+ not a String
    # @raise [Errno::ENOTSOCK] +sock+ is not a socket
    def initialize(sock, n = nil, buf = nil, offset = 0, budget: nil)
      raise ArgumentError, "Fastsock::Receiver: n is required without a buffer" if n.nil? && buf.nil?

      __init(sock, n, buf, offset, budget)
    end

    # One step: receives what the socket has now, up to {#budget} bytes.
    #
    # @param exception [Boolean] false: return +:wait_readable+ instead of
    #   raising IO::EAGAINWaitReadable
    # @return [String, Integer, Symbol] when complete: the fresh String, or
    #   {#count} for a receive into the caller's String; else +:wait_readable+
    #   (with +exception: false+)
    # @raise [IO::EAGAINWaitReadable] not complete yet: wait until the socket
    #   is readable, then call again
    # @raise [IncompleteError] end of stream first; +nbytes+ and (fresh)
    #   +partial+ say what came
    # @raise [Errno::ECONNRESET, IOError] and the other errors of {Fastsock.recvall}
    def recv_nonblock(exception: true)
      return(@into ? count : result) if __step
      raise IO::EAGAINWaitReadable, "Fastsock::Receiver: #{nbytes} of #{count} bytes" if exception

      :wait_readable
    end

    # @!method result
    #   @return [String, nil] the received String once complete, else nil
    # @!method partial
    #   @return [String, nil] after a fresh receive failed: the bytes that came
    # @!method nbytes
    #   @return [Integer] bytes received so far, read-ahead bytes included
    # @!method count
    #   @return [Integer] bytes the transfer receives in all
    # @!method steps
    #   @return [Integer] steps that moved data
    # @!method cycles
    #   @return [Integer] recv system calls made
    # @!method complete?
    #   @return [Boolean] all {#count} bytes are there
    # @!method ended?
    #   @return [Boolean] complete or failed: further steps change nothing
    # @!method budget
    #   @return [Integer] bytes one step moves at most
    # @!method budget=(bytes)
    #   @param bytes [Integer, nil] nil: the default (1 MiB); may change between steps
    # @!method want
    #   @return [Symbol, nil] +:read+ until it has ended, then nil
    # @!method socket
    #   @return [BasicSocket, IO, Integer] the +sock+ it was given

    # @return [IO] the socket as an IO, for IO.select and nio4r
    def to_io
      s = socket
      @to_io ||= s.is_a?(Integer) ? IO.for_fd(s, autoclose: false) : s.to_io
    end

    private

    alias __init_native __init
    def __init(sock, n, buf, offset, budget)
      @into = !buf.nil?
      __init_native(sock, n, buf, offset, budget)
    end
  end

  # Sends a String range, or a regular file with sendfile(2), step by step,
  # for a loop the program drives itself: each {#send_nonblock} sends what
  # the socket takes now, up to {#budget} bytes, and never waits. A String
  # that is not frozen is sent as it was when the Sender was made (a
  # snapshot that shares its bytes, not a copy). A file's position ends at
  # +offset+ + {#nbytes}, as after {Fastsock.sendfile}.
  #
  # @example an IO.select loop
  #   tx = Fastsock::Sender.new(sock, File.open("big.iso"))
  #   IO.select(nil, [sock]) while tx.send_nonblock(exception: false) == :wait_writable
  class Sender
    # @param sock [BasicSocket, IO, Integer]
    # @param source [String, File, Integer] a String, or a regular file (object or fd)
    # @param offset [Integer] byte offset into the String or the file
    # @param count [Integer, nil] bytes; nil (or beyond a file's end): to the end
    # @param budget [Integer, nil] bytes one step moves at most; nil: 1 MiB
    # @raise [ArgumentError] a range outside the String, a negative offset, a
    #   file that is not a regular file (a pipe: use {Fastsock.sendfile})
    # @raise [TypeError, Errno::ENOTSOCK] +sock+ is not a socket
    def initialize(sock, source, offset = 0, count = nil, budget: nil)
      __init(sock, source, offset, count, budget)
    end

    # One step: sends what the socket takes now, up to {#budget} bytes.
    #
    # @param exception [Boolean] false: return +:wait_writable+ instead of
    #   raising IO::EAGAINWaitWritable
    # @return [Integer, Symbol] when complete: the bytes sent ({#count});
    #   else +:wait_writable+ (with +exception: false+)
    # @raise [IO::EAGAINWaitWritable] not complete yet: wait until the socket
    #   is writable, then call again
    # @raise [Errno::EPIPE, Errno::ECONNRESET] the peer is gone (+nbytes+ went out)
    def send_nonblock(exception: true)
      return count if __step
      raise IO::EAGAINWaitWritable, "Fastsock::Sender: #{nbytes} of #{count} bytes" if exception

      :wait_writable
    end

    # @!method nbytes
    #   @return [Integer] bytes sent so far
    # @!method count
    #   @return [Integer] bytes the transfer sends in all (a file's clamped to its end)
    # @!method steps
    #   @return [Integer] steps that moved data
    # @!method cycles
    #   @return [Integer] send/sendfile system calls made
    # @!method complete?
    #   @return [Boolean] all {#count} bytes went out
    # @!method ended?
    #   @return [Boolean] complete or failed
    # @!method budget
    #   @return [Integer] bytes one step moves at most
    # @!method budget=(bytes)
    #   @param bytes [Integer, nil] nil: the default (1 MiB)
    # @!method want
    #   @return [Symbol, nil] +:write+ until it has ended, then nil
    # @!method socket
    #   @return [BasicSocket, IO, Integer] the +sock+ it was given

    # @return [IO] the socket as an IO, for IO.select and nio4r
    def to_io
      s = socket
      @to_io ||= s.is_a?(Integer) ? IO.for_fd(s, autoclose: false) : s.to_io
    end
  end
end

module Fastsock
  # A socket's reader for protocols: a line or a header block up to a
  # delimiter, then a body of known length, without reading past what the
  # protocol asked for into memory the body can't reach. It owns a
  # look-ahead buffer: {#readuntil} receives what the socket has (16 KiB at
  # first) and hands out the line; the bytes after it stay in the Reader,
  # and {#recvall} hands them to the body before receiving the rest
  # straight into the result. So a short reply costs the one recv that
  # brought it, and a large body is copied once at most for its first bytes.
  #
  # Whatever comes after a line belongs to the Reader now: read it through
  # the Reader, not the socket. Bytes the IO had read ahead (after +gets+)
  # become the start of the look-ahead. Inside a non-blocking fiber with
  # Fiber.scheduler set, {#readuntil} and {#recvall} wait through the
  # scheduler. One call at a time: another thread's or fiber's call while
  # one is in progress raises {BusyError}.
  #
  # @example a RESP GET
  #   r = Fastsock::Reader.new(sock)
  #   sock.write("GET key\r\n")
  #   header = r.readuntil("\r\n")              # "$1024\r\n"
  #   body = r.recvall(Integer(header[1..]) + 2).byteslice(0, 1024)
  class Reader
    # @param sock [BasicSocket, IO, Integer]
    # @raise [TypeError] not a socket object, an SSL socket
    # @raise [Errno::ENOTSOCK] +sock+ is not a socket
    def initialize(sock)
      __init(sock)
    end

    # Reads up to and including the first +delim+ within +max+ bytes.
    #
    # @param delim [String] the delimiter, not empty (bytes)
    # @param max [Integer] the longest line, delimiter included
    # @param timeout [Numeric, nil] seconds for the whole call
    # @return [String] the line with its delimiter, binary
    # @raise [TooLongError] no delimiter within +max+ bytes; nothing consumed
    # @raise [IncompleteError] end of stream first; +partial+ holds the
    #   bytes before it (handed out), +expected+ is nil
    # @raise [TimeoutError] nothing handed out: what came stays in the
    #   Reader, and a later call goes on from there
    # @raise [ArgumentError] an empty +delim+, +max+ shorter than it
    def readuntil(delim = "\r\n", max: 65_536, timeout: nil)
      __readuntil(delim, max, timeout)
    end

    # Receives exactly +n+ bytes: the look-ahead's first, then the socket's
    # straight into the result, as {Fastsock.recvall}.
    #
    # @param n [Integer]
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [String] +n+ bytes, binary
    # @raise [IncompleteError] end of stream first; +partial+ holds what came
    # @raise [TimeoutError] +nbytes+ and +partial+ say what came
    def recvall(n, timeout: nil)
      __recvall(n, timeout)
    end

    # Receives exactly +n+ bytes into +buf+ at byte +offset+, the
    # look-ahead's first, growing +buf+ as {Fastsock.recvall_into} does.
    #
    # @param buf [String] the target; frozen is a FrozenError
    # @param n [Integer, nil] bytes; nil: up to the end of +buf+
    # @param offset [Integer] byte offset into +buf+, at most +buf.bytesize+
    # @param timeout [Numeric, nil] seconds for the whole transfer
    # @return [Integer] +n+
    # @raise [IncompleteError, TimeoutError] +nbytes+ were written
    def recvall_into(buf, n = nil, offset = 0, timeout: nil)
      __recvall_into(buf, n, offset, timeout)
    end

    # @!method buffered
    #   @return [Integer] bytes read from the socket and not handed out yet
    # @!method socket
    #   @return [BasicSocket, IO, Integer] the +sock+ it was given
  end
end
