"""``fake init [DIR]``: write a commented starter ``fabfile.py``.

The template is a string here, not a package data file, so an install from
a wheel or a checkout needs nothing besides the ``fake`` package. It shows
the common deploy settings with their defaults, commented out (the rest are
in docs/settings.rst): a starter that pins the defaults of the version that
wrote it would hide later changes.
"""

import os
import shlex
import sys
from pathlib import Path

from ..exceptions import ConfigError
from .init_django import DJANGO_FABFILE

__all__ = ["FABFILE", "USAGE", "write_fabfile", "run_init"]

USAGE = """\
usage: fake init [DIR] [--force] [--django]

Write a starter fabfile.py into DIR (default: the current directory; made
if missing). It will not replace an existing fabfile.py unless --force.
--django: one for a Django app under gunicorn (fake.tasks.django, .gunicorn).
"""

FABFILE = '''\
"""Deploys of this project with Fake.

    fab -R staging deploy      deploy to the staging hosts
    fab -R staging rollback    go back to the previous release
    fab -R staging releases    list each host's releases, marking the live one
    fab --list                 every task, the deploy stages included

Fill in deploy_path, repo_url and each role's hosts. The other settings are
shown with their defaults; uncomment one to change it.
"""

from fake.api import cd, env, run, task
from fake.tasks.deploy import *  # deploy, rollback, their stages, before, after

# `fab -R staging` selects the hosts of the "staging" role. The other keys of a
# role are set on env while a task runs on its hosts, and win over the values
# set further down.
env.roledefs = {
    "staging": {
        "hosts": ["staging.example.com"],
        "branch": "staging",
    },
    "production": {
        "hosts": ["example.com"],
        "branch": "main",
    },
}

# Required.
env.deploy_path = "/home/deployer/app"         # absolute; holds releases/, shared/ and current on each host
env.repo_url = "git@github.com:user/repo.git"  # anything `git clone` takes, run on each host

# The deploy.
# env.branch = None              # branch or tag to deploy; None: the repository's default branch
# env.keep_releases = 5          # releases kept on each host; the live one is never removed
# env.linked_dirs = []           # dirs in shared/ linked into each release, e.g. ["log", "media"]
# env.linked_files = []          # files in shared/ linked into each release; each must exist, e.g. [".env"]
# env.scm = "git"                # how code gets into a release
# env.healthcheck = None         # command run in current/ on each host after the switch; failure switches back
# env.healthcheck_timeout = None # seconds the health check may take; None: command_timeout
# env.command_timeout = None     # seconds before a hanging remote command fails; None: no limit
# env.log_file = "log/fake.log"  # every command and its output, next to this file; None: no log
# env.secret_keys = []           # env keys whose values are masked in the output and the log

# SSH. None leaves the choice to ~/.ssh/config.
# env.user = None                # login user; None: User in ~/.ssh/config, else your local user name
# env.port = None                # None: Port in ~/.ssh/config, else 22
# env.key_filename = None        # private key file(s); None: IdentityFile in ~/.ssh/config and your agent
# env.forward_agent = None       # True lets each host fetch repo_url with the keys of your ssh-agent
# env.connect_timeout = 10       # seconds to wait for each host to connect


@task
def restart():
    """Restart the app (after every deploy and rollback)."""
    run("sudo systemctl restart myapp")


after(finished, restart)
# With env.healthcheck set, restart before the check instead, so that it checks
# the new code, and again after a failed check has switched back:
# before(published, restart)
# after(failed, restart)

# More hooks. `after(updated, ...)` runs in the new release on every host
# before it goes live; a failure there removes it and leaves current alone.
# `before(publishing, ...)` runs just before current is switched. Uncomment
# and adapt:

# @task
# def build():
#     """Install dependencies into the new release."""
#     with cd(env.release_path):
#         run("./install-dependencies")
#
# after(updated, build)
'''


def write_fabfile(directory, force=False, text=FABFILE):
    """Write the starter fabfile into ``directory``; return its absolute path.

    Makes ``directory`` if it is missing. Raises ConfigError, naming the
    path, when a fabfile.py (or a fabfile/ package, which Python would
    import instead) is already there and ``force`` is false.
    """
    folder = Path(directory).expanduser().absolute()
    path = folder / "fabfile.py"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is not a directory")
    if (folder / "fabfile").is_dir():
        raise ConfigError(f"{folder / 'fabfile'} already exists: fab would load that package, not a new fabfile.py")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # "x" fails if the file exists, even one made since the checks above.
        with open(path, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise ConfigError(f"{path} already exists (fake init --force replaces it)") from None
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def run_init(args, out=None):
    """``fake init`` with the words after ``init``: ``[DIR] [--force] [-h]``.

    Prints what it wrote and what to do next, and returns the path; with
    -h/--help prints the usage and returns None. Bad arguments and an
    existing fabfile raise ConfigError; nothing here exits.
    """
    out = out or sys.stdout
    force = django = False
    dirs = []
    for arg in args:
        if arg in ("-h", "--help"):
            out.write(USAGE)
            return None
        if arg == "--force":
            force = True
        elif arg == "--django":
            django = True
        elif arg.startswith("-"):
            raise ConfigError(f"fake init: unknown option {arg!r} (usage: fake init [DIR] [--force] [--django])")
        else:
            dirs.append(arg)
    if len(dirs) > 1:
        raise ConfigError(f"fake init takes one directory, got {len(dirs)}: {' '.join(dirs)}")
    directory = dirs[0] if dirs else "."
    path = write_fabfile(directory, force=force, text=DJANGO_FABFILE if django else FABFILE)
    here = Path.cwd().absolute()
    where = "" if path.parent == here else f" -r {_shown(path.parent, here)}"
    out.write(
        f"wrote {path}\n"
        f"next: set env.deploy_path, env.repo_url and the roles' hosts in it, then\n"
        f"  fab{where} --list\n"
        f"  fab{where} -R staging deploy\n"
    )
    return path


def _shown(folder, here):
    """``folder`` relative to ``here`` when that is shorter, for the hint."""
    try:
        rel = os.path.relpath(folder, here)
    except ValueError:
        return str(folder)
    return shlex.quote(rel if len(rel) < len(str(folder)) else str(folder))
