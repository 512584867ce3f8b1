"""How ``call(fn)`` names ``fn`` to the host: by reference, or by its source.

A function of an importable module (``platform.node``, a helper module
beside the fabfile) is named by module and qualified name; the host imports
the module itself, or from the controller. A function of the fabfile is
sent as its source, with the fabfile's globals it reads: the fabfile
imports Fake and Fabric, which the host need not have, so it is never
imported there. A global it reads travels as what it is: a module (imported
on the host), a function or class of the fabfile (its source too), another
module's object (by reference), or a value the wire format carries.
"""

import ast
import hashlib
import inspect
import symtable
import sys
import textwrap
import types

from ..exceptions import ConfigError
from .wire import WireError, encode

__all__ = ["describe", "function_name", "is_fabfile_module"]


def function_name(fn):
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def is_fabfile_module(name):
    """Modules that are never imported on a host: the fabfile (a file or a package) and ``__main__``."""
    return name in ("__main__", "fabfile") or str(name).startswith("fabfile.")


def describe(fn):
    """``("ref", module, qualname)`` or ``("src", digest, payload)`` for ``fn``; ConfigError if neither."""
    name = function_name(fn)
    if not callable(fn):
        raise ConfigError(f"call() needs a function, got a {type(fn).__name__}")
    if hasattr(fn, "body") and hasattr(fn, "argspec"):
        raise ConfigError(f"call({name}): {name} is a task; call() runs a plain function on the host")
    if isinstance(fn, types.MethodType):
        raise ConfigError(f"call({name}): a bound method cannot be sent to a host; use a plain function")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module and qualname and "<locals>" not in qualname and not is_fabfile_module(module):
        if _lookup(sys.modules.get(module), qualname) is fn:
            return ("ref", module, qualname)
    if not isinstance(fn, types.FunctionType):
        raise ConfigError(f"call({name}): a {type(fn).__name__} cannot be sent to a host; "
                          "use a function defined with def")
    shipment = _Shipment(fn.__globals__, name)
    shipment.add(fn)
    payload = (str(module), fn.__code__.co_filename, fn.__name__, shipment.entries)
    return ("src", hashlib.sha256(encode(payload)).hexdigest(), payload)


def _lookup(obj, qualname):
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _source(obj, called):
    """The dedented source of a def or class and its first line; errors say what to do instead."""
    what = function_name(obj)
    if getattr(obj, "__name__", "") == "<lambda>":
        raise ConfigError(f"call({called}): a lambda cannot be sent to a host; define it with def")
    if getattr(obj, "__closure__", None):
        free = ", ".join(obj.__code__.co_freevars)
        raise ConfigError(f"call({called}): {what} uses variables of an enclosing function ({free}); "
                          "pass them as arguments instead")
    try:
        lines, first = inspect.getsourcelines(obj)
    except (OSError, TypeError) as e:
        raise ConfigError(f"call({called}): cannot read the source of {what} ({e}); "
                          "define it in the fabfile or in a module") from e
    text = textwrap.dedent("".join(lines))
    tree = ast.parse(text)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.decorator_list:
        raise ConfigError(f"call({called}): {what} is decorated or not a plain def; "
                          "call() sends fabfile functions by their source: move it to a module beside the fabfile")
    return text, first


def _names_read(text):
    """The global names a snippet's code reads (its locals are not among them)."""
    names = set()

    def walk(table, top):
        for sym in table.get_symbols():
            if top and sym.is_referenced() and not sym.is_assigned():
                names.add(sym.get_name())
            elif not top and (sym.is_global() or sym.is_declared_global()) and sym.is_referenced():
                names.add(sym.get_name())
        for child in table.get_children():
            walk(child, False)

    walk(symtable.symtable(text, "<fabfile>", "exec"), True)
    return names


class _Shipment:
    """The entries one fabfile function needs on the host, in the order they are set up there."""

    def __init__(self, globs, called):
        self.globs, self.called = globs, called
        self.entries = []
        self.names, self.objects = set(), set()  # globals handled; fabfile objects whose source is in

    def add(self, obj):
        """Its globals first, then its own source."""
        self.objects.add(id(obj))
        text, first = _source(obj, self.called)
        for name in sorted(_names_read(text)):
            if name in self.globs and name not in self.names:
                self.names.add(name)
                self.add_global(name, self.globs[name], obj.__module__)
        self.entries.append(("source", obj.__name__, text, first))

    def add_global(self, name, value, module):
        called = self.called
        if isinstance(value, types.ModuleType):
            if is_fabfile_module(value.__name__):
                raise ConfigError(f"call({called}): it reads the fabfile module itself ({name}), "
                                  "which hosts never import")
            self.entries.append(("module", name, value.__name__))
            return
        owner = getattr(value, "__module__", None)
        if callable(value) and owner == module:  # the fabfile's own: its source too (a decorated one is refused)
            if id(value) not in self.objects:
                self.add(value)
            if getattr(value, "__name__", name) != name:
                self.entries.append(("alias", name, value.__name__))
            return
        qualname = getattr(value, "__qualname__", None)
        if owner and qualname and not is_fabfile_module(owner) and "<locals>" not in qualname \
                and _lookup(sys.modules.get(owner), qualname) is value:
            self.entries.append(("ref", name, owner, qualname))
            return
        try:
            encode(value)
        except WireError as e:
            raise ConfigError(f"call({called}): it reads the global {name}, which cannot be sent to the host "
                              f"({e}); pass it as an argument or import it inside the function") from None
        self.entries.append(("value", name, value))
