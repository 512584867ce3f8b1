"""What a fabfile finds in ``env``: what it set, and what Fake documents; nothing Fake keeps for itself."""

import json

from tests.e2e.conftest import explain
from tests.e2e.test_deploy import app, deploy, ok, repo  # noqa: F401

SHOW_KEYS = '''
import json

def say(kind, value):
    print(env.host + " " + kind + " " + json.dumps(value) + "\\n", end="")  # one write: hosts run in threads

@task
def show_keys(c):
    say("keys", sorted(env.keys()))

@task
def show_flow_values(c):
    say("flow", {k: env.get(k) for k in
                 ("deploy_action", "release_name", "release_path", "previous_release", "rolled_back_from")})
    say("flowkeys", sorted(env.keys()))

after(published, show_flow_values)
'''

FABFILE_KEYS = {"roledefs", "deploy_path", "repo_url", "linked_dirs", "linked_files"}
ROLE_KEYS = {"branch"}  # the production role's own values
DEFAULTS = {"branch", "keep_releases", "linked_dirs", "linked_files", "scm"}  # fake.tasks.deploy's
PER_HOST = {"host", "host_string", "host_roles"}  # docs/settings.rst, "Values set while a task runs"
INVOCATION = {"roles", "effective_roles", "all_hosts"}  # from -R, set by the CLI
SHOWN = {"deploy_action", "release_name", "release_path", "previous_release", "rolled_back_from"}


def printed(proc, prefix):
    """{host: value} from the lines ``<host> <prefix> <json>``."""
    out = {}
    for line in proc.stdout.splitlines():
        host, kind, rest = (line.split(" ", 2) + ["", ""])[:3]
        if kind == prefix:
            out[host] = json.loads(rest)
    return out


EXPECTED = sorted(FABFILE_KEYS | ROLE_KEYS | DEFAULTS | PER_HOST | INVOCATION)


def test_after_a_deploy_and_a_rollback_env_holds_no_key_fake_made_up(fab, app, repo):
    fleet = app(extra=SHOW_KEYS)
    ok(deploy(fab, fleet, "deploy"))
    for flow in ("deploy", "rollback"):
        proc = ok(deploy(fab, fleet, flow, "show_keys"))
        keys = printed(proc, "keys")
        assert sorted(keys) == sorted(h.name for h in fleet.hosts), explain(proc)
        for host, seen in keys.items():
            assert seen == EXPECTED, (flow, host, sorted(set(seen) ^ set(EXPECTED)), explain(proc))


def test_the_documented_values_are_readable_while_the_flow_runs(fab, app, repo):
    fleet = app(extra=SHOW_KEYS)
    first = ok(deploy(fab, fleet, "deploy"))
    second = ok(deploy(fab, fleet, "deploy"))
    back = ok(deploy(fab, fleet, "rollback"))
    for proc, other in ((first, "rolled_back_from"), (second, "rolled_back_from"), (back, "previous_release")):
        during = sorted(set(EXPECTED) | SHOWN - {other})  # each flow shows what the docs say it does
        assert printed(proc, "flowkeys") == {h.name: during for h in fleet.hosts}, explain(proc)
    first, second, back = (printed(proc, "flow") for proc in (first, second, back))
    for host in fleet.hosts:
        old, new = first[host.name]["release_name"], second[host.name]["release_name"]
        assert first[host.name] == {"deploy_action": "deploy", "release_name": old, "previous_release": None,
                                    "release_path": f"/srv/app/releases/{old}", "rolled_back_from": None}
        assert second[host.name]["previous_release"] == old and new > old
        assert back[host.name] == {"deploy_action": "rollback", "release_name": old, "previous_release": None,
                                   "release_path": f"/srv/app/releases/{old}", "rolled_back_from": new}
