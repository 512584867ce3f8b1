"""The starter fabfile ``fake init --django`` writes: a Django app under gunicorn, in a venv per release."""

__all__ = ["DJANGO_FABFILE"]

DJANGO_FABFILE = '''\
"""Deploys of this Django project with Fake.

    fab -R staging deploy      deploy to the staging hosts
    fab -R staging rollback    go back to the previous release
    fab -R staging releases    list each host's releases, marking the live one
    fab --list                 every task, the deploy stages and the recipes' steps included

Each deploy, on every host: the release gets a virtualenv from requirements.txt
(reused from shared/venvs when the requirements did not change), collectstatic
runs in it, migrate runs once on the db host, then gunicorn is moved to the
new release with no request dropped, and the health URL must answer 2xx or
every host goes back. Fill in deploy_path, repo_url and the roles' hosts.
"""

from fake.api import env
from fake.tasks.django import *    # the deploy flow, the virtualenv, check/collectstatic/migrate
from fake.tasks.gunicorn import *  # start or reload gunicorn after the switch

env.roledefs = {
    "staging": {"hosts": ["staging.example.com"], "branch": "staging"},
    "production": {"hosts": ["app1.example.com", "app2.example.com"], "branch": "main"},
    "db": ["app1.example.com"],  # migrate runs here, once per deploy
}

# Required.
env.deploy_path = "/home/deployer/app"         # absolute; holds releases/, shared/ and current on each host
env.repo_url = "git@github.com:user/repo.git"  # anything `git clone` takes, run on each host
env.gunicorn_app = "mysite.wsgi:application"   # the WSGI application

# Kept in shared/ and linked into every release: create shared/.env on each host
# first (SECRET_KEY=...; read it in settings.py), and keep uploads and SQLite files in var/.
env.linked_files = [".env"]
env.linked_dirs = ["media"]

# The health check: after the reload each host must answer this with a 2xx.
env.healthcheck = "http://127.0.0.1:8000/health"
# env.healthcheck_timeout = 30

# Python. Shown with their defaults; uncomment one to change it.
# env.python = "python3"                         # the host's Python that makes each virtualenv
# env.python_requirements = ["requirements.txt"] # files pip installs (or "pyproject.toml"); None: no virtualenv
# env.pip_options = []                           # e.g. ["--index-url", "https://pypi.example.com/simple"]
# env.pip_cache = True                           # shared/pip-cache; False: no cache

# Django.
# env.django_manage = "manage.py"                # relative to the release
# env.django_settings = None                     # DJANGO_SETTINGS_MODULE, e.g. "mysite.settings.production"
# env.django_check_deploy = False                # True: manage.py check --deploy before migrating
# env.django_collectstatic = True
# env.django_migrate = True

# gunicorn.
# env.gunicorn_bind = "127.0.0.1:8000"
# env.gunicorn_workers = None                    # None: gunicorn's default
# env.gunicorn_options = []                      # more gunicorn flags, e.g. ["--timeout", "60"]
# env.gunicorn_systemd_unit = None               # a unit name: systemctl restart it instead
# env.gunicorn_sudo = False                      # run systemctl through sudo -n
'''
