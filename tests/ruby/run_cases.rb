# frozen_string_literal: true

# The Ruby conformance runner: every case of tests/cases.txt through
# Fastsock, against the loopback server. The checks are tests/README.md's.
#
#   ruby run_cases.rb --server PATH --cases PATH [--only NAME]...
#   ruby run_cases.rb --list --cases PATH
require "fastsock"
require "socket"
require "tempfile"
require_relative "loopback"

LANG = "ruby"
OPS = %w[recvall recvall_into recv_into send sendall sendfile
         recv_steps recv_steps_into send_steps sendfile_steps
         sendallv recvfile readuntil find split].freeze
EXPECTS = %w[ok closed timeout reset peer_gone badarg badsock nomem wouldblock toolong badfile].freeze
SOCKS = %w[fd int notsock closed].freeze
INT_KEYS = %w[n bufsize offset count datalen result result_max moved moved_min cycles_max
              budget steps_min max repeat then from].freeze
KEYS = (%w[op req sock file timeout expect pieces delim hay needle sep] + INT_KEYS).freeze
# find and split work on a String in memory: no connection.
SEARCH_OPS = %w[find split].freeze
SENTINEL = 0xA5

Case = Struct.new(:name, :keys)

# The runner's own wait limit (timeout= of a progressive case) passed.
class StepsTimeout < StandardError
  attr_reader :nbytes

  def initialize(nbytes)
    super("the runner's wait limit passed after #{nbytes} bytes")
    @nbytes = nbytes
  end
end

