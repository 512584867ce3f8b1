"""The original Fake README's fabfile, in Python 3, plus a ``local`` role.

``fab -r examples -R local deploy`` deploys this very repository into
/tmp/fake-demo on this machine, with no SSH server and no network.
"""

import os

from fake.api import cd, env, run, task
from fake.tasks.deploy import *  # noqa: F401,F403  (the flow, its stages, before/after)

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
