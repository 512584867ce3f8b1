"""This example deployed on this machine with Fake's Python recipes (the built-in ``local`` target).

    fab -r examples/django -R local deploy         deploy examples/django of this checkout's
                                                   committed code into /tmp/fake-django-demo
    curl http://127.0.0.1:8000/                     the commit it serves
    fab -r examples/django -R local rollback
    fab -r examples/django -R local gunicorn:stop

The first deploy installs Django and gunicorn from the package index into
/tmp/fake-django-demo/shared/venvs; the next ones reuse that environment.
For real hosts, start from ``fake init --django``.
"""

import os

from fake.api import env
from fake.tasks.django import *  # noqa: F401,F403  (the flow, the virtualenv, collectstatic, migrate)
from fake.tasks.gunicorn import *  # noqa: F401,F403

HERE = os.path.dirname(os.path.abspath(__file__))

env.roledefs = {
    "local": {"hosts": ["local"]},
    "db": ["local"],
}
env.deploy_path = "/tmp/fake-django-demo"
env.repo_url = os.path.dirname(os.path.dirname(HERE))  # this checkout
env.repo_tree = "examples/django"
env.linked_dirs = ["var"]  # the SQLite database and the migration log outlive releases
env.gunicorn_app = "mysite.wsgi:application"
env.gunicorn_bind = "127.0.0.1:8000"
env.healthcheck = "http://127.0.0.1:8000/health"
env.keep_releases = 3
