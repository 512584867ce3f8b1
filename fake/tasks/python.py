"""A virtualenv for each release, built before it goes live, shared by releases that need the same one.

``from fake.tasks.python import *`` in a fabfile adds one step to the
deploy, ``python:venv`` (after ``updating``). An environment is keyed by
what goes into it: the requirements files' names and contents, the host's
Python version and the pip options. It lives in ``shared/venvs/<key>`` and
the release links it as ``.venv``, so a deploy whose requirements did not
change links the existing one and runs no pip at all.

Two commands at most per host: the first computes the key, removes the
environments no release links any more, and links the environment if it
is complete; only when it is not does a second command build it (an
environment is complete once ``.fake-complete`` is written, so one a
failed or killed build left is built again, never used). The deploy lock
keeps two deploys from building the same key at once.
"""

import hashlib
import posixpath
import shlex
from dataclasses import dataclass

from ..exceptions import ConfigError
from ..settings import as_text, flag, text
from ..shell import Script, join, quote, remove_if_present
from ..state import env, registry
from .commands import current_run, send, stage_task
from .deploy import *  # noqa: F401,F403  (the flow these steps hook into)
from .deploy import __all__ as _deploy_all
from .layout import cenv, release_path, releases_path, shared_path

__all__ = list(_deploy_all) + ["venv_path", "venv_name", "venvs_path", "requirements_files", "pip_option_list"]

env.setdefaults(
    python="python3",
    python_requirements=["requirements.txt"],
    python_venv=".venv",
    pip_options=[],
    pip_cache=True,
)

COMPLETE = ".fake-complete"
REUSED, MISSING = "fake-venv reused", "fake-venv missing"

# Prints the environment's key: a digest of what the controller passes (the
# pip options) and what only the host knows (its Python, the files' bytes).
_KEY_SCRIPT = (
    "import hashlib, platform, sys\n"
    "h = hashlib.sha256(sys.argv[1].encode())\n"
    "h.update(('\\0%s\\0%s\\0%s' % (sys.version, sys.implementation.cache_tag, platform.machine())).encode())\n"
    "for name in sys.argv[2:]:\n"
    "    h.update(('\\0%s\\0' % name).encode())\n"
    "    h.update(open(name, 'rb').read())\n"
    "print(h.hexdigest()[:16])\n"
)

# pyproject.toml: its [project] dependencies as requirement lines (tomllib: Python 3.11+).
_PYPROJECT_SCRIPT = (
    "import sys, tomllib\n"
    "data = tomllib.load(open(sys.argv[1], 'rb'))\n"
    "print('\\n'.join(data.get('project', {}).get('dependencies', [])))\n"
)


@dataclass
class VenvState:
    """This host's environment in the running flow."""

    key: str | None = None
    built: bool = False


def venvs_path():
    """Where the environments live on each host: ``shared/venvs``."""
    return posixpath.join(shared_path(), "venvs")


def venv_path(release=None):
    """The release's environment link (``<release>/.venv``): ``venv_path() + '/bin/python'`` runs its Python."""
    return posixpath.join(release_path(release), venv_name())


def venv_name():
    """The link's name in each release (``python_venv``, default ``.venv``)."""
    name = text(env, "python_venv", ".venv")
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"env.python_venv must be a plain name inside the release, got {name!r}")
    return name


def requirements_files():
    """``python_requirements`` as a list of paths relative to the release (empty: no environment)."""
    value = cenv.get("python_requirements")
    if value in (None, "", False):
        return []
    files = [value] if isinstance(value, str) else list(value)
    for name in files:
        norm = posixpath.normpath(str(name))
        if not name or norm.startswith("/") or norm.split("/")[0] == "..":
            raise ConfigError(f"env.python_requirements entry {name!r} must be a path inside the release")
    return [posixpath.normpath(str(n)) for n in files]


def pip_option_list():
    """``pip_options`` as arguments: a list as given, or a string split like a shell would."""
    value = env.get("pip_options")
    if value in (None, "", False):
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ConfigError(f"env.pip_options must be a string or a list of arguments, got {value!r}")


def _python():
    return as_text("python", cenv.get("python")) or "python3"


def _check():
    requirements_files()
    pip_option_list()
    venv_name()


registry.preflight("deploy", _check)


def _state():
    return current_run().flow().of_host(VenvState, env.host_string)


