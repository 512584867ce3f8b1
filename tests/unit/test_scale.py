"""Pure logic behind running on many hosts: host patterns, jump chains, widths and start slots."""

import threading
import time

import pytest
from paramiko import SSHConfig

from fake import progress
from fake.engine import limits, pool as poolmod
from fake.env import Env
from fake.exceptions import ConfigError
from fake.hostselect import select
from fake.transport.bastion import jump_chain, split_jumps

ROLES = {"web": ["web1", "web2", "web10", "deploy@web3:2222"], "db": {"hosts": ["db1", "db2"]}}


@pytest.mark.parametrize("hosts, roles, exclude, expected", [
    ("web*", None, None, ["web1", "web2", "web10", "deploy@web3:2222"]),  # no -R: every role
    ("web[12]", None, None, ["web1", "web2"]),
    ("db?", "web,db", None, ["db1", "db2"]),  # a pattern narrows the roles, not adds to them
    ("lb1,web1?", "web", None, ["lb1", "web10"]),  # a plain name still names a host
    ("web3", None, None, ["web3"]),
    (None, "web,db", "web2,db*", ["web1", "web10", "deploy@web3:2222"]),
    (None, "web", "deploy@web3:2222", ["web1", "web2", "web10"]),
    (None, "web", "web3", ["web1", "web2", "web10"]),  # the bare name of user@host:port
    ("h1,h2", None, "h?", None),  # excluding everything is an error
])
def test_select(hosts, roles, exclude, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="leaves no hosts"):
            select(hosts, roles, ROLES, exclude)
    else:
        assert select(hosts, roles, ROLES, exclude) == expected


@pytest.mark.parametrize("hosts, roles, exclude, named", [
    ("app*", None, None, "'app*' matches none of the hosts of roles web, db"),
    ("db*", "web", None, "'db*' matches none of the hosts of role web"),
    (None, "web", "web9", "'web9' matches none of the selected hosts"),
    (None, "web", "x*", "'x*' matches none"),
])
def test_an_entry_matching_nothing_is_named(hosts, roles, exclude, named):
    with pytest.raises(ConfigError, match=named.replace("*", r"\*")):
        select(hosts, roles, ROLES, exclude)


def test_a_pattern_without_roledefs_says_so():
    with pytest.raises(ConfigError, match="env.roledefs, which has no roles"):
        select("web*", None, {}, None)


SSH_CONFIG = SSHConfig.from_text("""
Host t*
    ProxyJump b2
Host b2
    ProxyJump b1
Host chain
    ProxyJump b1,ssh://ops@b2:2200
Host loop
    ProxyJump loop
Host direct
    ProxyJump none
""")


@pytest.mark.parametrize("host, default, chain", [
    ("t1", None, ["b1", "b2"]),  # b2's own ProxyJump comes first, as with ssh -J
    ("chain", None, ["b1", "ops@b2:2200"]),  # a,b: a first, not b (Fabric walks it backwards)
    ("loop", "gw", []),  # names itself (a Host * pattern): no chain, no endless loop
    ("direct", "gw", []),  # ProxyJump none wins over env.gateway
    ("plain", None, []),
    ("plain", "gw", ["gw"]),  # env.gateway / -G for a host ssh_config says nothing about
    ("plain", "b2", ["b1", "b2"]),
])
def test_jump_chain(host, default, chain):
    assert jump_chain(SSH_CONFIG, host, default) == chain


def test_split_jumps():
    assert split_jumps(" a , ssh://u@b:22/ ,") == ["a", "u@b:22"]
    assert split_jumps("NONE") == split_jumps(None) == []


def test_width_follows_the_file_descriptor_limit(monkeypatch):
    monkeypatch.setattr(limits, "raise_fd_limit", lambda: 4096)
    assert limits.default_width() == (4096 - limits.RESERVED_FDS) // limits.FDS_PER_HOST
    monkeypatch.setattr(limits, "raise_fd_limit", lambda: 100)
    assert limits.default_width() == 6


def test_connection_starts_are_throttled_whatever_the_width(monkeypatch):
    """40 hosts connecting at once start at most connect_limit handshakes at a time."""
    env = Env()
    env.connect_limit = 4
    starting, peak, lock = [0], [0], threading.Lock()

    def fake_open(host, config, **kwargs):
        with lock:
            starting[0] += 1
            peak[0] = max(peak[0], starting[0])
        time.sleep(0.02)
        with lock:
            starting[0] -= 1
        return object()

    monkeypatch.setattr(poolmod, "open_target", fake_open)
    pool = poolmod.Pool(env, config=None)
    threads = [threading.Thread(target=pool.connect, args=(f"h{i}",)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(pool.hosts()) == 40
    assert peak[0] == 4


def test_stage_progress_counts_each_call_and_keeps_failures():
    p = progress.StageProgress("updating", 3)
    ok = progress.counted(p, lambda h: h)
    bad = progress.counted(p, lambda h: 1 / 0)
    ok("a")
    with pytest.raises(ZeroDivisionError):
        bad("b")
    assert p.text() == "updating 2/3 ✔ 1 ✗ 1"
    p.begin_call()
    ok("a")
    assert p.text(1.234) == "updating 1/3 ✔ 1 ✗ 1 (1.23s)"


def test_cached_ssh_config_gives_what_paramiko_gives():
    from fake.transport.sshconfig import _CachedSSHConfig

    text = "".join(f"Host h{i}\n    Port {1000 + i}\n" for i in range(50)) + """
Host h1 h2
    User first
Host h*
    User deploy
Host !db1 db*
    User dba
Host h2
    IdentityFile a
Match originalhost h3
    Port 3333
Host *
    IdentityFile b
    User last
"""
    base = SSHConfig.from_text(text)
    cached = _CachedSSHConfig(base)
    for host in ["h1", "h2", "h3", "h49", "db1", "db2", "x"]:
        assert cached.lookup(host) == base.lookup(host), host
        cached.lookup(host)["identityfile"].append("changed")  # a copy each time
        assert cached.lookup(host) == base.lookup(host)


def test_compact_console_prints_one_line_per_stage_when_piped():
    import io

    from fake.output import Console

    out = io.StringIO()
    con = Console(out=out, err=out)
    con.compact = 3
    with con.spin("updating"):
        work = con.counting(lambda host: con.host_lines(host, [f"hello from {host}"]))
        for host in ("a", "b", "c"):
            work(host)
    con.stage("updating", 1.5)
    assert out.getvalue() == "* updating 3/3 ✔ 3 ✗ 0 (1.50s)\n"
    with pytest.raises(RuntimeError):
        with con.spin("publishing"):
            con.counting(lambda host: (_ for _ in ()).throw(RuntimeError("x")))("a")
    assert out.getvalue().splitlines()[-1].startswith("! publishing 1/3 ✔ 0 ✗ 1")
    con.level = 1  # -v: host lines come back, no progress line
    with con.spin("finishing"):
        con.counting(lambda host: con.host_lines(host, ["shown"]))("a")
    assert out.getvalue().splitlines()[-1] == "[a] shown"
