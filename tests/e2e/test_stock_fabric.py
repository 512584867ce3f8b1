"""Fake's `fab` against stock Fabric's `fab`: one fabfile, the same result.

Fake's program subclasses Fabric's, so stock features must behave as they do
under stock ``fab``.  Each test runs one fabfile under both programs and
checks Fake against stock, and stock against what Fabric documents, so that
a breakage shared by both (say, a changed Fabric) still fails a test.
"""

import json
import re
import textwrap

import pytest

from tests.e2e.conftest import explain, plain_fab, run_fab

PLAIN = '''
from fabric import task

@task
def build(c):
    """Build it."""
    print("build")

@task
def bump(c):
    print("bump")

@task
def show(c):
    print(c.config.x)
'''

AUTOPRINT = '''
import fabric

@fabric.task(autoprint=True)
def answer(c):
    return 42
'''

ECHO = '''
from fabric import task

@task
def show(c):
    print(c.config.run.echo)
'''

COLLECTION = '''
from fabric import task
from invoke import Collection

@task
def show(c):
    print(c.config.x)

ns = Collection(show)
ns.configure({"x": "from-collection"})
'''

PRE_POST = '''
import fabric

@fabric.task
def setup(c):
    print("setup")

@fabric.task
def cleanup(c):
    print("cleanup")

@fabric.task(pre=[setup], post=[cleanup])
def build(c):
    print("build")
'''


@pytest.fixture
def web(make_fleet):
    return make_fleet(2, names=["web1", "web2"])


def write(project, text, name="fabfile.py"):
    (project / name).write_text(textwrap.dedent(text))


def on_hosts(request, hosts):
    """``-H hosts`` and the fleet for `both`; starts no sshd when hosts is ''."""
    if not hosts:
        return [], {}
    return ["-H", hosts], {"fleet": request.getfixturevalue("web")}


def both(project, args, **kwargs):
    """Run ``fab *args`` under stock Fabric, then under Fake: (stock, fake)."""
    stock = run_fab(args, project, program=plain_fab, **kwargs)
    fake = run_fab(args, project, **kwargs)
    return stock, fake


def assert_same(stock, fake, expected):
    """Stock prints the ``expected`` lines and exits 0; Fake prints and exits alike."""
    why = "\n=== stock ===" + explain(stock) + "\n=== fake ===" + explain(fake)
    assert stock.returncode == 0, why
    assert stock.stdout.splitlines() == expected, why
    assert fake.returncode == stock.returncode, why
    assert fake.stdout == stock.stdout, why


# -- running tasks ---------------------------------------------------------------
@pytest.mark.parametrize("hosts, expected", [
    ("", ["42"]),
    ("web1", ["42"]),
    # Stock prints the value once per host, with no host prefix.
    ("web1,web2", ["42", "42"]),
], ids=["local", "one-host", "two-hosts"])
def test_autoprint_prints_the_return_value(project, request, hosts, expected):
    write(project, AUTOPRINT)
    args, kwargs = on_hosts(request, hosts)
    assert_same(*both(project, args + ["answer"], **kwargs), expected)


def test_fabric_env_var_sets_config(project):
    """FABRIC_RUN_ECHO=1 is config run.echo = True (Fabric's env prefix)."""
    write(project, ECHO)
    assert_same(*both(project, ["show"], env={"FABRIC_RUN_ECHO": "1"}), ["True"])


@pytest.mark.parametrize("hosts", ["", "web1"], ids=["local", "one-host"])
def test_collection_configure_reaches_the_task(project, request, hosts):
    """Config from ``ns.configure`` is in the task's Context and its Connection."""
    write(project, COLLECTION)
    args, kwargs = on_hosts(request, hosts)
    assert_same(*both(project, args + ["show"], **kwargs), ["from-collection"])