@stage_task("python:venv", "Link the release's virtualenv from shared/venvs, building it first if its requirements are new.")
def _venv():
    files = requirements_files()
    if not files:
        return
    release = release_path()
    venvs, link = venvs_path(), venv_path()
    options = pip_option_list()
    given = hashlib.sha256("\0".join(["pip"] + options).encode()).hexdigest()
    script = Script()
    script.argv("enter the release", "cd", release)
    for name in files:
        script.argv(f"find {name} in the release (env.python_requirements)", "test", "-f", name)
    script.add(f"find {_python()} on the host (env.python)", f"command -v {quote(_python())} >/dev/null")
    script.add("compute the environment's key",
               f"fake_key=$({join([_python(), '-c', _KEY_SCRIPT, given, *files])})")
    script.add("remove environments no release uses", _cleanup_shell(venvs, link))
    done = quote(venvs) + '/"$fake_key"/' + COMPLETE
    script.add("link the environment if it is ready",
               f"if [ -f {done} ]; then {remove_if_present(link, recursive=True)}; "
               f"ln -s -- {quote(venvs)}/\"$fake_key\" {quote(link)}; echo \"{REUSED} $fake_key\"; "
               f"else echo \"{MISSING} $fake_key\"; fi")
    result = send(script.render(), "python:venv")
    state = _state()
    for line in result.stdout.splitlines():
        if line.startswith(REUSED):
            state.key = line.split()[-1]
        elif line.startswith(MISSING):
            state.key, state.built = line.split()[-1], True
            send(_build_script(state.key, files, options), "python:venv build")
    if state.key:
        current_run().annotate(env.host_string, virtualenv=state.key, virtualenv_built=state.built)


def _cleanup_shell(venvs, link):
    """Shell: remove each environment no release in releases/ links to (but this deploy's)."""
    keep = quote(venvs) + '/"$fake_key"'
    return (f"for fake_v in {quote(venvs)}/*; do "
            f"if [ ! -d \"$fake_v\" ] || [ \"$fake_v\" = {keep} ]; then continue; fi; "
            f"fake_used=; "
            f"for fake_l in {quote(releases_path())}/*/{quote(posixpath.basename(link))}; do "
            f"if [ \"$(readlink \"$fake_l\" 2>/dev/null)\" = \"$fake_v\" ]; then fake_used=1; fi; done; "
            f"if [ -z \"$fake_used\" ]; then rm -rf -- \"$fake_v\"; fi; done")


def _build_script(key, files, options):
    """The build: venv, pip install of every requirements file, the completion mark, the link."""
    venv = posixpath.join(venvs_path(), key)
    link = venv_path()
    python = posixpath.join(venv, "bin", "python")
    log = posixpath.join(venv, ".fake-pip.log")
    script = Script()
    script.argv("enter the release", "cd", release_path())
    script.add("remove a half-built environment", remove_if_present(venv, recursive=True))
    script.argv("create shared/venvs", "mkdir", "-p", venvs_path())
    script.argv(f"{_python()} -m venv", _python(), "-m", "venv", venv)
    args = []
    for name in files:
        if posixpath.basename(name) == "pyproject.toml":
            generated = posixpath.join(venv, f".fake-requirements-{len(args)}.txt")
            script.add(f"read the dependencies of {name}",
                       f"{join([python, '-c', _PYPROJECT_SCRIPT, name])} > {quote(generated)}")
            name = generated
        args += ["-r", name]
    cache = _cache_options()
    pip = join([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *cache, *options, *args])
    script.add("pip install",
               f"if ! {pip} > {quote(log)} 2>&1; then tail -n 20 {quote(log)} >&2; "
               f"rm -rf -- {quote(venv)}; exit 1; fi")
    script.argv("mark the environment complete", "touch", posixpath.join(venv, COMPLETE))
    script.add("link the environment", remove_if_present(link, recursive=True))
    script.argv("link the environment", "ln", "-s", "--", venv, link)
    return script.render()


def _cache_options():
    value = env.get("pip_cache")
    if isinstance(value, str) and value.strip() and value.strip().lower() not in ("true", "false", "yes", "no", "on",
                                                                                  "off", "1", "0"):
        return ["--cache-dir", value]
    if flag(env, "pip_cache", True):
        return ["--cache-dir", posixpath.join(shared_path(), "pip-cache")]
    return ["--no-cache-dir"]


after("updating", "python:venv")  # noqa: F405  (after comes from fake.tasks.deploy)
