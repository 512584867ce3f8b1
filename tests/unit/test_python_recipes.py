"""fake.tasks.python, .django, .gunicorn and the URL health check: settings read, commands built.

Shell text is checked with ``sh -n``, values that hold spaces, ``;`` or quotes
must come out as one word, and the scripts that can run here without a host
(the environment's key, the URL check against a local HTTP server) are run.
"""

import http.server
import os
import shlex
import shutil
import subprocess
import sys
import threading

import pytest

from fake.env import HostScope, host_scope
from fake.exceptions import ConfigError, MissingSetting
from fake.state import env
from fake.tasks import django, gunicorn, python
from fake.tasks.httpcheck import url_check_shell

NASTY = "/srv/my app;touch /tmp/pwned'x"


@pytest.fixture
def host():
    env.deploy_path = "/srv/app"
    env.release_name = "20260101000000"
    with host_scope(HostScope("web1")):
        yield


def parses(script):
    proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return script


@pytest.mark.parametrize("value, expected", [
    (None, []),
    ("", []),
    ("--no-index --find-links '/srv/my wheels'", ["--no-index", "--find-links", "/srv/my wheels"]),
    (["--index-url", "https://pypi.example.com/simple"], ["--index-url", "https://pypi.example.com/simple"]),
])
def test_pip_options(host, value, expected):
    env.pip_options = value
    assert python.pip_option_list() == expected


def test_pip_options_of_another_kind_are_refused(host):
    env.pip_options = 3
    with pytest.raises(ConfigError, match="env.pip_options"):
        python.pip_option_list()


@pytest.mark.parametrize("value, expected", [
    ("requirements.txt", ["requirements.txt"]),
    (["requirements/base.txt", "requirements/prod.txt"], ["requirements/base.txt", "requirements/prod.txt"]),
    (None, []),
])
def test_requirements_files(host, value, expected):
    env.python_requirements = value
    assert python.requirements_files() == expected


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.txt"])
def test_requirements_outside_the_release_are_refused(host, bad):
    env.python_requirements = [bad]
    with pytest.raises(ConfigError, match="inside the release"):
        python.requirements_files()


def test_the_build_script_quotes_every_value(host):
    env.deploy_path = NASTY
    env.python = "python3"
    script = parses(python._build_script("abc123", ["req s.txt"], ["--find-links", NASTY]))
    assert shlex.quote(NASTY) in script
    assert "--no-index" not in script and "--cache-dir" in script


def test_the_key_changes_with_the_requirements_and_the_options(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==5.2.1\n")

    def key(given):
        return subprocess.run([sys.executable, "-c", python._KEY_SCRIPT, given, "requirements.txt"], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    first = key("a")
    assert key("a") == first and len(first) == 16
    assert key("b") != first
    (tmp_path / "requirements.txt").write_text("Django==5.2.2\n")
    assert key("a") != first


def test_manage_command_uses_the_release_venv_and_quotes_the_settings_module(host):
    env.django_settings = "mysite.settings;touch /tmp/pwned"
    env.django_manage = "src/manage.py"
    command = parses(django.manage_command("migrate", "--noinput"))
    words = shlex.split(command)
    assert words[:2] == ["cd", "/srv/app/releases/20260101000000/src"]
    assert "DJANGO_SETTINGS_MODULE=mysite.settings;touch /tmp/pwned" in words
    assert "/srv/app/releases/20260101000000/.venv/bin/python" in words


def test_gunicorn_needs_its_app(host):
    with pytest.raises(MissingSetting, match="gunicorn_app"):
        gunicorn._app()


def test_gunicorn_runs_through_current_and_quotes_every_value(host):
    env.gunicorn_app = "mysite.wsgi:application"
    env.gunicorn_bind = "127.0.0.1:8000;touch /tmp/pwned"
    env.gunicorn_options = ["--timeout", "60 s"]
    argv = gunicorn._command()
    assert argv[:2] == ["/srv/app/current/.venv/bin/python", "/srv/app/current/.venv/bin/gunicorn"]
    assert argv[argv.index("--chdir") + 1] == "/srv/app/current"
    assert "--preload" in argv and argv[-1] == "mysite.wsgi:application"
    script = parses(gunicorn.reload_shell())
    assert shlex.quote("127.0.0.1:8000;touch /tmp/pwned") in script and "'60 s'" in script
    assert "WINCH" in script  # preload: the old workers stop before the new master's start
    env.gunicorn_preload = False
    assert "fake_strict=0" in gunicorn.reload_shell()
    parses(gunicorn.stop_shell())


def test_gunicorn_under_systemd(host):
    env.gunicorn_systemd_unit = "my app"
    assert gunicorn._systemd_shell() == "systemctl restart 'my app'"
    env.gunicorn_systemd_reload = True
    env.gunicorn_sudo = True
    assert gunicorn._systemd_shell() == "sudo -n systemctl reload 'my app'"


class _Server:
    def __init__(self, status):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Location", "/elsewhere")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/health"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _path_with(tmp_path, *tools):
    """A PATH holding only these tools (and what the script needs besides): to pick curl, wget or python3."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in ("date", "sleep", "awk", *tools):
        # python3 on PATH may be a shim script (pyenv); the interpreter running the tests is a real one.
        found = os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool)
        if found is None:
            pytest.fail(f"{tool} is needed on this machine for this test")
        os.symlink(found, folder / tool)
    return str(folder)


@pytest.mark.parametrize("tool", ["curl", "wget", "python3"])
@pytest.mark.parametrize("status, passes", [(200, True), (204, True), (302, False), (503, False)])
def test_the_url_check_passes_only_on_2xx(tmp_path, tool, status, passes):
    server = _Server(status)
    try:
        proc = subprocess.run(["/bin/sh", "-c", url_check_shell(server.url, 1)], capture_output=True, text=True,
                              env={"PATH": _path_with(tmp_path, tool)}, timeout=30)
    finally:
        server.close()
    assert (proc.returncode == 0) == passes, (proc.stdout, proc.stderr)
    if passes:
        assert f"answered {status} ({tool})" in proc.stdout
    else:
        assert f"last: HTTP {status}, by {tool}" in proc.stderr


def test_the_url_check_says_when_the_host_has_no_tool(tmp_path):
    proc = subprocess.run(["/bin/sh", "-c", url_check_shell("http://127.0.0.1:9/", 1)], capture_output=True,
                          text=True, env={"PATH": _path_with(tmp_path)}, timeout=30)
    assert proc.returncode == 127 and "no curl, wget or python3" in proc.stderr


def test_pyproject_dependencies_become_requirement_lines(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\ndependencies = ["Django>=5.2", "gunicorn==23.0.0"]\n')
    out = subprocess.run([sys.executable, "-c", python._PYPROJECT_SCRIPT, "pyproject.toml"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Django>=5.2", "gunicorn==23.0.0"]


def test_a_pyproject_is_installed_through_its_dependencies(host):
    script = parses(python._build_script("abc", ["pyproject.toml"], []))
    assert "tomllib" in script and "-r /srv/app/shared/venvs/abc/.fake-requirements-0.txt" in script