# Parses the case file; raises with every problem if a case uses a key or a
# value this runner does not implement.
def load_cases(path)
  cases = []
  problems = []
  File.foreach(path).with_index(1) do |raw, lineno|
    line = raw.sub(/#.*/, "").strip
    next if line.empty?

    name, *tokens = line.split
    keys = {}
    overrides = {}
    tokens.each do |tok|
      key, value = tok.split("=", 2)
      if value.nil?
        problems << "#{name} (line #{lineno}): #{tok.inspect} is not key=value"
        next
      end
      base, lang = key.split("@", 2)
      if lang.nil?
        keys[base] = value
      elsif lang == LANG
        overrides[base] = value
      end
      problems << "#{name}: unknown key #{base}" unless KEYS.include?(base)
    end
    keys.merge!(overrides)
    problems.concat(check_values(name, keys))
    cases << Case.new(name, keys)
  end
  raise problems.join("\n") unless problems.empty?

  cases
end

def check_values(name, keys)
  bad = []
  bad << "#{name}: op #{keys['op'].inspect}" unless OPS.include?(keys["op"])
  bad << "#{name}: expect #{keys['expect'].inspect}" unless EXPECTS.include?(keys["expect"])
  bad << "#{name}: sock #{keys['sock']}" if keys.key?("sock") && !SOCKS.include?(keys["sock"])
  bad << "#{name}: no req" unless keys["req"] || SEARCH_OPS.include?(keys["op"])
  files = if keys["op"] == "recvfile"
            /\A((regular|append|readonly):\d+|empty|pipe)\z/
          else
            /\A(regular:\d+|empty|pipe:\d+)\z/
          end
  bad << "#{name}: file #{keys['file']}" if keys.key?("file") && keys["file"] !~ files
  bad << "#{name}: pieces #{keys['pieces']}" if keys.key?("pieces") && keys["pieces"] !~ /\A(none|(\d+(\*\d+)?|x)(:(\d+(\*\d+)?|x))*)\z/
  %w[delim needle sep].each do |k|
    bad << "#{name}: #{k}=#{keys[k]}" if keys.key?(k) && keys[k] !~ /\A(empty|(\h\h)+)\z/
  end
  bad << "#{name}: hay #{keys['hay']}" if keys.key?("hay") && keys["hay"] !~ /\A(empty|hex:(\h\h)*|stream:\d+:\d+)\z/
  INT_KEYS.each do |k|
    bad << "#{name}: #{k}=#{keys[k]} is not an integer" if keys.key?(k) && keys[k] !~ /\A-?\d+\z/
  end
  if keys.key?("timeout") && !(Float(keys["timeout"], exception: false)&.>= 0)
    bad << "#{name}: timeout=#{keys['timeout']}"
  end
  bad
end

def int(keys, key)
  keys.key?(key) ? Integer(keys[key], 10) : nil
end

def request_params(req)
  return [0, 0] if req.nil?

  params = req.split(",").drop(1).to_h { |kv| kv.split("=", 2) }
  [Integer(params.fetch("seed", "0")), Integer(params.fetch("off", "0"))]
end

# What the case's outcome is called in cases.txt.
def classify(exc, op = nil)
  case exc
  when nil then "ok"
  when Fastsock::TooLongError then "toolong"
  # recvfile on a file not opened for writing: Ruby's IOError for that.
  when IOError
    return "badfile" if op == "recvfile" && exc.message.include?("not opened for writing")

    classify_more(exc)
  # sendallv: an element that is no String is a bad argument, not a bad socket.
  when TypeError
    op == "sendallv" ? "badarg" : "badsock"
  else classify_more(exc)
  end
end

def classify_more(exc)
  case exc
  when Fastsock::IncompleteError then "closed"
  when Fastsock::TimeoutError, StepsTimeout then "timeout"
  when IO::EAGAINWaitReadable, IO::EAGAINWaitWritable then "wouldblock"
  when Errno::ECONNRESET then "reset"
  when Errno::EPIPE then "peer_gone"
  when NoMemoryError then "nomem"
  when ArgumentError, RangeError then "badarg"
  when TypeError, Errno::ENOTSOCK, Errno::EBADF, IOError then "badsock"
  else "error #{exc.class}: #{exc.message}"
  end
end

def outcome_matches?(expect, got)
  return true if expect == got
  return true if expect == "peer_gone" && got == "reset"
  # A wrong type is both a bad argument and a bad socket.
  false
end

class Runner
  def initialize(server)
    @server = server
    @portable = ENV["FASTSOCK_PORTABLE_BUILD"] == "1"
  end

  def run(kase)
    @closers = []
    keys = kase.keys
    return run_search(keys) if SEARCH_OPS.include?(keys["op"])

    seed, off = request_params(keys["req"])
    # Built before connecting: the server's pause (sendall_timeout,
    # sendfile_timeout) starts at the connection, and building 64 MiB takes
    # time on a loaded machine.
    input = case keys["op"]
            when "send", "sendall", "send_steps" then Loopback.stream(seed, 0, int(keys, "datalen"))
            when "sendfile", "sendfile_steps" then file_arg(keys["file"], seed)
            when "sendallv" then pieces_arg(keys["pieces"], seed)
            when "recvfile" then recvfile_target(keys["file"])
            end
    conn = @server.connect(keys["req"])
    @closers << conn
    sock = socket_arg(keys["sock"] || "fd", conn)
    outcome = perform(keys, sock, input)
    return check_protocol(keys, outcome, conn, seed, off) if %w[sendallv recvfile readuntil].include?(keys["op"])

    check(keys, outcome, conn, seed, off)
  ensure
    @closers&.reverse_each { |io| io.close unless io.closed? }
  end

  private

  Outcome = Struct.new(:exc, :result, :moved, :data, :buf, :file, :eof, :max_step, :steps, :problem)

  Joiner = Struct.new(:thread) do
    def close = thread.join(10)
    def closed? = !thread.alive?
  end

  def socket_arg(kind, conn)
    case kind
    when "fd" then conn
    when "int" then conn.fileno
    when "notsock"
      f = Tempfile.create("fastsock-notsock")
      File.unlink(f.path)
      f.write("x" * 64)
      f.flush
      @closers << f
      f.fileno
    when "closed"
      a, b = UNIXSocket.pair
      a.close
      b.close
      a
    end
  end

  def timeout_kw(keys, single:)
    return {} unless keys.key?("timeout")

    t = Float(keys["timeout"])
    return { nonblock: true } if t.zero? && single

    { timeout: t }
  end

  # input: the data (send, sendall) or the file (sendfile) made by run.
  def perform(keys, sock, input)
    o = Outcome.new
    n = int(keys, "n")
    offset = int(keys, "offset") || 0
    count = int(keys, "count")
    begin
      case keys["op"]
      when "recvall"
        o.data = Fastsock.recvall(sock, n, **timeout_kw(keys, single: false))
        o.result = o.data.bytesize
      when "recvall_into"
        o.buf = ("\xA5".b * int(keys, "bufsize"))
        o.result = Fastsock.recvall_into(sock, o.buf, n, offset, **timeout_kw(keys, single: false))
      when "recv_into"
        o.buf = ("\xA5".b * int(keys, "bufsize"))
        got = Fastsock.recv_into(sock, o.buf, n, offset, **timeout_kw(keys, single: true))
        o.eof = got.nil?
        o.result = got || 0
      when "send"
        o.result = Fastsock.send(sock, input, offset, count, **timeout_kw(keys, single: true))
      when "sendall"
        o.result = Fastsock.sendall(sock, input, offset, count, **timeout_kw(keys, single: false))
      when "sendfile"
        o.file = input
        o.result = Fastsock.sendfile(sock, o.file, offset, count, **timeout_kw(keys, single: false))
      when "recv_steps", "recv_steps_into", "send_steps", "sendfile_steps"
        perform_steps(keys, sock, input, o)
      when "sendallv"
        o.result = Fastsock.sendallv(sock, input, **timeout_kw(keys, single: false))
      when "recvfile"
        o.file = input
        offset = int(keys, "offset")
        o.result = Fastsock.recvfile(sock, input.io, n, offset, **timeout_kw(keys, single: false))
      when "readuntil"
        return perform_readuntil(keys, sock, o)
      end
      o.moved = o.result
    rescue NoMemoryError, StandardError => e
      o.exc = e
      o.moved = e.respond_to?(:nbytes) ? e.nbytes : nil
      o.data = e.partial if e.respond_to?(:partial)
    end
    o
  end

  # A Receiver or Sender driven by a plain IO.select loop: wait for what it
  # wants, step, until it is complete, fails, or the case's timeout passes.
  def perform_steps(keys, sock, input, o)
    n = int(keys, "n")
    offset = int(keys, "offset") || 0
    count = int(keys, "count")
    budget = int(keys, "budget")
    obj = case keys["op"]
          when "recv_steps" then Fastsock::Receiver.new(sock, n, budget: budget)
          when "recv_steps_into"
            o.buf = ("\xA5".b * int(keys, "bufsize"))
            Fastsock::Receiver.new(sock, n, o.buf, offset, budget: budget)
          else
            o.file = input if keys["op"] == "sendfile_steps"
            Fastsock::Sender.new(sock, input, offset, count, budget: budget)
          end
    receive = obj.is_a?(Fastsock::Receiver)
    limit = keys.key?("timeout") ? Float(keys["timeout"]) : nil
    deadline = limit && (now + limit)
    o.max_step = 0
    begin
      loop do
        before = obj.nbytes
        r = receive ? obj.recv_nonblock(exception: false) : obj.send_nonblock(exception: false)
        o.max_step = [o.max_step, obj.nbytes - before].max
        unless r.is_a?(Symbol)
          o.data = r if keys["op"] == "recv_steps"
          o.result = r.is_a?(String) ? r.bytesize : r
          break
        end
        left = deadline && (deadline - now)
        raise StepsTimeout, obj.nbytes if left && left <= 0

        ready = receive ? IO.select([obj], nil, nil, left) : IO.select(nil, [obj], nil, left)
        raise StepsTimeout, obj.nbytes if ready.nil?
      end
    ensure
      o.steps = obj.steps
    end
  end

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def file_arg(spec, seed)
    kind, len = spec.split(":")
    len = Integer(len || "0")
    case kind
    when "regular", "empty"
      f = Tempfile.create("fastsock-sendfile")
      File.unlink(f.path)
      @closers << f
      f.binmode
      f.write(Loopback.stream(seed, 0, len))
      f.flush
      f.rewind
      f
    when "pipe"
      r, w = IO.pipe
      writer = Thread.new do
        w.write(Loopback.stream(seed, 0, len))
      rescue Errno::EPIPE, IOError
        nil # the case sent less than the pipe holds and closed it
      ensure
        w.close unless w.closed?
      end
      # Closed in reverse: the reader first, so that a writer still blocked
      # (the case sent less than the pipe holds) fails, then it is joined.
      @closers << Joiner.new(writer) << w << r
      r
    end
  end

  # pieces=64:16777216:2, LEN*K, none, x: consecutive stream bytes from 0,
  # and nil (no String) for an x.
  def pieces_arg(spec, seed)
    return [] if spec == "none"

    at = 0
    spec.split(":").flat_map do |tok|
      next [nil] if tok == "x"

      len, times = tok.split("*").map { |v| Integer(v, 10) }
      Array.new(times || 1) do
        piece = Loopback.stream(seed, at, len)
        at += len
        piece
      end
    end
  end

  RecvfileTarget = Struct.new(:io, :kind, :prefill, :pipe_r)

  # recvfile's file: empty, regular:LEN, append:LEN, readonly:LEN (LEN bytes
  # of 0xA5) or pipe; unlinked at once, at position 0.
  def recvfile_target(spec)
    kind, len = spec.split(":")
    if kind == "pipe"
      r, w = IO.pipe
      @closers << r << w
      return RecvfileTarget.new(w, kind, 0, r)
    end
    prefill = Integer(len || "0", 10)
    f = Tempfile.create("fastsock-recvfile")
    path = f.path
    f.binmode
    f.write("\xA5".b * prefill)
    f.flush
    f.rewind
    mode = { "append" => "ab+", "readonly" => "rb" }[kind]
    if mode
      f.close
      f = File.open(path, mode)
    end
    File.unlink(path)
    @closers << f
    RecvfileTarget.new(f, kind, prefill, nil)
  end

  def hex(spec)
    spec == "empty" ? "".b : [spec].pack("H*")
  end

  # Lines through a Reader, each checked against the stream from where the
  # previous one ended; then `then` bytes through the same Reader, on
  # success and on failure alike.
  def perform_readuntil(keys, sock, o)
    seed, off = request_params(keys["req"])
    delim = hex(keys["delim"])
    total = 0
    reader = nil
    begin
      reader = Fastsock::Reader.new(sock)
      (int(keys, "repeat") || 1).times do |i|
        line = reader.readuntil(delim, max: int(keys, "max"), **timeout_kw(keys, single: false))
        o.problem ||= "line #{i + 1} is #{line.encoding}, not binary" unless line.encoding == Encoding::BINARY
        o.problem ||= "line #{i + 1} differs from the stream" unless line == Loopback.stream(seed, off + total, line.bytesize)
        o.problem ||= "line #{i + 1} does not end with the delimiter" unless line.end_with?(delim)
        total += line.bytesize
      end
      o.result = total
      o.moved = total
    rescue NoMemoryError, StandardError => e
      o.exc = e
      partial = e.respond_to?(:partial) ? e.partial : nil
      if partial
        o.problem ||= "the partial line differs from the stream" unless partial == Loopback.stream(seed, off + total, partial.bytesize)
        o.problem ||= "the partial's nbytes #{e.nbytes} is not its size" unless e.nbytes == partial.bytesize
        total += partial.bytesize
      elsif e.respond_to?(:nbytes) && e.nbytes != 0
        o.problem ||= "#{e.class} handed out #{e.nbytes} bytes"
      end
      o.moved = e.respond_to?(:nbytes) ? total : nil
    end
    o.data = total
    thenn = int(keys, "then")
    if thenn && reader
      begin
        body = reader.recvall(thenn, timeout: 30)
        o.problem ||= "the #{thenn} bytes after the line(s) differ from the stream" unless body == Loopback.stream(seed, off + total, thenn)
        o.data = total + thenn
      rescue StandardError => e
        o.problem ||= "reading the #{thenn} bytes after the line(s): #{e.class}: #{e.message}"
      end
    end
    o
  end

  # What every op's check starts with: the outcome against expect, then for an
  # error other than a refusal, the nbytes it carries against moved, moved_min.
  def outcome_problem(keys, o, got, refused)
    expect = keys["expect"]
    unless outcome_matches?(expect, got)
      detail = o.exc ? "#{o.exc.class}: #{o.exc.message}" : "returned #{o.result.inspect}"
      return "expected #{expect}, got #{got} (#{detail})"
    end
    return nil if expect == "ok" || refused
    return "#{o.exc.class} does not carry nbytes" if o.moved.nil?

    m = int(keys, "moved")
    return "moved #{o.moved}, expected #{m}" if m && o.moved != m

    mmin = int(keys, "moved_min")
    "moved #{o.moved}, expected at least #{mmin}" if mmin && o.moved < mmin
  end

  # sendallv, recvfile, readuntil: the checks of tests/README.md.
  def check_protocol(keys, o, conn, seed, off)
    expect = keys["expect"]
    refused = %w[badarg badsock badfile].include?(expect)
    problem = outcome_problem(keys, o, classify(o.exc, keys["op"]), refused) || o.problem
    return problem if problem

    if expect == "ok"
      r = int(keys, "result")
      return "result #{o.result}, expected #{r}" if r && o.result != r
    elsif refused
      return "refused, yet #{o.exc.class} says #{o.moved} bytes moved" if o.moved.to_i != 0

      o.moved = 0
    end

    case keys["op"]
    when "sendallv"
      return check_sent(keys, o, conn)
    when "recvfile"
      problem = check_file(keys, o, seed, off, refused)
      return problem if problem

      consumed = o.moved
    else
      consumed = o.data
    end
    return nil unless refused

    first = read_one(conn)
    return "a refused call consumed data (next byte #{first.inspect})" unless first == Loopback.stream(seed, off + consumed, 1)

    nil
  end

  # The file holds the stream at [at, at + moved), 0xA5 elsewhere, its
  # length is max(LEN, at + moved), and its position is at + moved.
  def check_file(keys, o, seed, off, refused)
    t = o.file
    moved = o.moved
    want = Loopback.stream(seed, off, moved)
    if t.kind == "pipe"
      got = moved.zero? ? "".b : t.pipe_r.read(moved)
      return "the pipe holds #{got.inspect[0, 40]}, not the stream" unless got == want

      return nil
    end
    return nil if refused

    at = t.kind == "append" ? t.prefill : (int(keys, "offset") || 0)
    size = [t.prefill, at + moved].max
    return "the file holds #{t.io.size} bytes, expected #{size}" unless t.io.size == size

    data = size.zero? ? "".b : t.io.pread(size, 0)
    return "the file's bytes differ from the stream" unless data.byteslice(at, moved) == want

    outside = data.byteslice(0, at) + (data.byteslice(at + moved, size) || "".b)
    return "bytes of the file outside [#{at}, #{at + moved}) were written" unless outside.bytes.all?(SENTINEL)
    return "file position #{t.io.pos}, expected #{at + moved}" unless t.io.pos == at + moved

    nil
  end

  # find and split, on a String in memory.
  def run_search(keys)
    hay = case keys["hay"]
          when "empty" then "".b
          when /\Ahex:/ then hex(keys["hay"].delete_prefix("hex:"))
          else
            _, len, seed = keys["hay"].split(":")
            Loopback.stream(Integer(seed, 10), 0, Integer(len, 10))
          end
    split = keys["op"] == "split"
    needle = hex(keys[split ? "sep" : "needle"])
    from = int(keys, "from") || 0
    begin
      result = split ? Fastsock.split(hay, needle) : Fastsock.find(hay, needle, from)
    rescue ArgumentError => e
      return keys["expect"] == "badarg" ? nil : "expected #{keys['expect']}, got badarg (#{e.message})"
    end
    return "expected #{keys['expect']}, got ok" unless keys["expect"] == "ok"

    want = int(keys, "result")
    if split
      return "split gave #{result.size} offsets, not start/end pairs" if result.size.odd?
      return "#{result.size / 2} fields, expected #{want}" unless result.size / 2 == want

      fields = result.each_slice(2).map { |a, b| hay.byteslice(a, b - a) }
      return "the fields joined with the separator are not the hay" unless fields.join(needle) == hay

      strings = Fastsock.split(hay, needle, as: :strings)
      return "as: :strings gives other fields than the offsets" unless strings == fields
    else
      got = result || -1
      return "result #{got}, expected #{want}" unless got == want
      return "no needle at #{result}" if result && hay.byteslice(result, needle.bytesize) != needle
    end
    nil
  end

  def check(keys, o, conn, seed, off)
    expect = keys["expect"]
    refused = %w[badarg badsock nomem].include?(expect)
    problem = outcome_problem(keys, o, classify(o.exc), refused) || check_steps(keys, o)
    return problem if problem

    receive = %w[recvall recvall_into recv_into recv_steps recv_steps_into].include?(keys["op"])

    if expect == "ok"
      r = int(keys, "result")
      return "result #{o.result}, expected #{r}" if r && o.result != r
      rmax = int(keys, "result_max")
      return "result #{o.result} above #{rmax}" if rmax && o.result > rmax
      if keys["op"] == "recv_into" && o.eof != (o.result.zero? && (int(keys, "n") || 1).positive?)
        return "recv_into returned #{o.eof ? 'nil' : o.result} (nil is end of stream only)"
      end
    elsif refused
      o.moved = 0
    end

    if receive
      problem = check_received(keys, o, seed, off)
      return problem if problem

      if refused
        first = read_one(conn)
        return "after a refused call the next byte is #{first.inspect}, not the stream's first" \
          unless first == Loopback.stream(seed, off, 1)
      end
    else
      problem = check_sent(keys, o, conn)
      return problem if problem
    end

    if keys["op"].start_with?("recvall") && expect == "ok" && keys.key?("cycles_max") && !@portable
      cycles = Fastsock.recvall_cycles
      return "#{cycles} recv calls, expected at most #{keys['cycles_max']}" if cycles > int(keys, "cycles_max")
    end
    nil
  end

  # budget=B: no step moved more than B; steps_min=K: at least K steps moved data.
  def check_steps(keys, o)
    return nil unless keys["op"].end_with?("_steps", "_steps_into")

    b = int(keys, "budget")
    return "a step moved #{o.max_step} bytes, over the budget of #{b}" if b && o.max_step && o.max_step > b
    k = int(keys, "steps_min")
    return "#{o.steps.inspect} steps moved data, expected at least #{k}" if k && !(o.steps && o.steps >= k)

    nil
  end

  def check_received(keys, o, seed, off)
    moved = o.moved || 0
    if %w[recvall recv_steps].include?(keys["op"])
      if o.data
        return "result is #{o.data.encoding}, not ASCII-8BIT" unless o.data.encoding == Encoding::BINARY
        return "#{o.data.bytesize} bytes reported, #{moved} moved" unless o.data.bytesize == moved
        return "received bytes differ from the stream" unless o.data == Loopback.stream(seed, off, moved)
      elsif o.exc.is_a?(StepsTimeout)
        # The runner gave up on a Receiver that is not complete: its fresh
        # String is not handed out, so there are no bytes to compare.
        nil
      elsif o.exc && !%w[badarg badsock nomem].include?(keys["expect"])
        return "#{o.exc.class} carries no partial data"
      end
      return nil
    end
    buf = o.buf
    size = int(keys, "bufsize")
    offset = int(keys, "offset") || 0
    offset = 0 if offset.negative? || offset > size
    # The target grows to hold what came, and only that: IO#read(len, outbuf).
    want = [size, offset + moved].max
    return "the buffer's bytesize is #{buf.bytesize}, expected #{want}" unless buf.bytesize == want

    got = buf.byteslice(offset, moved)
    return "received bytes differ from the stream" unless got == Loopback.stream(seed, off, moved)

    # The sentinel over the original bytes only: those past them were grown.
    outside = buf.byteslice(0, offset) + (buf.byteslice(offset + moved, size) || "".b)
    return "bytes outside [offset, offset + moved) were written" unless outside.bytes.all?(SENTINEL)

    nil
  end

  def check_sent(keys, o, conn)
    sent = o.moved || 0
    if keys["op"].start_with?("sendfile") && keys["file"].start_with?("regular", "empty") && o.file && \
       !%w[badarg badsock].include?(keys["expect"])
      want = (int(keys, "offset") || 0) + sent
      return "file position #{o.file.pos}, expected #{want}" unless o.file.pos == want
    end
    # A sink that resets on purpose has no answer to give.
    return nil if keys["req"].include?("reset=")

    got, match = Loopback.sink_answer(conn)
    return "the sink got #{got} bytes, the call reported #{sent}" unless got == sent
    return "the sink got #{got} bytes but only #{match} match the stream" unless match == got

    nil
  end

  def read_one(conn)
    return nil unless conn.wait_readable(10)

    conn.read_nonblock(1, exception: false)
  end
end

def main(argv)
  server_path = cases_path = nil
  list = false
  only = []
  until argv.empty?
    arg = argv.shift
    case arg
    when "--server" then server_path = argv.shift
    when "--cases" then cases_path = argv.shift
    when "--list" then list = true
    when "--only" then only << argv.shift
    else
      warn "usage: run_cases.rb (--server PATH --cases PATH [--only NAME]... | --list --cases PATH)"
      return 2
    end
  end
  abort "--cases PATH is required" unless cases_path
  begin
    cases = load_cases(cases_path)
  rescue RuntimeError => e
    warn e.message
    return 1
  end
  if list
    cases.each { |c| puts c.name }
    return 0
  end
  abort "--server PATH is required" unless server_path
  unless only.empty?
    unknown = only - cases.map(&:name)
    abort "no such case: #{unknown.join(', ')}" unless unknown.empty?
    cases = cases.select { |c| only.include?(c.name) }
  end

  server = Loopback::Server.new(server_path)
  runner = Runner.new(server)
  passed = failed = 0
  cases.each do |c|
    problem = begin
      runner.run(c)
    rescue StandardError => e
      "runner error #{e.class}: #{e.message} (#{e.backtrace&.first})"
    end
    if problem
      failed += 1
      puts "FAIL #{c.name}: #{problem}"
    else
      passed += 1
      puts "ok #{c.name}"
    end
    $stdout.flush
  end
  server.stop
  puts "#{passed} passed, #{failed} failed"
  failed.zero? ? 0 : 1
end

exit(main(ARGV.dup))
