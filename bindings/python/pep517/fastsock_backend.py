"""fastsock's PEP 517 build backend: the wheel and the sdist, offline, stdlib only.

Why not setuptools: its wheels come from the ``wheel`` package's bdist_wheel,
which the pyenv Pythons here lack and which no offline build can fetch
(setuptools 65.5 does not carry its own). A backend that compiles with the
interpreter's own sysconfig (CC, CFLAGS, LDSHARED, EXT_SUFFIX) and zips the
wheel itself needs nothing installed, so ``requires = []`` and even an
isolated ``pip install .`` works without an index.

Sources are found by glob (core/*.c, bindings/python/*.c, the package files
under bindings/python/fastsock/), so the build follows the binding's files
as they change. The version is the top-level VERSION file, compiled in as
FASTSOCK_VERSION. The SWIG wrapper is generated from swig/python.i when
building from a checkout; the sdist carries the generated wrapper, so a
build from the sdist needs no SWIG.

Linux and other POSIX systems with a gcc-like compiler; CPython only.
"""

import base64
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NAME = "fastsock"
# Where the sdist keeps the SWIG output: next to this backend.
SHIPPED_WRAPPER = "bindings/python/pep517/_fastsock_wrap.c"


class BuildError(SystemExit):
    """One line for the user, not a traceback: pip shows the backend's output."""

    def __init__(self, message):
        super().__init__(f"fastsock: {message}")


def _path(rel):
    return os.path.join(ROOT, rel)


def _version():
    with open(_path("VERSION"), encoding="ascii") as f:
        version = f.readline().strip()
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise BuildError(f"VERSION holds {version!r}, not X.Y.Z")
    return version


