#!/usr/bin/env python3
"""Fails when a public name of a built module has no reference entry in docs/.

A reference entry is a Markdown heading (### or deeper; ## headings are
sections) whose first code span starts with the qualified name, and whose
section (up to the next heading) holds an example in a fenced code block:

    ### `fastsock.recvall(sock, n, *, timeout=...)`      docs/python.md
    ### `Fastsock::Receiver#step`                         docs/ruby.md
    ### `buffer:tostring([i [, j]])`                      docs/lua.md

The public names come from the modules themselves, as built:
- Python: every public name of fastsock and of each public submodule
  (fastsock.aio ...): __all__, and any other non-underscore function or
  class the module defines, plus the public attributes of its classes.
  Each of them (and each module) must also have a docstring, for pydoc.
- Ruby: Fastsock's singleton methods and constants, and the public methods
  (instance and singleton) of its classes and modules. Fastsock::Native, the
  SWIG extension the Ruby layer calls, is internal.
- Lua: every key of the module table, and the methods (__index) of every
  metatable the module registers as "fastsock.<type>" ("<type>:<method>").

And every entry must name something the built module has: no entries for
what was removed or renamed.
"""

import argparse
import json
import os
import re
import subprocess
import sys

PY_NAMES = r"""
import importlib, inspect, json, pkgutil, types
import fastsock

def public(mod):
    names = set(getattr(mod, "__all__", []))
    for n, obj in vars(mod).items():
        if n.startswith("_") or isinstance(obj, types.ModuleType):
            continue
        if getattr(obj, "__module__", None) == mod.__name__:  # not a re-export
            names.add(n)
    return names

def documented(obj):
    return bool((getattr(obj, "__doc__", None) or "").strip())

out, nodoc = [], []
mods = [fastsock] + [importlib.import_module("fastsock." + m.name)
                     for m in pkgutil.iter_modules(fastsock.__path__) if not m.name.startswith("_")]
for mod in mods:
    if not documented(mod):
        nodoc.append(mod.__name__)
    for n in sorted(public(mod)):
        obj = getattr(mod, n)
        q = mod.__name__ + "." + n
        out.append(q)
        if callable(obj) and not documented(obj):
            nodoc.append(q)
        if inspect.isclass(obj):
            for a, v in sorted(vars(obj).items()):
                if not a.startswith("_"):
                    out.append(q + "." + a)
                    if not documented(v):
                        nodoc.append(q + "." + a)
print(json.dumps({"names": out, "nodoc": nodoc}))
"""

RUBY_NAMES = r"""
require "fastsock"
require "json"
out = Fastsock.singleton_methods(false).sort.map { |m| "Fastsock.#{m}" }
Fastsock.constants.sort.each do |c|
  next if c == :Native
  out << "Fastsock::#{c}"
  v = Fastsock.const_get(c)
  next unless v.is_a?(Module)
  v.singleton_methods(false).sort.each { |m| out << "Fastsock::#{c}.#{m}" }
  v.public_instance_methods(false).sort.each { |m| out << "Fastsock::#{c}##{m}" }
end
puts JSON.generate(out)
"""

LUA_NAMES = r"""
local fastsock = require "fastsock"
local out = {}
for k in pairs(fastsock) do out[#out + 1] = "fastsock." .. tostring(k) end
for k, mt in pairs(debug.getregistry()) do
  local t = type(k) == "string" and k:match("^fastsock%.([%w_]+)$")
  if t and type(mt) == "table" and type(mt.__index) == "table" then
    for m in pairs(mt.__index) do out[#out + 1] = t .. ":" .. tostring(m) end
  end
end
table.sort(out)
print(table.concat(out, "\n"))
"""

# The other direction: each entry's name (one a line on stdin) that the
# built module does not have, so that the docs don't describe what is gone.
PY_MISSING = r"""
import importlib, sys
import fastsock
for name in sys.stdin.read().split():
    parts = name.split(".")
    obj, i = None, 1
    while i <= len(parts):   # the longest importable module prefix
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            i += 1
        except ImportError:
            break
    try:
        for attr in parts[i - 1:]:
            obj = getattr(obj, attr)
    except AttributeError:
        obj = None
    if obj is None:
        print(name)
"""

