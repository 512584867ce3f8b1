"""Which modules the controller serves to a host's interpreter, found without importing them.

A host asks by name for a module it cannot import itself. The answer is
found the way Python's path finder would find it, but nothing is imported
or run here on the host's say-so: a host is not trusted with code on the
controller. Only pure-Python source is served; a C extension is refused
with a reason, and the standard library and the fabfile are never served
(the host's own standard library is the one that matches its Python; the
fabfile may hold secrets, and its functions travel by source anyway).
"""

import importlib.machinery
import importlib.util
import re
import sys
import sysconfig
from pathlib import Path

__all__ = ["answer", "locate"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def locate(fullname):
    """The import spec of ``fullname`` on this machine, or None; imports nothing."""
    module = sys.modules.get(fullname)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent, _, _ = fullname.rpartition(".")
    if not parent:
        return importlib.machinery.PathFinder.find_spec(fullname)
    parent_spec = locate(parent)
    locations = getattr(parent_spec, "submodule_search_locations", None)
    if not locations:
        return None
    return importlib.machinery.PathFinder.find_spec(fullname, list(locations))


def _stdlib_dirs():
    paths = sysconfig.get_paths()
    return {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if paths.get(k)}


def _in_stdlib(origin):
    path = Path(origin).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False
    return any(path.is_relative_to(d) for d in _stdlib_dirs())


def answer(fullname, fabfile=None):
    """The reply to a host asking for ``fullname``.

    ``None`` (not here: the host's import fails as usual),
    ``("refused", reason)``, or ``("ok", is_package, source, origin)``.
    """
    if not isinstance(fullname, str) or not _NAME.fullmatch(fullname) or len(fullname) > 500:
        return None
    try:
        spec = locate(fullname)
    except (ImportError, ValueError, OSError):
        return None
    if spec is None:
        return None
    origin = spec.origin
    locations = spec.submodule_search_locations
    if origin in (None, "namespace") and locations is not None:
        return ("ok", True, "", f"<namespace {fullname}>")  # a namespace package: nothing to run
    if origin in (None, "built-in", "frozen") or not isinstance(origin, str):
        return None
    if isinstance(spec.loader, importlib.machinery.ExtensionFileLoader) or \
            origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return ("refused", f"fake: {fullname} is a C extension on the controller ({Path(origin).name}); "
                           f"call() serves pure-Python modules only: install it on the host")
    if not origin.endswith(".py"):
        return ("refused", f"fake: {fullname} has no Python source on the controller ({Path(origin).name})")
    if _in_stdlib(origin):
        return None
    if fabfile is not None and Path(origin).resolve() == Path(fabfile).resolve():
        return ("refused", f"fake: the fabfile ({fullname}) is not served to hosts; "
                           "move what the host needs into a module beside it")
    try:
        source = importlib.util.decode_source(Path(origin).read_bytes())
    except (OSError, UnicodeDecodeError, SyntaxError) as e:
        return ("refused", f"fake: cannot read {fullname} on the controller: {e}")
    return ("ok", locations is not None, source, origin)