@pytest.mark.parametrize("hosts, expected", [
    ("", ["setup", "build", "cleanup"]),
    # Stock runs pre and post tasks once, locally, around the per-host task.
    ("web1,web2", ["setup", "build", "build", "cleanup"]),
], ids=["local", "two-hosts"])
def test_pre_and_post_tasks_run_around_the_task(project, request, hosts, expected):
    write(project, PRE_POST)
    args, kwargs = on_hosts(request, hosts)
    assert_same(*both(project, args + ["build"], **kwargs), expected)


# -- the command line --------------------------------------------------------------
def option_entries(help_text):
    """Each option of a core help, wrapped lines joined, whitespace squeezed.

    Squeezed, so a different column width (Fake's longer option names) or
    wrapping does not count as a difference.
    """
    entries = []
    for line in help_text.splitlines():
        if line.startswith("  -"):
            entries.append(line)
        elif entries and line.startswith("    ") and line.strip():
            entries[-1] += line
    return {" ".join(entry.split()) for entry in entries}


def test_help_lists_every_stock_option(project):
    write(project, PLAIN)
    stock, fake = both(project, ["--help"])
    why = explain(stock) + explain(fake)
    assert stock.returncode == 0 and fake.returncode == 0, why
    stock_opts, fake_opts = option_entries(stock.stdout), option_entries(fake.stdout)
    assert ("-H STRING, --hosts=STRING Comma-separated host name(s) "
            "to execute tasks against.") in stock_opts, why
    # The one stock option Fake changes: -R is --roles (as in Fabric 1),
    # so Invoke's "-R, --dry" keeps only its long flag.
    dry = "-R, --dry Echo commands instead of running."
    assert dry in stock_opts, why
    assert sorted(stock_opts - {dry} - fake_opts) == [], why
    assert any(o.startswith("-R STRING, --roles=STRING ") for o in fake_opts), why


def test_list_is_the_same(project):
    write(project, PLAIN)
    stock, fake = both(project, ["-l"])
    assert_same(stock, fake, [
        "Available tasks:", "", "  build   Build it.", "  bump", "  show", ""])


def test_list_json_is_the_same(project):
    write(project, PLAIN)
    stock, fake = both(project, ["--list-format", "json", "-l"])
    why = explain(stock) + explain(fake)
    assert stock.returncode == 0 and fake.returncode == 0, why
    listed = json.loads(stock.stdout)
    assert listed["name"] == "fabfile", why
    assert [(t["name"], t["help"]) for t in listed["tasks"]] == [
        ("build", "Build it."), ("bump", None), ("show", None)], why
    assert json.loads(fake.stdout) == listed, why


def test_complete_prints_task_names(project):
    """Completion lists every task: stock leaves prefix filtering to the shell."""
    write(project, PLAIN)
    stock, fake = both(project, ["--complete", "--", "fab", "b"])
    assert_same(stock, fake, ["build", "bump", "show"])


def test_collection_flag_loads_another_module(project):
    write(project, PLAIN)
    write(project, '''
        from fabric import task

        @task
        def other(c):
            print("other")
    ''', name="tasks2.py")
    assert_same(*both(project, ["-c", "tasks2", "other"]), ["other"])


def test_runtime_config_file(project):
    write(project, PLAIN)
    (project / "config.yaml").write_text("x: from-file\n")
    assert_same(*both(project, ["-f", "config.yaml", "show"]), ["from-file"])


def test_version_mentions_fabric(project):
    """Fake prints its own version line, then exactly stock's lines."""
    write(project, PLAIN)
    stock, fake = both(project, ["--version"])
    why = explain(stock) + explain(fake)
    assert stock.returncode == 0 and fake.returncode == 0, why
    lines = stock.stdout.splitlines()
    assert re.fullmatch(r"Fabric \d+\.\d+\S*", lines[0]), why
    assert fake.stdout.splitlines()[0].startswith("Fake "), why
    assert fake.stdout.splitlines()[1:] == lines, why
