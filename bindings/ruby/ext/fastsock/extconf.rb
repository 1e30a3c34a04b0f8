# frozen_string_literal: true

# Builds fastsock/native.so (module Fastsock::Native), the extension that
# bindings/ruby/lib/fastsock.rb requires, for `gem install`: SWIG generates
# the wrapper from swig/ruby.i, and the core and the binding's C are compiled
# in, found by glob (core/*.c, bindings/ruby/*.c) so that the gem follows
# the sources as they change. The version is the top-level VERSION file.
#
# A missing compiler, SWIG or ruby.h stops here with one line naming the
# Debian package, before mkmf (which says less) or the compiler (which says
# a page) can.

require "rbconfig"

ROOT = File.expand_path("../../../..", __dir__)

def fastsock_abort(message)
  abort "fastsock: #{message}"
end

def on_path?(program)
  ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).any? do |dir|
    File.executable?(File.join(dir, program))
  end
end

hdrdir = RbConfig::CONFIG["rubyhdrdir"]
unless hdrdir && File.exist?(File.join(hdrdir, "ruby.h"))
  fastsock_abort "no ruby.h in #{hdrdir}: install Ruby #{RbConfig::CONFIG['MAJOR']}.#{RbConfig::CONFIG['MINOR']}'s headers (Debian: apt install ruby-dev)"
end
cc = RbConfig::CONFIG["CC"].split.first
fastsock_abort "no C compiler (#{cc}): install Debian's gcc (apt install gcc)" unless on_path?(cc)
fastsock_abort "SWIG not found: install Debian's swig (apt install swig)" unless on_path?("swig")

require "mkmf"

version = File.read(File.join(ROOT, "VERSION"))[/\A\d+\.\d+\.\d+/] or
  fastsock_abort "#{ROOT}/VERSION holds no X.Y.Z"

# As bindings/ruby/CMakeLists.txt runs it; the wrapper lands in the build dir.
wrapper = "fastsock_native_wrap.c"
swig = ["swig", "-ruby", "-Werror", "-Wall", "-I#{ROOT}/swig", "-I#{ROOT}/core",
        "-I#{ROOT}/bindings/ruby", "-o", wrapper, "#{ROOT}/swig/ruby.i"]
puts swig.join(" ")
system(*swig) or fastsock_abort "SWIG failed on swig/ruby.i"

source_dirs = ["#{ROOT}/core", "#{ROOT}/bindings/ruby"]
sources = source_dirs.flat_map { |d| Dir["#{d}/*.c"].sort }
names = sources.map { |s| File.basename(s) } << wrapper
dup = names.group_by(&:itself).select { |_, v| v.size > 1 }.keys
fastsock_abort "two C files named #{dup.join(', ')}: mkmf builds objects by base name" unless dup.empty?

$srcs = names
$objs = names.map { |n| n.sub(/\.c\z/, ".o") }
$VPATH.concat(source_dirs)
$INCFLAGS << source_dirs.map { |d| " -I#{d}" }.join
$defs << "-D_GNU_SOURCE" << %(-DFASTSOCK_VERSION=\\"#{version}\\")
# Only the module's Init_native is exported, as in the CMake build.
$CFLAGS << " -std=gnu11 -fvisibility=hidden"
# A symbol no source defines fails the install, not the first require.
$LDFLAGS << " -Wl,--no-undefined" if RbConfig::CONFIG["host_os"].include?("linux")

create_makefile("fastsock/native")
