"""Django's deploy steps: check, collectstatic in every release, migrate once per deploy.

``from fake.tasks.django import *`` brings :mod:`fake.tasks.python` (the
release's virtualenv) and hooks three steps onto ``updated``, where the
new release is complete on every host and not yet live:

``django:check``
   ``manage.py check --deploy`` on every host, when ``django_check_deploy``
   is on.
``django:collectstatic``
   ``manage.py collectstatic --noinput`` in each host's release.
``django:migrate``
   ``manage.py migrate --noinput``, once per deploy, on the ``@primary('db')``
   host (the first selected host when there is no ``db`` role), from the
   new release, after collectstatic has passed everywhere.

Each runs with the release's own Python (``.venv/bin/python``), and with
``DJANGO_SETTINGS_MODULE`` set when ``django_settings`` is.
"""

import posixpath

from ..exceptions import ConfigError
from ..registry import primary
from ..settings import as_text, flag
from ..shell import Script, join, quote
from ..state import env, registry
from .commands import send, stage_task
from .layout import cenv, release_path
from .python import *  # noqa: F401,F403
from .python import __all__ as _python_all
from .python import venv_path

__all__ = list(_python_all) + ["manage_command"]

env.setdefaults(
    django_manage="manage.py",
    django_settings=None,
    django_collectstatic=True,
    django_migrate=True,
    django_check_deploy=False,
)


def _manage_path():
    path = as_text("django_manage", cenv.get("django_manage")) or "manage.py"
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm.split("/")[0] == "..":
        raise ConfigError(f"env.django_manage must be a path inside the release, got {path!r}")
    return norm


def manage_command(*args, release=None):
    """Shell: ``manage.py ARGS`` in the release (default: the one being deployed), with its venv's Python.

    ``cd`` to manage.py's directory first, as ``python manage.py`` is run by
    hand; ``DJANGO_SETTINGS_MODULE`` comes from ``django_settings``.
    """
    root = release_path(release)
    manage = _manage_path()
    python = posixpath.join(venv_path(release), "bin", "python")
    prefix = ""
    module = as_text("django_settings", cenv.get("django_settings"))
    if module:
        prefix = f"DJANGO_SETTINGS_MODULE={quote(module)} "
    folder = posixpath.join(root, posixpath.dirname(manage)) if posixpath.dirname(manage) else root
    return f"cd {quote(folder)} && {prefix}{join([python, posixpath.basename(manage), *args])}"


def _check():
    _manage_path()
    flag(env, "django_collectstatic", True)
    flag(env, "django_migrate", True)


registry.preflight("deploy", _check)


def _send(label, *args):
    script = Script()
    script.add(f"manage.py {args[0]}", manage_command(*args))
    send(script.render(), label)


@stage_task("django:check", "manage.py check --deploy in the new release (env.django_check_deploy).")
def _check_deploy():
    value = cenv.get("django_check_deploy")
    level = value.upper() if isinstance(value, str) and value.upper() in ("WARNING", "ERROR", "CRITICAL") else None
    if not level and not flag(env, "django_check_deploy", False):
        return
    _send("django:check", "check", "--deploy", *(["--fail-level", level] if level else []))


@stage_task("django:collectstatic", "manage.py collectstatic --noinput in the new release, on every host.")
def _collectstatic():
    if flag(env, "django_collectstatic", True):
        _send("django:collectstatic", "collectstatic", "--noinput")


@stage_task("django:migrate", "manage.py migrate --noinput from the new release, once, on the db host.")
@primary("db")
def _migrate():
    if flag(env, "django_migrate", True):
        _send("django:migrate", "migrate", "--noinput")


after("updated", "django:check")  # noqa: F405
after("updated", "django:collectstatic")  # noqa: F405
after("updated", "django:migrate")  # noqa: F405
