"""The original Fake README's fabfile, in Python 3, plus a ``local`` role.

``fab -r examples -R local deploy`` deploys this very repository into
/tmp/fake-demo on this machine, with no SSH server and no network.
"""

import os
import platform

from fake.api import call, cd, env, run, task
from fake.tasks.deploy import *  # noqa: F401,F403  (the flow, its stages, before/after)
from fake.tasks.checks import *  # noqa: F401,F403  (preflight checks, on when a check_* setting is set)

HERE = os.path.dirname(os.path.abspath(__file__))

env.roledefs = {
    "staging": {
        "hosts": ["staging.example.com"],
        "branch": "staging",
        "restart_command": "sudo systemctl restart gunicorn",
    },
    "production": {
        "hosts": ["example.com"],
        "branch": "master",
        "restart_command": "sudo systemctl restart gunicorn",
    },
    # The built-in target: commands run on this machine through the shell.
    "local": {
        "hosts": ["local"],
        "deploy_path": "/tmp/fake-demo",
        "repo_url": os.path.dirname(HERE),  # this checkout; its default branch
        "branch": None,
        "restart_command": "echo restarting the app in $PWD",
        # Checked on the host, in Python, before anything changes (fake.tasks.checks).
        "check_disk_free": "10M",
        "check_python": "3.6",
    },
}

env.forward_agent = True
env.deploy_path = "/home/deployer/app"
env.user = "deployer"
env.repo_url = "git@github.com:user/repo.git"
env.linked_dirs = ["static"]
env.keep_releases = 3


@task
def restart():
    """Restart the app server (after every deploy and rollback)."""
    with cd(current_path()):  # noqa: F405  (paths come from fake.tasks.deploy)
        run(env.restart_command)


after(finished, restart)  # noqa: F405


@task
def show():
    """Show the deploy tree: current, the releases, the revision log."""
    with cd(deploy_path()):  # noqa: F405
        run("ls -l current releases shared && cat revisions.log")


def release_count(path):
    """Runs on the host, in its Python: how many releases are there."""
    try:
        return len(os.listdir(os.path.join(path, "releases")))
    except FileNotFoundError:
        return 0


@task
def facts():
    """Ask each host's Python for its name, version and release count."""
    print(env.host, call(platform.node), call(platform.python_version),
          call(release_count, deploy_path()), "releases")  # noqa: F405
