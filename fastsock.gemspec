# frozen_string_literal: true

# The Ruby gem: `gem build fastsock.gemspec && gem install --local fastsock-*.gem`.
# It carries the C sources and builds fastsock/native.so at install time
# (bindings/ruby/ext/fastsock/extconf.rb), which needs gcc, ruby-dev and
# swig. The version is the top-level VERSION file, the one definition that
# CMake, pyproject.toml's backend and the rockspec read too.
Gem::Specification.new do |s|
  s.name = "fastsock"
  s.version = File.read(File.join(__dir__, "VERSION"))[/\A\d+\.\d+\.\d+/]
  s.summary = "Bulk socket I/O with few copies and few system calls"
  s.description = "recvall, sendall, sendfile and event-loop transfers done in C " \
                  "with the GVL released: one allocation per received payload, no slicing " \
                  "copies, the kernel's sendfile where it can."
  s.authors = ["fastsock maintainers"]
  s.required_ruby_version = ">= 3.1" # the Fiber scheduler hooks it uses; tested on 3.1
  s.requirements << "a C compiler (Debian: gcc), Ruby's headers (ruby-dev) and SWIG 4 (swig)"

  s.files = Dir.chdir(__dir__) do
    Dir["VERSION", "README.md", "docs/*.md", "core/*.{c,h}", "swig/*.i",
        "bindings/ruby/*.{c,h}", "bindings/ruby/lib/**/*.rb", "bindings/ruby/ext/**/*.rb"].sort
  end
  s.require_paths = ["bindings/ruby/lib"]
  s.extensions = ["bindings/ruby/ext/fastsock/extconf.rb"]
  s.extra_rdoc_files = ["docs/ruby.md"] if File.exist?(File.join(__dir__, "docs/ruby.md"))
end
