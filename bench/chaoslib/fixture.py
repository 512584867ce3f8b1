"""What the rounds play on: the fabfile, the files linked from shared/, the hosts' small /srv.

One place for the fleet's fixed content, so the set-up that writes it and the
checks that compare against it cannot drift apart.
"""

import random

from tests.e2e.test_deploy import APP  # deploy_path on every host

__all__ = ["APP", "BAD_MARKER", "CHILD_PATH", "FABFILE", "FILL", "HOOK_LOG", "LINKED_DIRS", "LINKED_FILES",
           "SHARED_FILES", "SRV_SIZE"]

LINKED_FILES = ["config/app.ini", "config/database.yml"]
LINKED_DIRS = ["static", "var/uploads"]
SHARED_FILES = {
    "config/app.ini": b"secret=1\n",
    "config/database.yml": b"production:\n  adapter: postgresql\n  password: hunter2\n",
    "static/logo.bin": bytes(random.Random(7).randrange(256) for _ in range(4096)),
    "var/uploads/user-1.txt": b"an upload that must survive every deploy\n",
}
HOOK_LOG = "var/uploads/chaos-hook.log"  # the one shared file a hook may write
BAD_MARKER = ".fake-bad"  # fake.tasks.layout.BAD_MARKER: a release switched back after a failed deploy
SRV_SIZE = "32m"
FILL = "/srv/chaos-fill"
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

FABFILE = '''# fabfile.py for bench/chaos.py (written by it).
import os

from fake.api import env, run, task
from fake.tasks.deploy import *

env.roledefs = {{"production": {{"hosts": {hosts!r}, "branch": "master"}}}}
env.deploy_path = {app!r}
env.repo_url = {repo!r}
env.scm = os.environ.get("CHAOS_SCM", "git")
env.keep_releases = 4
env.linked_files = {linked_files!r}
env.linked_dirs = {linked_dirs!r}

# CHAOS_HOOK=stage:host:round registers a hook on that stage only for this
# run, so rounds without it keep Fake's default flow (no fabfile task after
# finish, so the finishing command releases the lock). It appends a line to
# a shared file, as a real hook might, then fails on the named host.
_hook = os.environ.get("CHAOS_HOOK")
if _hook:
    _stage, _victim, _round = _hook.split(":")

    @task
    def chaos_hook():
        line = "round=" + _round + " host=" + env.host_string + " stage=" + _stage
        fail = "; exit 7" if env.host_string == _victim else ""
        run("echo '" + line + "' >> {app}/shared/{hook_log}" + fail)

    after(_stage, chaos_hook)
'''
