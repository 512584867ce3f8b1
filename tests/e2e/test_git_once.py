"""A deploy reaches the git server once per host: counted on a real git server over SSH.

The repository is served by a test host whose sshd runs every command
through a ForceCommand that logs it; each fetch, clone or ls-remote over
SSH is one ``git-upload-pack`` there. Deploy hosts reach it with the
``GIT_SSH_COMMAND`` their sshd sets (``SetEnv``), which Fake's git steps honour.
"""

import os
import shutil
import textwrap

import pytest

from tests.e2e.conftest import explain
from tests.e2e.sshd import TEST_USER, Fleet, commit, ensure_test_user, make_repo

HOSTS = ["web1", "web2", "web3"]


@pytest.fixture
def git_server(project):
    pw = ensure_test_user()
    logdir = project / "gitlog"
    logdir.mkdir()
    os.chown(logdir, pw.pw_uid, pw.pw_gid)
    wrapper = project / "log-git"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s\\n' "$SSH_ORIGINAL_COMMAND" >> {logdir}/commands.log
        exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
        """))
    wrapper.chmod(0o755)
    server = Fleet(1, names=["git"], extra_config=[f"ForceCommand {wrapper}"])
    key = project / "git_key"
    shutil.copyfile(server.key_path, key)
    os.chown(key, pw.pw_uid, pw.pw_gid)
    key.chmod(0o600)
    server.client_key = key
    server.log = logdir / "commands.log"
    yield server
    server.close()


def upload_packs(server):
    if not server.log.exists():
        return 0
    return sum(1 for line in server.log.read_text().splitlines() if line.startswith("git-upload-pack"))


def test_first_and_later_deploys_open_one_git_connection_per_host(project, fab, git_server):
    ssh = (f"ssh -i {git_server.client_key} -o IdentitiesOnly=yes -o BatchMode=yes "
           "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    hosts = Fleet(3, names=HOSTS, extra_config=[f'SetEnv GIT_SSH_COMMAND="{ssh}"'])
    try:
        repo = project / "repo"
        make_repo(repo)
        url = f"ssh://{TEST_USER}@127.0.0.1:{git_server.hosts[0].port}{repo}"
        (project / "fabfile.py").write_text(textwrap.dedent(f"""
            from fake.api import env
            from fake.tasks.deploy import *
            env.roledefs = {{'app': {HOSTS!r}}}
            env.deploy_path = '/srv/app'
            env.repo_url = {url!r}
            """))
        args = ["-S", hosts.ssh_config_path, "-R", "app", "deploy"]

        proc = fab(args, timeout=120)  # a first deploy: the probe clones the mirror
        assert proc.returncode == 0, explain(proc)
        assert upload_packs(git_server) == 3, git_server.log.read_text()

        sha = commit(repo, {"app.py": "print('two')\n"}, "two")
        proc = fab(args, timeout=120)  # an existing app: one fetch per host, nothing else
        assert proc.returncode == 0, explain(proc)
        assert upload_packs(git_server) == 6, git_server.log.read_text()
        for host in hosts.hosts:
            assert host.sh("cat /srv/app/current/REVISION").strip() == sha

        proc = fab(["-S", hosts.ssh_config_path, "-R", "app", "--dry-run", "deploy"], timeout=120)
        assert proc.returncode == 0, explain(proc)  # a dry run reads (ls-remote) and writes nothing
        assert upload_packs(git_server) == 9
    finally:
        hosts.close()
