"""What fake.tasks.python costs on a deploy whose requirements did not change.

    sudo .venv/bin/python bench/python_venv.py [--hosts 3] [--runs 5]

Deploys examples/django to N real sshd hosts (tests/e2e/sshd.py) twice per
run, interleaved: once with fake.tasks.deploy alone (a plain deploy) and
once with fake.tasks.python, whose environment was built by a warm-up
deploy and is reused. Each run commits a change to the app first. Prints
the median seconds of each, their difference, and the pip commands the
hosts ran during the timed runs (from sshd's ForceCommand log: none).
Django and gunicorn come from the tests' wheelhouse (filled once from the
package index).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import run_fab  # noqa: E402
from tests.e2e.sshd import commit  # noqa: E402
from tests.e2e.test_django import EXAMPLE, fill_wheelhouse, logging_fleet, make_app_repo  # noqa: E402
from tests.e2e.test_rolling import commands  # noqa: E402

FABFILE = """
from fake.api import env
from fake.tasks.{library} import *
env.roledefs = {{'bench': {hosts!r}}}
env.deploy_path = {path!r}
env.repo_url = {repo!r}
env.pip_options = ['--no-index', '--find-links', {wheels!r}]
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fake-bench-py-"))
    work.chmod(0o755)
    wheels = fill_wheelhouse()
    names = [f"web{i}" for i in range(1, args.hosts + 1)]
    with logging_fleet(work, names) as fleet:
        for host in fleet.hosts:
            host.sh("chown -R fake-test /srv")
        repo = make_app_repo(work / "repo")
        projects = {}
        for library in ("deploy", "python"):
            folder = work / library
            folder.mkdir(mode=0o755)
            (folder / "fabfile.py").write_text(FABFILE.format(library=library, hosts=names, path=f"/srv/{library}",
                                                              repo=str(repo), wheels=str(wheels)))
            projects[library] = folder

        def deploy(library):
            started = time.monotonic()
            proc = run_fab(["-R", "bench", "deploy"], projects[library], fleet=fleet, timeout=600)
            if proc.returncode != 0:
                sys.exit(f"{library} deploy failed:\n{proc.stdout}\n{proc.stderr}")
            return time.monotonic() - started

        deploy("deploy"), deploy("python")  # warm-up: the python one builds the environments
        marks = {h.name: len(commands(h)) for h in fleet.hosts}
        times = {"deploy": [], "python": []}
        for run in range(args.runs):
            commit(repo, {"pages/static/pages/site.css": f"/* run {run} */\n"}, f"run {run}")
            for library in times:
                times[library].append(deploy(library))
        pips = sum("pip install" in c[2] for h in fleet.hosts for c in commands(h)[marks[h.name]:])
    plain, python = statistics.median(times["deploy"]), statistics.median(times["python"])
    print(f"{args.hosts} hosts, {args.runs} runs, examples/django ({EXAMPLE.relative_to(ROOT)})")
    print(f"plain deploy (fake.tasks.deploy):              {plain:.2f} s median")
    print(f"with fake.tasks.python, environment reused:     {python:.2f} s median")
    print(f"difference:                                    {python - plain:+.2f} s")
    print(f"pip install commands on the hosts in the timed runs: {pips}")


if __name__ == "__main__":
    main()
