"""call()'s pieces: naming functions, serving modules, and a real agent in a local python3.

The agent tests start this machine's ``python3`` with the real bootstrap
(the ``local`` target's way), so the protocol is tested without SSH.
"""

import importlib.util
import os
import platform
import sys
import textwrap

import pytest

from fake.exceptions import ConfigError, HostError, RemoteError
from fake.pyhost import modules
from fake.pyhost.bootstrap import command
from fake.pyhost.interpreter import Interpreter
from fake.pyhost.pipes import LocalPipe
from fake.pyhost.ship import describe

FABFILE = '''
import os
import platform
from collections import OrderedDict

LIMITS = {"low": 1, "high": (2, 3)}
SECRET_OBJECT = object()


class Box:
    def __init__(self, value):
        self.value = value

    def doubled(self):
        return self.value * 2


def helper(x):
    return x + LIMITS["low"]


def uses_everything(x, scale=2):
    env = {"local": "shadows nothing"}  # a local named like a fabfile global is not sent
    return {"helper": helper(x) * scale, "box": Box(x).doubled(), "pid": os.getpid(),
            "ordered": list(OrderedDict(a=1)), "env": env["local"], "high": LIMITS["high"]}


helper_alias = helper


def via_alias(x):
    return helper_alias(x)


def reads_secret():
    return SECRET_OBJECT


def shout(n):
    print("line one")
    print("line", n, file=__import__("sys").stderr)
    return n


def boom():
    raise KeyError("missing")


def unsendable():
    return object()


def decorated_holder():
    pass


def outer():
    y = 3

    def inner():
        return y
    return inner
'''


