"""The `fab` program against real sshd hosts: roles, hooks, env, parallelism, errors."""

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from tests.e2e.conftest import default_sigint, explain, fab_bin

SEED = '''
import os
from fake.api import env, task, before, after, run
from fake.state import CallableEnv

env.roledefs = {
    'staging': {'hosts': ['web1'], 'branch': 'staging'},
    'production': {'hosts': ['web2'], 'branch': 'master'},
}

@task
def first():
    print('first')

@task
def second():
    print('second')

after(first, second)

@task
def third():
    print('third')

before(third, first)

@task
def showbranch():
    """Print the role's branch."""
    print(env.branch)

cenv = CallableEnv(env)
cenv.get_base_path = lambda: '/srv/base'
cenv.app_path = lambda: os.path.join(cenv.get_base_path, "app")

@task
def dosomething():
    print("app path is", cenv.app_path)

@task
def whoami():
    print("roles of", env.host_string, "=", ",".join(env.host_roles), "effective =", env.effective_roles)
'''

FLEET = '''
import time
from fake.api import env, task, before, after, run, execute, roles, runs_once

env.roledefs = {
    'web': ['web1', 'web2'],
    'db': {'hosts': ['db1'], 'dbname': 'main'},
}

@task
def hostname():
    """Print which host this is."""
    run('echo "I am $(id -un) on %s"' % env.host_string)

@task
def showset():
    print("value=%s on %s" % (env.get('value'), env.host_string))

@task
def order():
    run('echo order-%s' % env.host_string)
    time.sleep(0.2)

@task
def writeown():
    env.mine = 'value-of-' + env.host_string
    time.sleep(0.3)

@task
def readown():
    print("readback %s %s" % (env.host_string, env.mine))
    assert env.mine == 'value-of-' + env.host_string

after(writeown, readown)

@task
def t1(): run('true')
@task
def t2(): run('true')
@task
def t3(): run('true')
@task
def t4(): run('true')
@task
def t5(): run('true')
@task
def hook(): run('true')
before(t1, hook)
after(t3, hook)
after(t5, 'hook')

@task
def fails_on_web2():
    run('echo start-%s' % env.host_string)
    if env.host_string == 'web2':
        run('echo boom >&2; exit 3')

@task
def later():
    print("LATER RAN")

@task
@roles('db')
def dbonly():
    print("dbonly on %s name=%s" % (env.host_string, env.dbname))

@task
@runs_once
def once():
    print("once on %s" % env.host_string)

@task
def callsdb():
    print("execute ->", execute('dbonly', roles=['db']))
'''


def write(project, text):
    (project / "fabfile.py").write_text(textwrap.dedent(text))


def prefixed_lines(out, host):
    return [ln[len(host) + 3:] for ln in out.splitlines() if ln.startswith(f"[{host}] ")]


# -- the seed README's examples ---------------------------------------------------
def test_after_runs_the_hook_after_its_task(fab, project):
    write(project, SEED)
    proc = fab(["first"])
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == ["first", "second"], explain(proc)


def test_before_runs_the_prerequisite_first(fab, project):
    # The seed's second example, on its own: before(second, first).
    write(project, """
        from fake.api import task, before, after

        @task
        def first():
            print('first')

        @task
        def second():
            print('second')

        before(second, first)
    """)
    proc = fab(["second"])
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == ["first", "second"], explain(proc)


def test_hooks_of_hooks_run_too(fab, project):
    write(project, SEED)
    proc = fab(["third"])  # before(third, first) and after(first, second)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == ["first", "second", "third"], explain(proc)