RUBY_MISSING = r"""
require "fastsock"
STDIN.read.split.each do |name|
  found =
    case name
    when /\A(.+)#(.+)\z/ then (Object.const_get($1).method_defined?($2) rescue false)
    when /\A(.+)\.([^.:]+)\z/ then (Object.const_get($1).respond_to?($2) rescue false)
    else (Object.const_defined?(name) rescue false)
    end
  puts name unless found
end
"""

LUA_MISSING = r"""
local fastsock = require "fastsock"
for name in io.read("a"):gmatch("%S+") do
  local found
  local t, m = name:match("^([%w_]+):([%w_]+)$")
  if t then
    local mt = debug.getregistry()["fastsock." .. t]
    found = type(mt) == "table" and type(mt.__index) == "table" and mt.__index[m] ~= nil
  else
    local k = name:match("^fastsock%.([%w_]+)$")
    found = k ~= nil and fastsock[k] ~= nil
  end
  if not found then print(name) end
end
"""

HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
CODE_SPAN = re.compile(r"`([^`]+)`")
PREFIXES = ("class ", "exception ", "async def ", "await ", "module ", "constant ")


def entries(path):
    """{qualified name: has an example} of one reference file."""
    found = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    current = None
    in_fence = False
    for line in lines:
        if line.startswith("```"):
            in_fence = not in_fence
            if current is not None:
                found[current] = True
            continue
        m = None if in_fence else HEADING.match(line)
        if not m:
            continue
        current = None
        span = CODE_SPAN.search(m.group(2))
        if not span or len(m.group(1)) < 3:  # "## Module `fastsock`" is a section
            continue
        text = span.group(1).strip()
        for p in PREFIXES:
            if text.startswith(p):
                text = text[len(p):]
        name = re.split(r"[\s(\[]", text, maxsplit=1)[0]
        current = name
        found.setdefault(name, False)
    return found


def ask(cmd, env_add, parse, stdin=None):
    env = dict(os.environ, **env_add)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        raise SystemExit(f"could not list the public names: {' '.join(cmd[:2])}\n{done.stderr}")
    return parse(done.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", required=True)
    ap.add_argument("--python")
    ap.add_argument("--pythonpath")
    ap.add_argument("--ruby")
    ap.add_argument("--rubylib")
    ap.add_argument("--lua")
    ap.add_argument("--lua-cpath")
    args = ap.parse_args()

    langs = []
    failed = False
    if args.python:
        py = ask([args.python, "-B", "-c", PY_NAMES], {"PYTHONPATH": args.pythonpath or ""}, json.loads)
        langs.append(("python", py["names"], lambda doc: ask(
            [args.python, "-B", "-c", PY_MISSING], {"PYTHONPATH": args.pythonpath or ""}, str.split, doc)))
        # What `python3 -m pydoc fastsock` shows: every public module,
        # function, class and method carries a docstring.
        for n in py["nodoc"]:
            print(f"python: no docstring: {n}")
            failed = True
    if args.ruby:
        rubylib = {"RUBYLIB": args.rubylib or ""}
        langs.append(("ruby", ask([args.ruby, "-e", RUBY_NAMES], rubylib, json.loads),
                      lambda doc: ask([args.ruby, "-e", RUBY_MISSING], rubylib, str.split, doc)))
    if args.lua:
        cpath = {"LUA_CPATH": args.lua_cpath or ""}
        langs.append(("lua", ask([args.lua, "-e", LUA_NAMES], cpath, str.split),
                      lambda doc: ask([args.lua, "-e", LUA_MISSING], cpath, str.split, doc)))

    for lang, names, missing_in_module in langs:
        doc = os.path.join(args.docs, f"{lang}.md")
        if not os.path.exists(doc):
            print(f"{lang}: {doc} is missing")
            failed = True
            continue
        documented = entries(doc)
        missing = [n for n in names if n not in documented]
        no_example = [n for n in names if documented.get(n) is False]
        print(f"{lang}: {len(names)} public names, {len(names) - len(missing)} with an entry in {doc}")
        for n in missing:
            print(f"  no entry: {n}")
        for n in no_example:
            print(f"  no example in the entry of {n}")
        stale = missing_in_module("\n".join(documented))
        for n in stale:
            print(f"  an entry for what the module does not have: {n}")
        failed |= bool(missing or no_example or stale)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
