"""Settings for the example: what a deployed app needs and nothing more.

Secrets and host-specific values come from ``.env`` next to manage.py, a
file kept in ``shared/`` on each host and linked into every release
(``env.linked_files = [".env"]``). State that must outlive a release (the
SQLite database, the migration log) lives in ``var/``, a linked directory.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _read_env_file(path):
    """KEY=VALUE lines into os.environ (the process's own values win)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_read_env_file(BASE_DIR / ".env")

SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "pages",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
TEMPLATES = []

VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