@pytest.mark.parametrize("role, branch", [("staging", "staging"), ("production", "master")])
def test_role_scoped_env_values(fab, project, fleet3, role, branch):
    write(project, SEED)
    proc = fab(["-R", role, "showbranch"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == [branch], explain(proc)


def test_callable_env_example_prints_the_computed_path(fab, project):
    write(project, SEED)
    proc = fab(["dosomething"])
    assert proc.returncode == 0, explain(proc)
    assert "app path is /srv/base/app" in proc.stdout, explain(proc)


def test_host_roles_under_dash_h(fab, project, fleet3):
    write(project, SEED)
    proc = fab(["-H", "web2", "whoami"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "roles of web2 = production effective = []" in proc.stdout, explain(proc)


# -- hosts, roles, flags ---------------------------------------------------------------
def test_roles_select_hosts_and_output_is_prefixed(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-R", "web,db", "hostname"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    for host in ("web1", "web2", "db1"):
        assert prefixed_lines(proc.stdout, host) == [f"I am fake-test on {host}"], explain(proc)


def test_a_long_output_line_stays_one_line(fab, project, fleet3):
    """Invoke reads output in 1000-byte chunks and flushes after each: no line may break there."""
    write(project, FLEET + "\n@task\ndef long(c):\n    run(\"printf 'x%.0s' $(seq 2500); echo END\")\n")
    proc = fab(["-H", "web1,web2", "long"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    for host in ("web1", "web2"):
        assert prefixed_lines(proc.stdout, host) == ["x" * 2500 + "END"], explain(proc)


def test_dash_h_alone_and_with_roles(fab, project, fleet3):
    write(project, FLEET)
    alone = fab(["-H", "db1", "hostname"], fleet=fleet3)
    assert alone.returncode == 0, explain(alone)
    assert "[db1] I am fake-test on db1" in alone.stdout
    assert "web1" not in alone.stdout, explain(alone)
    union = fab(["-H", "db1", "-R", "web", "hostname"], fleet=fleet3)
    assert union.returncode == 0, explain(union)
    for host in ("web1", "web2", "db1"):
        assert f"[{host}] I am fake-test on {host}" in union.stdout, explain(union)


def test_set_reaches_env_and_wins_over_fabfile(fab, project, fleet3):
    write(project, FLEET + "\nenv.value = 'from-fabfile'\n")
    proc = fab(["-H", "web1", "--set", "value=from-cli", "showset"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "value=from-cli on web1" in proc.stdout, explain(proc)


def test_parallel_one_runs_hosts_in_order(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-P", "1", "-H", "db1,web2,web1", "order"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    seen = re.findall(r"order-(\w+)", proc.stdout)
    assert seen == ["db1", "web2", "web1"], explain(proc)


def test_one_connection_per_host_for_tasks_and_hooks(fab, project, make_fleet):
    fleet = make_fleet(1, names=["web1"])
    write(project, FLEET)
    host = fleet["web1"]
    before = host.accepted_count()
    proc = fab(["-H", "web1", "t1", "t2", "t3", "t4", "t5"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    assert host.accepted_count() - before == 1, explain(proc) + host.log_text()


def test_four_hosts_run_the_task_at_the_same_time(fab, project, make_fleet):
    """A task runs on all four hosts at once: every host starts it before any finishes.

    Each host notes in its own /srv when its command starts and ends. In
    between, it checks in at a directory the hosts share and waits until all
    four have checked in, giving up after 15 s. Run in parallel, every host
    ends after every host started, however slow the machine; run one or two
    at a time, the first gives up and ends before the last starts.
    """
    fleet = make_fleet(4)
    meeting = project / "meeting"
    meeting.mkdir()
    meeting.chmod(0o777)  # hosts log in as the unprivileged test user
    write(project, f"""
        from fake.api import env, run, task

        @task
        def meet():
            run("date +%s.%N > /srv/start; touch {meeting}/" + env.host_string + "; "
                "limit=$(($(date +%s) + 15)); "
                "while [ $(ls {meeting} | wc -l) -lt 4 ] && [ $(date +%s) -lt $limit ]; do sleep 0.05; done; "
                "date +%s.%N > /srv/end")
    """)
    names = [h.name for h in fleet.hosts]
    proc = fab(["-H", ",".join(names), "meet"], fleet=fleet)
    assert proc.returncode == 0, explain(proc)
    assert sorted(p.name for p in meeting.iterdir()) == sorted(names), explain(proc)
    started = {h.name: float(h.sh("cat /srv/start")) for h in fleet.hosts}
    ended = {h.name: float(h.sh("cat /srv/end")) for h in fleet.hosts}
    assert max(started.values()) < min(ended.values()), f"started {started}\nended {ended}" + explain(proc)


def test_env_written_by_a_task_stays_on_its_host(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-H", "web1,web2", "writeown"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "readback web1 value-of-web1" in proc.stdout, explain(proc)
    assert "readback web2 value-of-web2" in proc.stdout, explain(proc)


def test_roles_decorator_and_execute_on_a_role(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-R", "web,db", "dbonly"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.count("dbonly on") == 1 and "dbonly on db1 name=main" in proc.stdout, explain(proc)
    proc = fab(["-H", "web1", "callsdb"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "dbonly on db1" in proc.stdout and "execute -> {'db1': None}" in proc.stdout, explain(proc)


def test_runs_once(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-R", "web,db", "once"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.count("once on") == 1 and "once on web1" in proc.stdout, explain(proc)


def test_version_names_fake_and_fabric(fab, project):
    proc = fab(["--version"])
    assert proc.returncode == 0, explain(proc)
    assert re.search(r"^Fake \d", proc.stdout, re.M) and re.search(r"^Fabric 3\.", proc.stdout, re.M), explain(proc)


def test_list_shows_tasks_with_docstrings(fab, project):
    write(project, FLEET)
    proc = fab(["--list"])
    assert proc.returncode == 0, explain(proc)
    assert re.search(r"hostname\s+Print which host this is\.", proc.stdout), explain(proc)


def test_remainder_command_runs_on_hosts(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-H", "web1,db1", "--", "echo remainder-$(id -un)"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "[web1] remainder-fake-test" in proc.stdout and "[db1] remainder-fake-test" in proc.stdout, explain(proc)


# -- failures: one clear line, non-zero exit, no traceback ---------------------------------
def assert_clean_failure(proc, *needles):
    assert proc.returncode != 0, explain(proc)
    assert "Traceback" not in proc.stderr + proc.stdout, explain(proc)
    for needle in needles:
        assert needle in proc.stderr, f"missing {needle!r}" + explain(proc)


def test_failing_command_stops_later_tasks_and_names_the_host(fab, project, fleet3):
    write(project, FLEET)
    proc = fab(["-R", "web,db", "fails_on_web2", "later"], fleet=fleet3)
    assert_clean_failure(proc, "[web2] echo boom >&2; exit 3 exited 3: boom")
    assert re.search(r"^web1\s+ok\b", proc.stderr, re.M) and re.search(r"^db1\s+ok\b", proc.stderr, re.M), explain(proc)
    assert re.search(r"^web2\s+FAILED\b", proc.stderr, re.M), explain(proc)
    assert "LATER RAN" not in proc.stdout, explain(proc)
    # The other hosts finished the failing task.
    assert "[web1] start-web1" in proc.stdout and "[db1] start-db1" in proc.stdout, explain(proc)


@pytest.mark.parametrize("roledefs, args, needle", [
    ("{'web': ['web1']}", ["-R", "nope"], "unknown role 'nope'; known roles: web"),
    ("['web1']", ["-R", "web"], "env.roledefs must be a dict"),
    ("{'web': 'web1'}", ["-R", "web"], "env.roledefs['web'] must be a list of hosts"),
    ("{'web': {'branch': 'x'}}", ["-R", "web"], "role 'web' has no hosts"),
    ("{'web': []}", ["-R", "web"], "role 'web' has no hosts"),
])
def test_bad_roles(fab, project, roledefs, args, needle):
    write(project, f"from fake.api import env, task\nenv.roledefs = {roledefs}\n@task\ndef t():\n    print('ran')\n")
    proc = fab(args + ["t"])
    assert_clean_failure(proc, needle)
    assert "ran" not in proc.stdout


def test_unknown_task(fab, project):
    write(project, FLEET)
    proc = fab(["nosuchtask"])
    assert_clean_failure(proc, "nosuchtask")


def test_unresolvable_host(fab, project):
    write(project, FLEET)
    proc = fab(["-H", "no-such-host.invalid", "hostname"])
    assert_clean_failure(proc, "[no-such-host.invalid] cannot resolve host name")


def test_refused_connection_names_host_and_reason(fab, project, make_fleet):
    fleet = make_fleet(2)
    fleet["web2"].stop()
    write(project, FLEET)
    proc = fab(["-H", "web1,web2", "hostname"], fleet=fleet)
    assert_clean_failure(proc, "[web2] cannot connect to 127.0.0.1:", "Connection refused")
    assert "I am" not in proc.stdout, "nothing runs when a host is unreachable" + explain(proc)


def test_silent_host_times_out_within_connect_timeout(fab, project):
    write(project, FLEET)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        proc = fab(["-t", "2", "-H", f"127.0.0.1:{port}", "hostname"])
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert_clean_failure(proc, f"[127.0.0.1:{port}]")
    assert elapsed < 8, f"took {elapsed:.1f}s" + explain(proc)


def test_fake_script_is_the_same_program(project):
    from tests.e2e.conftest import fake_bin, run_fab

    write(project, SEED)
    proc = run_fab(["first"], project, program=fake_bin)
    assert proc.returncode == 0 and proc.stdout.split() == ["first", "second"], explain(proc)


def test_put_get_test_and_cd_on_hosts(fab, project, fleet3):
    (project / "payload.txt").write_text("payload\n")
    write(project, f'''
        from fake.api import env, task, put, get, test, run, cd

        @task
        def transfer():
            put({str(project / "payload.txt")!r}, "/srv/up.txt")
            assert test("test -f /srv/up.txt")
            assert not test("test -f /srv/nope")
            run("mkdir -p '/srv/a dir/b'")
            with cd("/srv/a dir"):
                with cd("b"):
                    run("pwd")
            get("/srv/up.txt", {str(project)!r} + "/back-" + env.host_string + ".txt")
    ''')
    proc = fab(["-H", "web1,db1", "transfer"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert "[web1] /srv/a dir/b" in proc.stdout, explain(proc)
    for host in ("web1", "db1"):
        assert (project / f"back-{host}.txt").read_text() == "payload\n"
        assert fleet3[host].sh("cat /srv/up.txt") == "payload\n"
    assert fleet3["web2"].sh("test -e /srv/up.txt && echo yes || echo no").strip() == "no"


def _interrupt_when(proc, ready, timeout=20):
    import signal

    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "fab ended before it could be interrupted"
        assert time.monotonic() < deadline, "never got ready to interrupt"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)


def test_ctrl_c_lets_running_commands_finish_and_starts_nothing_new(project, fleet3):
    import subprocess

    from tests.e2e.conftest import fab_bin

    write(project, '''
        from fake.api import task, run

        @task
        def slow():
            run("touch /srv/started; sleep 1; echo slept")

        @task
        def next_one():
            print("NEXT RAN")
    ''')
    proc = subprocess.Popen([str(fab_bin), "-S", str(fleet3.ssh_config_path), "-H", "web1,web2", "slow", "next_one"],
                            cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    out, err = _interrupt_when(proc, lambda: all(
        fleet3[h].sh("test -e /srv/started && echo y || echo n").strip() == "y" for h in ("web1", "web2")))
    assert proc.returncode == 130, f"{proc.returncode}\n{out}\n{err}"
    assert "interrupted" in err and "Traceback" not in err, err
    assert "NEXT RAN" not in out
    assert "[web1] slept" in out and "[web2] slept" in out, out


def test_env_user_port_and_key_feed_the_connection(fab, project, make_fleet):
    fleet = make_fleet(1, names=["web1"])
    host = fleet["web1"]
    write(project, f'''
        from fake.api import env, task, run
        env.roledefs = {{'web': {{'hosts': ['127.0.0.1'], 'port': {host.port}}}}}
        env.user = 'fake-test'
        env.key_filename = {str(fleet.key_path)!r}

        @task
        def who():
            run("echo I am $(id -un)")
    ''')
    # No -S: only env tells Fake the user, the port (from the role) and the key.
    proc = fab(["-R", "web", "who"], env={"HOME": str(project)})
    assert proc.returncode == 0, explain(proc)
    assert "[127.0.0.1] I am fake-test" in proc.stdout, explain(proc)
    assert host.accepted_count() == 1


def test_fake_error_while_loading_the_fabfile_is_one_line(fab, project):
    write(project, "from fake.api import env\nprint(env.deploy_path)\n")
    proc = fab(["--list"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, explain(proc)
    assert "could not load the fabfile: setting env.deploy_path is required but not set" in proc.stderr


def test_values_of_a_tasks_roles_stay_with_that_task(fab, project, fleet3):
    """@roles and execute(roles=) bring their roles' values for that task only, never for later ones."""
    write(project, '''
        from fake.api import env, execute, roles, task

        env.roledefs = {
            'web': {'hosts': ['web1'], 'colour': 'blue'},
            'db': {'hosts': ['web1', 'db1'], 'dbname': 'main', 'colour': 'red'},
        }

        @task
        @roles('db')
        def dbtask():
            print("in-db %s dbname=%s colour=%s" % (env.host_string, env.get('dbname'), env.get('colour')))

        @task
        def later():
            print("later %s dbname=%s colour=%s" % (env.host_string, env.get('dbname'), env.get('colour')))

        @task
        def ship():
            execute('dbtask', roles=['db'])
            print("after-execute %s dbname=%s" % (env.host_string, env.get('dbname')))
    ''')
    proc = fab(["-R", "web", "dbtask", "later"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    # -R web wins where both roles set a key; db's own keys apply inside the db task only
    assert proc.stdout.splitlines() == ["in-db web1 dbname=main colour=blue",
                                        "later web1 dbname=None colour=blue"], explain(proc)
    proc = fab(["-H", "web1", "ship", "later"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert "in-db web1 dbname=main colour=red" in lines, explain(proc)
    assert "after-execute web1 dbname=None" in lines and "later web1 dbname=None colour=None" in lines, explain(proc)


def test_an_inlined_task_and_flow_keep_the_roles_they_are_called_under(fab, project, fleet3):
    """execute() inside a task runs inline: a task's own @roles, and the caller's roles, still apply."""
    write(project, '''
        from fake.api import env, execute, roles, task

        env.roledefs = {'db': {'hosts': ['web1'], 'dbname': 'main'}, 'web': {'hosts': ['web1']}}

        @task
        @roles('db')
        def dbtask():
            print("dbtask dbname=%s" % env.get('dbname'))

        @task
        def caller():
            execute('dbtask')

        @task
        @roles('db')
        def outer():
            execute('plain')

        @task
        def plain():
            print("plain dbname=%s" % env.get('dbname'))
    ''')
    proc = fab(["-R", "web", "caller", "outer", "plain"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.splitlines() == ["dbtask dbname=main", "plain dbname=main", "plain dbname=None"], explain(proc)


def test_a_callers_roles_reach_tasks_it_runs_on_other_hosts_and_role_functions_run_once(fab, project, fleet3):
    write(project, '''
        import itertools
        from fake.api import env, execute, roles, task

        counter = itertools.count(1)
        env.roledefs = {'staging': {'hosts': ['web1', 'web2'], 'branch': 'staging', 'n': lambda: next(counter)}}

        @task
        @roles('staging')
        def ship():
            execute('plain', hosts=['web2'])

        @task
        def plain():
            print("plain on %s branch=%s n=%s" % (env.host_string, env.get('branch'), env.get('n')))

        @task
        @roles('staging')
        def again():
            print("again on %s n=%s" % (env.host_string, env.get('n')))
    ''')
    proc = fab(["-H", "web1", "ship", "again"], fleet=fleet3)
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("plain on web2 branch=staging n="), explain(proc)
    # web1's staging values were evaluated once, when ship ran; again reuses them
    n_ship_web1 = [ln for ln in lines if ln.startswith("again on web1")]
    assert n_ship_web1 == ["again on web1 n=1"], explain(proc)


def test_a_failing_role_function_is_one_line_naming_the_role_and_host(fab, project, fleet3):
    write(project, '''
        from fake.api import env, roles, task

        env.roledefs = {'bad': {'hosts': ['web1'], 'x': lambda: 1 / 0}, 'web': {'hosts': ['web1']}}

        @task
        @roles('bad')
        def t():
            print("ran")
    ''')
    proc = fab(["-R", "web", "t"], fleet=fleet3)
    assert proc.returncode != 0, explain(proc)
    assert "Traceback" not in proc.stderr and "ran" not in proc.stdout, explain(proc)
    assert re.search(r"web1.*role bad.*ZeroDivisionError", proc.stderr), explain(proc)


def test_a_tasks_roles_log_in_as_their_roles_say_on_a_host_already_connected(fab, project, fleet3):
    """web1 is connected for -H; the db role's port applies to the db task on web1 all the same."""
    write(project, '''
        from fake.api import env, roles, run, task

        env.roledefs = {'db': {'hosts': ['web1'], 'port': 1}}

        @task
        def first():
            run('echo first-ran')

        @task
        @roles('db')
        def dbtask():
            run('echo db-ran')
    ''')
    proc = fab(["-H", "web1", "first", "dbtask"], fleet=fleet3)
    assert "[web1] first-ran" in proc.stdout, explain(proc)
    assert proc.returncode != 0 and "db-ran" not in proc.stdout, explain(proc)
    assert "[web1]" in proc.stderr and ":1" in proc.stderr, explain(proc)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_fabfile_loads_exits_at_once_with_its_code(project, sig, code):
    """Invoke would exit 1 without a word; Fake says nothing was changed and exits 130/143."""
    write(project, '''
        import time
        open("loading", "w").close()
        time.sleep(20)
        from fake.api import task

        @task
        def never():
            pass
    ''')
    proc = subprocess.Popen([str(fab_bin), "never"], cwd=project, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 20
    while not (project / "loading").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == code, err
    assert "before any task started" in err and "Traceback" not in err, err


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_the_work_lets_the_report_finish_and_exits_with_its_code(project, sig, code):
    """Invoke turns a late KeyboardInterrupt into a silent exit 1 (seen in a chaos run): no longer."""
    write(project, '''
        from fake.api import task

        @task
        def hello():
            print("hello ran")
    ''')
    report = project / "report.fifo"
    os.mkfifo(report)  # writing the report blocks until someone reads: the signal comes then
    proc = subprocess.Popen([str(fab_bin), "--report", str(report), "hello"], cwd=project, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    time.sleep(1.5)  # hello has run; fab waits in open() for a reader
    assert proc.poll() is None
    proc.send_signal(sig)
    fd = os.open(report, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the writer's open() returns
    chunks, deadline = [], time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            chunk = None
        if chunk:
            chunks.append(chunk)
        elif chunk == b"" and proc.poll() is not None:
            break
        time.sleep(0.02)
    os.close(fd)
    out, err = proc.communicate(timeout=10)
    assert chunks, ("no report written", proc.returncode, out, err)
    data = json.loads(b"".join(chunks))
    assert "hello ran" in out and data["ok"] is True, (out, err)
    assert proc.returncode == code, (proc.returncode, out, err)
    assert f"interrupted by {signal.Signals(sig).name} after the run had finished" in err, err
