"""``fake init``: the starter fabfile loads in the real ``fab``."""

import sys

from tests.e2e.conftest import explain, fab_bin, fake_bin, run_fab  # noqa: F401

# The entry point main.py will call for ``fake init [DIR] [--force]``. Once it
# is wired in, this becomes: INIT = [fake_bin, "init"]
INIT = [fake_bin, "init"]


def init(args, cwd):
    return run_fab(args, cwd, program=INIT)


def listed_tasks(out):
    """Task names from ``fab --list`` output."""
    return {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.strip()}


def test_init_in_an_empty_directory_then_fab_lists_the_tasks(project):
    proc = init([], project)
    assert proc.returncode == 0, explain(proc)
    assert (project / "fabfile.py").is_file(), explain(proc)
    assert "fab -R staging deploy" in proc.stdout, explain(proc)
    listing = run_fab(["--list"], project, program=fab_bin)
    assert listing.returncode == 0, explain(listing)
    tasks = listed_tasks(listing.stdout)
    assert {"deploy", "rollback", "restart", "releases", "unlock"} <= tasks, explain(listing)


def test_init_into_a_directory(project):
    proc = init(["site"], project)
    assert proc.returncode == 0, explain(proc)
    listing = run_fab(["-r", "site", "--list"], project)
    assert listing.returncode == 0, explain(listing)
    assert {"deploy", "rollback", "restart"} <= listed_tasks(listing.stdout), explain(listing)


def test_init_refuses_to_overwrite(project):
    fabfile = project / "fabfile.py"
    fabfile.write_text("MINE = 1\n")
    proc = init([], project)
    assert proc.returncode != 0, explain(proc)
    assert f"{fabfile} already exists" in proc.stderr, explain(proc)
    assert fabfile.read_text() == "MINE = 1\n"