def _project():
    """The [project] table of pyproject.toml."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise BuildError("building needs Python 3.11 (tomllib) or the tomli package") from None
    with open(_path("pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata():
    """Core metadata 2.1 (PKG-INFO, METADATA) from [project] and VERSION."""
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {_version()}",
        f"Summary: {p['description']}",
    ]
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    if "license" in p and "text" in p["license"]:
        lines.append(f"License: {p['license']['text']}")
    for url_name, url in p.get("urls", {}).items():
        lines.append(f"Project-URL: {url_name}, {url}")
    for c in p.get("classifiers", []):
        lines.append(f"Classifier: {c}")
    body = ""
    readme = p.get("readme")
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        with open(_path(readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return "\n".join(lines) + "\n" + body


# ---- compiling ------------------------------------------------------------------

def _config(name):
    """The interpreter's build setting; CC and CFLAGS from the environment
    take precedence, as they do for setuptools (CC also links)."""
    value = shlex.split(sysconfig.get_config_var(name) or "")
    cc = shlex.split(os.environ.get("CC", ""))
    if name == "CC" and cc:
        return cc
    if name == "LDSHARED" and cc:
        return cc + ["-shared"] + [v for v in value[1:] if v != "-shared"]
    if name == "CFLAGS":
        return value + shlex.split(os.environ.get("CFLAGS", ""))
    return value


def _check_tools(need_swig):
    if sys.implementation.name != "cpython":
        raise BuildError(f"the extension is built for CPython only, not {sys.implementation.name}")
    cc = _config("CC")
    if not cc or shutil.which(cc[0]) is None:
        raise BuildError(f"no C compiler ({cc[0] if cc else 'CC unset'}): install Debian's gcc (apt install gcc)")
    include = sysconfig.get_config_var("INCLUDEPY")
    if not os.path.exists(os.path.join(include, "Python.h")):
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise BuildError(f"no Python.h in {include}: install the headers of Python {ver} "
                         f"(Debian: apt install python{ver}-dev)")
    if need_swig and shutil.which("swig") is None:
        raise BuildError("SWIG not found, needed to build from a checkout: install Debian's swig "
                         "(apt install swig), or build from the sdist, which carries the generated wrapper")


def _run(cmd, what):
    print(" ".join(shlex.quote(c) for c in cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit status {done.returncode})")


def _swig(outdir):
    wrap = os.path.join(outdir, "_fastsock_wrap.c")
    # As bindings/python/CMakeLists.txt runs it: -threads releases the GIL
    # in the transfers, -noproxy as the package is hand-written.
    _run(["swig", "-python", "-noproxy", "-threads", "-Werror",
          "-I" + _path("swig"), "-I" + _path("core"), "-I" + _path("bindings/python"),
          "-outdir", outdir, "-o", wrap, _path("swig/python.i")], "SWIG")
    return wrap


def _sources(wrapper):
    def glob_c(d):
        return sorted(os.path.join(_path(d), f) for f in os.listdir(_path(d)) if f.endswith(".c"))
    return glob_c("core") + glob_c("bindings/python") + [wrapper]


def _compile_extension(tmp):
    """Builds fastsock/_fastsock<EXT_SUFFIX> in tmp; returns its path."""
    shipped = os.path.exists(_path(SHIPPED_WRAPPER))
    _check_tools(need_swig=not shipped)
    wrapper = _path(SHIPPED_WRAPPER) if shipped else _swig(tmp)
    cc = _config("CC")
    cflags = (_config("CFLAGS") + _config("CCSHARED") +
              ["-std=gnu11", "-fvisibility=hidden", "-D_GNU_SOURCE",
               f'-DFASTSOCK_VERSION="{_version()}"',
               "-I" + sysconfig.get_config_var("INCLUDEPY"),
               "-I" + _path("core"), "-I" + _path("bindings/python"), "-I" + _path("swig")])
    objects = []
    for i, src in enumerate(_sources(wrapper)):
        obj = os.path.join(tmp, f"{i:02d}_{os.path.basename(src)}.o")
        _run(cc + cflags + ["-c", src, "-o", obj], f"compiling {os.path.relpath(src, ROOT)}")
        objects.append(obj)
    out = os.path.join(tmp, NAME, "_fastsock" + sysconfig.get_config_var("EXT_SUFFIX"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    _run(_config("LDSHARED") + objects + ["-lm", "-o", out], "linking the extension")
    return out


# ---- the wheel --------------------------------------------------------------------

def _package_files():
    """(archive name, path) of every file of the fastsock package directory."""
    base = _path("bindings/python")
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(base, NAME)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith((".pyc", ".so")):
                continue
            full = os.path.join(dirpath, f)
            out.append((os.path.relpath(full, base).replace(os.sep, "/"), full))
    return out


def _tag():
    impl = f"cp{sys.version_info.major}{sys.version_info.minor}"
    plat = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{impl}-{impl}{sys.abiflags}-{plat}"


def _dist_info():
    return f"{NAME}-{_version()}.dist-info"


def _wheel_file():
    return f"Wheel-Version: 1.0\nGenerator: fastsock_backend\nRoot-Is-Purelib: false\nTag: {_tag()}\n"


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wrong_python_module():
    """fastsock/_fastsock.py: found only where the extension is not.

    The import system tries extension modules before source files, so this
    module loads only when no _fastsock extension matches the interpreter:
    the package was installed for another Python (say, a PYTHONPATH shared by
    3.11 and 3.12). Without it the error would be a misleading "circular
    import" from fastsock/__init__.py.
    """
    built = f"{sys.version_info.major}.{sys.version_info.minor}"
    ext = "_fastsock" + sysconfig.get_config_var("EXT_SUFFIX")
    return (
        "# Generated by fastsock_backend: loaded only when no _fastsock extension\n"
        "# matches this interpreter (extensions are looked up before sources).\n"
        "import sys as _sys\n\n"
        "raise ImportError(\n"
        f"    \"fastsock was built for Python {built} ({ext}); this is Python \"\n"
        "    f\"{_sys.version_info.major}.{_sys.version_info.minor} ({_sys.executable}): \"\n"
        "    \"install fastsock for this Python (python -m pip install fastsock)\")\n"
    )


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with tempfile.TemporaryDirectory(prefix="fastsock-wheel-") as tmp:
        ext = _compile_extension(tmp)
        entries = [(name, open(path, "rb").read()) for name, path in _package_files()]
        entries.append((f"{NAME}/{os.path.basename(ext)}", open(ext, "rb").read()))
        entries.append((f"{NAME}/_fastsock.py", _wrong_python_module().encode()))
        names = {n for n, _ in entries}
        for required in (f"{NAME}/py.typed", f"{NAME}/__init__.pyi"):
            if required not in names:
                raise BuildError(f"bindings/python/{required} is missing: the wheel must carry the stubs")
        info = _dist_info()
        entries += [(f"{info}/METADATA", _metadata().encode()),
                    (f"{info}/WHEEL", _wheel_file().encode())]
        record = [_record_line(n, d) for n, d in entries] + [f"{info}/RECORD,,"]
        entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
        filename = f"{NAME}-{_version()}-{_tag()}.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in entries:
                zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                zi.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(zi, data)
    return filename


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    with open(os.path.join(info, "WHEEL"), "w", encoding="ascii") as f:
        f.write(_wheel_file())
    return _dist_info()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


# ---- the sdist --------------------------------------------------------------------

def _sdist_files():
    """Relative paths: what a wheel build from the sdist needs, found by glob."""
    files = ["pyproject.toml", "VERSION", "README.md"]
    for d, exts in (("core", (".c", ".h")), ("swig", (".i",)), ("docs", (".md",))):
        if os.path.isdir(_path(d)):
            files += sorted(f"{d}/{f}" for f in os.listdir(_path(d)) if f.endswith(exts))
    for dirpath, dirnames, filenames in os.walk(_path("bindings/python")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if not f.endswith((".pyc", ".so", ".o")):
                files.append(os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/"))
    return files


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{_version()}"
    filename = f"{base}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="fastsock-sdist-") as tmp:
        files = [f for f in _sdist_files() if f != SHIPPED_WRAPPER]
        shipped = os.path.exists(_path(SHIPPED_WRAPPER))  # an sdist of an sdist
        if not shipped and shutil.which("swig") is None:
            raise BuildError("SWIG not found, needed for the sdist's generated wrapper: "
                             "install Debian's swig (apt install swig)")
        wrapper = _path(SHIPPED_WRAPPER) if shipped else _swig(tmp)

        def add(tar, arcname, data):
            ti = tarfile.TarInfo(f"{base}/{arcname}")
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "1577836800"))
            tar.addfile(ti, io.BytesIO(data))

        with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
            add(tar, "PKG-INFO", _metadata().encode())
            for rel in files:
                with open(_path(rel), "rb") as f:
                    add(tar, rel, f.read())
            with open(wrapper, "rb") as f:
                add(tar, SHIPPED_WRAPPER, f.read())
    return filename