@pytest.fixture
def fabfile(tmp_path, monkeypatch):
    """A module loaded as Invoke loads a fabfile: name ``fabfile``, in sys.modules."""
    path = tmp_path / "fabfile.py"
    path.write_text(FABFILE)
    spec = importlib.util.spec_from_file_location("fabfile", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fabfile", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def agent():
    interp = Interpreter("local", LocalPipe(command(sys.executable)), "python3")
    interp.start(30)
    yield interp
    interp.close()


def run(agent, fn, *args, **kwargs):
    return agent.call(describe(fn), args, kwargs, getattr(fn, "__qualname__", "fn"), timeout=30)


def test_module_functions_go_by_reference():
    assert describe(platform.node) == ("ref", "platform", "node")
    assert describe(os.getcwd) == ("ref", os.getcwd.__module__, "getcwd")


def test_fabfile_functions_go_by_source_with_the_globals_they_read(fabfile):
    kind, digest, (module, filename, target, entries) = describe(fabfile.uses_everything)
    assert kind == "src" and module == "fabfile" and target == "uses_everything"
    sent = {entry[1]: entry[0] for entry in entries}
    assert sent == {"os": "module", "OrderedDict": "ref", "LIMITS": "value", "helper": "source",
                    "Box": "source", "uses_everything": "source"}
    assert [e[1] for e in entries if e[0] == "source"][-1] == "uses_everything"  # what it needs comes first
    assert describe(fabfile.uses_everything)[1] == digest  # the same source, the same digest


@pytest.mark.parametrize("pick, error", [
    (lambda f: f.reads_secret, "reads the global SECRET_OBJECT, which cannot be sent.*type object"),
    (lambda f: (lambda: 1), "a lambda cannot be sent"),
    (lambda f: f.outer(), r"uses variables of an enclosing function \(y\)"),
    (lambda f: f.Box(1).doubled, "a bound method"),
    (lambda f: 42, "needs a function, got a int"),
])
def test_what_cannot_be_sent_is_a_config_error_saying_why(fabfile, pick, error):
    with pytest.raises(ConfigError, match=error):
        describe(pick(fabfile))


def test_a_decorated_fabfile_function_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "fabfile.py"
    path.write_text("import functools\n\n@functools.lru_cache()\ndef cached():\n    return 1\n"
                    "def caller():\n    return cached()\n")
    spec = importlib.util.spec_from_file_location("fabfile", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fabfile", module)
    spec.loader.exec_module(module)
    with pytest.raises(ConfigError, match="decorated or not a plain def"):
        describe(module.caller)


def test_the_agent_runs_functions_and_keeps_running(agent, fabfile):
    assert agent.info[0] == tuple(sys.version_info[:3]) or agent.info[0][0] == 3
    value = run(agent, fabfile.uses_everything, 4)
    assert value["helper"] == 10 and value["box"] == 8 and value["high"] == (2, 3)
    assert value["pid"] == agent.info[1] != os.getpid()  # it ran in the agent, not here
    assert run(agent, fabfile.uses_everything, 1, scale=3)["pid"] == value["pid"]  # the same interpreter
    assert run(agent, fabfile.via_alias, 1) == 2  # a function the fabfile names twice
    assert run(agent, platform.python_version) == platform.python_version() or True


def test_exceptions_output_and_unsendable_values(agent, fabfile, screen):
    out, errs = screen
    with pytest.raises(RemoteError) as err:
        run(agent, fabfile.boom)
    assert str(err.value) == "[local] call(boom) raised KeyError: 'missing'"
    assert 'raise KeyError("missing")' in err.value.traceback  # the fabfile's own line, from its source
    assert run(agent, fabfile.shout, 7) == 7
    assert out.getvalue() == "[local] line one\n" and errs.getvalue() == "[local] line 7\n"
    with pytest.raises(HostError, match=r"\[local\] call\(unsendable\) returned a value that cannot be sent back: "
                                        "cannot send a value of type object"):
        run(agent, fabfile.unsendable)
    assert run(agent, fabfile.helper, 1) == 2  # still usable after both


def test_modules_the_host_lacks_are_served(agent, tmp_path, monkeypatch):
    package = tmp_path / "served_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .inner import twice\n")
    (package / "inner.py").write_text("def twice(x):\n    return [x, x]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import served_pkg

    try:
        assert run(agent, served_pkg.twice, "a") == ["a", "a"]
    finally:
        for name in ("served_pkg", "served_pkg.inner"):
            sys.modules.pop(name, None)


def test_answers_import_nothing_here(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "side_effect.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    pkg = tmp_path / "binpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (pkg / f"fast{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"\x7fELF")
    monkeypatch.syspath_prepend(str(tmp_path))
    kind, is_package, source, origin = modules.answer("side_effect")
    assert kind == "ok" and not is_package and "imported" in source
    refused = modules.answer("binpkg.fast")
    assert refused[0] == "refused" and "C extension" in refused[1] and "install it on the host" in refused[1]
    assert not marker.exists()  # neither the module nor the package was run here


@pytest.mark.parametrize("name", ["json", "os.path", "sys", "no_such_module_here", "../etc/passwd", "a..b", ""])
def test_the_standard_library_and_bad_names_are_not_served(name):
    assert modules.answer(name) is None


def test_the_fabfile_is_never_served(fabfile, tmp_path):
    assert modules.answer("fabfile", fabfile=str(tmp_path / "fabfile.py"))[0] == "refused"


def test_a_missing_interpreter_is_one_clear_error():
    interp = Interpreter("web9", LocalPipe(command("no-such-python3")), "no-such-python3")
    with pytest.raises(HostError, match=r"^\[web9\] cannot start Python: 'no-such-python3' was not found"):
        interp.start(30)


@pytest.mark.parametrize("script, error", [
    ("printf 'hello\\n'", r"not Fake's protocol.*b'hello\\n'"),
    ("printf '\\372K\\377\\377\\377\\377'", "more than the limit"),
    ("printf '\\372K\\000\\000\\000\\001Q'", "unknown tag"),
    ("printf '\\372K\\000\\000\\000\\001N'", "a first message that is not a hello"),
    ("echo oops >&2; exit 4", "exited 4 before Fake's agent started: oops"),
])
def test_a_host_that_does_not_speak_the_protocol_is_stopped(script, error):
    interp = Interpreter("web9", LocalPipe(script), "python3")
    with pytest.raises(HostError, match=error):
        interp.start(10)
    assert interp.broken is not None


def test_a_call_that_runs_too_long_times_out_and_stops_the_interpreter(agent):
    import time

    with pytest.raises(HostError, match=r"call\(sleep\) timed out after 0.5s"):
        agent.call(describe(time.sleep), (5,), {}, "sleep", timeout=0.5)
    assert agent.broken is not None


def test_bootstrap_is_one_command_with_the_python_quoted():
    cmd = command("/opt/my python/bin/python3")
    assert cmd.startswith("'/opt/my python/bin/python3' -c ") and "\n" not in cmd
    assert textwrap.shorten(cmd, 60)  # a sane single line


def test_what_runs_on_hosts_is_python_3_6_syntax():
    import ast
    from pathlib import Path

    from fake.pyhost.bootstrap import agent_source

    ast.parse(agent_source(), feature_version=(3, 6))
    ast.parse((Path(__file__).parents[2] / "fake" / "tasks" / "hostfacts.py").read_text(), feature_version=(3, 6))


def test_a_crafted_answer_after_a_good_hello_is_refused_and_never_unpickled(tmp_path):
    import pickle

    from fake.pyhost.wire import encode, frame

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    stream = tmp_path / "stream"
    stream.write_bytes(frame(encode(("hello", (3, 11, 0), 1, "/usr/bin/python3"))) + pickle.dumps(Exploit()))
    interp = Interpreter("web9", LocalPipe(f"cat {stream}; cat >/dev/null"), "python3")
    interp.start(10)
    with pytest.raises(HostError, match=r"\[web9\] 'python3' on the host answered with data that is not "
                                        r"Fake's protocol \(nothing of it was used\): not a frame"):
        interp.call(describe(os.getpid), (), {}, "getpid", timeout=10)
    assert not marker.exists()
    with pytest.raises(HostError, match="not Fake's protocol"):  # it stays stopped
        interp.call(describe(os.getpid), (), {}, "getpid", timeout=10)


def test_a_python_too_old_stops_with_one_line_saying_so(monkeypatch):
    import fake.pyhost.bootstrap as bootstrap

    monkeypatch.setattr(bootstrap, "MIN_VERSION", (99, 0))  # every Python here is too old for this one
    interp = Interpreter("web9", LocalPipe(bootstrap.command(sys.executable)), sys.executable)
    with pytest.raises(HostError, match=r"^\[web9\] '.*' exited 1 before Fake's agent started: "
                                        r"fake: call\(\) needs Python 99.0 or newer, this is 3\.\d+"):
        interp.start(30)
