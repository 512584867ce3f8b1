"""fake.registry: tasks, hooks, expansion into calls, flows, decorators.

Every test uses its own ``Registry()`` (the global one is reset around each
test, which also removes what fake.tasks.* registered at import; the deploy
flow is checked through the ``library_registry`` fixture of conftest.py).
"""

import inspect

import invoke
import pytest

from fake.exceptions import HookCycle, TaskError, UnknownTask
from fake.registry import Call, Flow, FlowCall, Registry, Task, roles, runs_once
from fake.tasks.framework import DEPLOY, ROLLBACK


@pytest.fixture
def r():
    return Registry()


def names(calls):
    return [c.name for c in calls]


def add_tasks(reg, *task_names):
    """Register no-op tasks with these names; returns them by name."""
    out = {}
    for name in task_names:
        def body():
            pass

        out[name] = reg.add(Task(body, name=name))
    return out


# -- @task forms and bodies ----------------------------------------------------
def test_task_decorator_bare(r):
    @r.task
    def hello(c, who="world"):
        """Say hello."""
        return f"hello {who}"

    assert isinstance(hello, Task)
    assert r.tasks == {"hello": hello}
    assert hello.name == "hello"
    assert hello.__doc__ == "Say hello."


def test_task_decorator_called_without_arguments(r):
    @r.task()
    def hello():
        return "hi"

    assert isinstance(hello, Task)
    assert r.tasks == {"hello": hello}


def test_task_decorator_with_name(r):
    @r.task(name="say-hi")
    def hello():
        return "hi"

    assert r.tasks == {"say_hi": hello}  # one spelling per name: dashes become underscores
    assert hello.name == "say-hi"
    assert r.get("say-hi") is hello


def test_task_decorator_with_klass_and_options(r):
    class Special(Task):
        pass

    @r.task(klass=Special, roles=["db"], runs_once=True, aliases=("mig",))
    def migrate():
        pass

    assert type(migrate) is Special
    assert migrate.roles == ["db"]
    assert migrate.runs_once is True
    assert migrate.aliases == ("mig",)


@pytest.mark.parametrize(
    "source, takes_context, params",
    [
        ("def t(c, a, b=1): return (c, a, b)", True, ["a", "b"]),
        ("def t(ctx, a): return (ctx, a)", True, ["a"]),
        ("def t(context): return context", True, []),
        ("def t(conn, a): return (conn, a)", True, ["a"]),
        ("def t(connection): return connection", True, []),
        ("def t(cxn): return cxn", True, []),
        ("def t(a, b=1): return (a, b)", False, ["a", "b"]),
        ("def t(): return 'none'", False, []),
        # a first parameter with a default is an ordinary argument
        ("def t(c=None, a=2): return (c, a)", False, ["c", "a"]),
        # only the first parameter can be the context; names elsewhere stay
        ("def t(a, c): return (a, c)", False, ["a", "c"]),
        ("def t(cfg, a): return (cfg, a)", False, ["cfg", "a"]),
        ("def t(c, *args, **kw): return (c, args, kw)", True, ["args", "kw"]),
    ],
)
def test_argspec_drops_only_a_leading_context(r, source, takes_context, params):
    ns = {}
    exec(source, ns)
    task = r.task(ns["t"])
    assert task.takes_context is takes_context
    assert list(task.argspec(task.body).parameters) == params
    # what invoke parses from the command line follows the same argspec
    assert [a.name for a in task.get_arguments()] == params


def test_calling_a_task_passes_the_context_only_to_bodies_that_take_it(r):
    @r.task
    def with_c(c, a, b=2):
        return (c, a, b)

    @r.task
    def without(a, b=2):
        return (a, b)

    ctx = invoke.Context()
    assert with_c(ctx, 1) == (ctx, 1, 2)
    assert with_c(ctx, a=1, b=3) == (ctx, 1, 3)
    assert without(ctx, 1) == (1, 2)  # the context given first is dropped
    assert without(1, b=5) == (1, 5)
    assert with_c(1) == (None, 1, 2)  # no host: the connection is None
    assert (with_c.times_called, without.times_called) == (3, 2)


def test_calling_a_task_in_a_host_scope_passes_its_connection(r):
    from fake.env import HostScope, host_scope

    @r.task
    def t(c):
        return c

    scope = HostScope("web1")
    scope.connection = conn = object()
    with host_scope(scope):
        assert t() is conn


def test_add_with_another_name_and_replacement(r):
    first = add_tasks(r, "x")["x"]

    @r.task(name="x")
    def second():
        pass

    assert r.tasks == {"x": second}
    assert r.get("x") is second
    assert r.get(first) is second  # a stale object is looked up again by name
    r.add(first, name="alias")
    assert r.get("alias") is first


def test_get_accepts_dashes_for_underscores(r):
    t = add_tasks(r, "build_assets")["build_assets"]
    assert r.get("build-assets") is t
    assert names(r.expand("build-assets")) == ["build_assets"]


def test_get_unknown_task_message(r):
    add_tasks(r, "deploy", "build", "deploy:check")
    with pytest.raises(UnknownTask) as info:
        r.get("nope")
    assert isinstance(info.value, TaskError)
    # internal names (with ':') are not offered as suggestions
    assert str(info.value) == "no task named 'nope'; known tasks: build, deploy"


def test_get_unknown_task_on_an_empty_registry(r):
    with pytest.raises(UnknownTask, match="known tasks: none"):
        r.get("x")


def test_get_passes_through_unregistered_task_objects(r):
    stray = Task(lambda: None, name="stray")
    plain = invoke.Task(lambda c: None, name="plain")
    assert r.get(stray) is stray
    assert r.get(plain) is plain


# -- hooks -----------------------------------------------------------------------
def test_before_and_after_run_in_registration_order(r):
    add_tasks(r, "t", "b1", "b2", "b3", "a1", "a2")
    r.before("t", "b1")
    r.after("t", "a1")
    r.before("t", "b2")
    r.after("t", "a2")
    r.before("t", "b3")
    assert names(r.expand("t")) == ["b1", "b2", "b3", "t", "a1", "a2"]


def test_hooks_accept_task_objects_and_names(r):
    t = add_tasks(r, "t", "pre", "post")
    r.before(t["t"], t["pre"])
    r.after("t", "post")
    assert r.hooks("t") == (["pre"], ["post"])  # registered tasks are kept by name
    assert names(r.expand(t["t"])) == ["pre", "t", "post"]


def test_nested_hooks_expand_depth_first(r):
    add_tasks(r, "deploy", "check", "lint", "fmt", "notify", "log", "pre_lint")
    r.before("deploy", "check")
    r.before("check", "lint")       # hook of a hook
    r.before("lint", "pre_lint")    # and of that one
    r.after("lint", "fmt")
    r.after("deploy", "notify")
    r.after("notify", "log")
    assert names(r.expand("deploy")) == [
        "pre_lint", "lint", "fmt", "check", "deploy", "notify", "log",
    ]


def test_a_hook_used_twice_runs_twice_without_being_a_cycle(r):
    add_tasks(r, "a", "b", "c", "shared")
    r.before("a", "b")
    r.before("a", "c")
    r.before("b", "shared")
    r.before("c", "shared")
    assert names(r.expand("a")) == ["shared", "b", "shared", "c", "a"]


def test_hook_named_before_the_hook_task_exists(r):
    add_tasks(r, "deploy")
    r.after("deploy", "restart")  # defined later
    add_tasks(r, "restart")
    assert names(r.expand("deploy")) == ["deploy", "restart"]


def test_hook_on_a_target_defined_later(r):
    r.before("deploy", "check")
    add_tasks(r, "deploy", "check")
    assert names(r.expand("deploy")) == ["check", "deploy"]


def test_hook_on_a_dashed_target_name_defined_later(r):
    r.before("build-assets", "check")
    add_tasks(r, "build_assets", "check")
    assert names(r.expand("build_assets")) == ["check", "build_assets"]


def test_a_later_task_with_the_same_name_replaces_the_earlier_everywhere(r):
    old = add_tasks(r, "deploy", "restart", "notify")
    r.after(old["deploy"], old["restart"])   # hook given as the task object
    r.before(old["restart"], "notify")       # a hook on the old object's name

    @r.task(name="restart")
    def new_restart():
        pass

    @r.task(name="deploy")
    def new_deploy():
        pass

    calls = r.expand("deploy")
    assert names(calls) == ["deploy", "notify", "restart"]
    assert calls[0].task is new_deploy
    assert calls[2].task is new_restart
    # expanding the old object also gives the new definition, hooks included
    assert [c.task for c in r.expand(old["deploy"])] == [new_deploy, old["notify"], new_restart]


def test_unregistered_task_object_as_hook_is_kept_as_is(r):
    add_tasks(r, "deploy")
    stray = Task(lambda: None, name="stray")
    r.after("deploy", stray)
    calls = r.expand("deploy")
    assert names(calls) == ["deploy", "stray"]
    assert calls[1].task is stray


def test_plain_callable_hooks(r):
    add_tasks(r, "deploy")
    seen = []

    def warm_cache():
        seen.append("warm")

    r.before("deploy", warm_cache)
    r.after("deploy", lambda: seen.append("lambda"))
    calls = r.expand("deploy")
    assert names(calls) == ["before:deploy:warm_cache", "deploy", "after:deploy:<lambda>"]
    assert all(isinstance(c.task, Task) for c in calls)
    for c in calls:
        c.task()
    assert seen == ["warm", "lambda"]
    assert calls[0].via == "before('deploy', 'before:deploy:warm_cache')"


def test_hook_of_a_bad_type_is_a_type_error(r):
    with pytest.raises(TypeError, match="a hook must be a task, a task name or a callable"):
        r.before("deploy", 42)


def test_unknown_hook_name_error_names_the_hook_and_its_target(r):
    add_tasks(r, "deploy", "restart")
    r.after("deploy", "restart")
    r.after("restart", "notfiy")
    with pytest.raises(UnknownTask) as info:
        r.expand("deploy")
    msg = str(info.value)
    assert "no task named 'notfiy'" in msg
    assert "(after('restart', 'notfiy'))" in msg
    assert "known tasks: deploy, restart" in msg


def test_unknown_task_on_the_command_line_has_no_hook_context(r):
    with pytest.raises(UnknownTask) as info:
        r.expand("nope")
    assert "(" not in str(info.value).split(";")[0]


def test_hook_via_is_recorded_on_calls(r):
    add_tasks(r, "t", "pre", "post")
    r.before("t", "pre")
    r.after("t", "post")
    calls = r.expand("t", {"x": 1})
    assert [c.via for c in calls] == ["before('t', 'pre')", None, "after('t', 'post')"]
    assert [c.kwargs for c in calls] == [{}, {"x": 1}, {}]  # arguments go to the target only


@pytest.mark.parametrize(
    "hooks, start, cycle",
    [
        ([("before", "a", "b"), ("before", "b", "a")], "a", "hook cycle: a -> b -> a"),
        ([("after", "a", "b"), ("after", "b", "a")], "a", "hook cycle: a -> b -> a"),
        ([("before", "a", "b"), ("after", "b", "a")], "b", "hook cycle: b -> a -> b"),
        ([("before", "a", "a")], "a", "hook cycle: a -> a"),
        ([("after", "a", "a")], "a", "hook cycle: a -> a"),
        ([("before", "a", "b"), ("before", "b", "c"), ("after", "c", "b")], "a", "hook cycle: b -> c -> b"),
        ([("before", "x", "a"), ("before", "a", "b"), ("before", "b", "c"), ("before", "c", "a")],
         "x", "hook cycle: a -> b -> c -> a"),
    ],
)
def test_hook_cycles(r, hooks, start, cycle):
    add_tasks(r, "a", "b", "c", "x")
    for kind, target, hook in hooks:
        getattr(r, kind)(target, hook)
    with pytest.raises(HookCycle) as info:
        r.expand(start)
    assert str(info.value) == cycle
    assert info.value.names == cycle.split(": ")[1].split(" -> ")


# -- flows -----------------------------------------------------------------------
def test_flow_expands_to_one_flowcall_with_stages(r):
    add_tasks(r, "one", "two", "one_hook", "oops", "cleanup", "end", "pre", "post")
    r.after("one", "one_hook")
    r.after("oops", "cleanup")
    r.before("release", "pre")
    r.after("release", "post")

    @r.flow("one", "two", on_failure="oops", final="end")
    def release(version="1"):
        return version

    assert isinstance(release, Flow)
    assert release.steps == ["one", "two"]
    calls = r.expand("release", {"version": "2"})
    assert names(calls) == ["pre", "release", "post"]
    fc = calls[1]
    assert isinstance(fc, FlowCall) and isinstance(fc, Call)
    assert fc.task is release
    assert fc.kwargs == {"version": "2"}
    assert [(stage, names(group)) for stage, group in fc.body] == [
        ("one", ["one", "one_hook"]),
        ("two", ["two"]),
    ]
    assert names(fc.on_failure) == ["oops", "cleanup"]
    assert names(fc.final) == ["end"]
    assert all(isinstance(c, Call) and not isinstance(c, FlowCall) for _, g in fc.body for c in g)


def test_flow_without_failure_or_final_and_with_a_name(r):
    add_tasks(r, "a")

    @r.flow("a", name="ship")
    def body():
        pass

    (fc,) = r.expand("ship")
    assert fc.body[0][0] == "a"
    assert (fc.on_failure, fc.final) == ([], [])


def test_flow_steps_as_task_objects_and_replaced_stages(r):
    t = add_tasks(r, "a", "b")

    @r.flow(t["a"], "b")
    def f():
        pass

    @r.task(name="b")
    def my_b():
        pass

    (fc,) = r.expand("f")
    assert [stage for stage, _ in fc.body] == ["a", "b"]
    assert fc.body[1][1][0].task is my_b


def test_flow_step_unknown_names_the_flow(r):
    @r.flow("nope")
    def f():
        pass

    with pytest.raises(UnknownTask, match=r"no task named 'nope' \(step of flow 'f'\)"):
        r.expand("f")


def test_flow_that_contains_itself_is_a_cycle(r):
    @r.flow("inner")
    def outer():
        pass

    r.after("inner", "outer")
    add_tasks(r, "inner")
    with pytest.raises(HookCycle, match="hook cycle: outer -> inner -> outer"):
        r.expand("outer")


def test_library_deploy_and_rollback_flows(library_registry):
    reg = library_registry
    (fc,) = reg.expand("deploy")
    assert tuple(stage for stage, _ in fc.body) == DEPLOY
    stages = {stage: names(group) for stage, group in fc.body}
    assert stages["starting"] == ["starting", "deploy:check", "deploy:banner"]
    assert stages["updating"] == ["updating", "deploy:update"]
    assert stages["publishing"] == ["publishing", "deploy:symlink"]
    # the health check runs first in finishing: after every published hook
    assert stages["finishing"] == ["deploy:healthcheck", "finishing", "deploy:finish"]
    assert stages["started"] == ["started"]
    assert names(fc.on_failure) == ["failed", "deploy:failed"]
    assert names(fc.final) == ["ended", "deploy:unlock_own"]

    (rc,) = reg.expand("rollback", {"release": "20260101000000"})
    assert tuple(stage for stage, _ in rc.body) == ROLLBACK
    stages = {stage: names(group) for stage, group in rc.body}
    assert stages["reverting"] == ["reverting", "deploy:revert"]
    assert stages["finishing_rollback"] == ["finishing_rollback", "deploy:archive_rolled_back"]
    assert rc.kwargs == {"release": "20260101000000"}
    assert len(reg.preflight_checks("deploy")) == 1
    assert len(reg.preflight_checks("rollback")) == 1


def test_fabfile_hooks_and_stage_replacement_in_the_library_flow(library_registry):
    reg = library_registry

    @reg.task
    def migrate():
        pass

    @reg.task
    def restart():
        pass

    reg.after("updated", migrate)
    reg.after("finished", "restart")

    @reg.task(name="finishing")
    def my_finishing():
        pass

    (fc,) = reg.expand("deploy")
    stages = dict(fc.body)
    assert names(stages["updated"]) == ["updated", "migrate"]
    assert names(stages["finished"]) == ["finished", "restart"]
    # the replacement runs as the stage, and the stage's library hooks stay
    assert stages["finishing"][1].task is my_finishing
    assert names(stages["finishing"]) == ["deploy:healthcheck", "finishing", "deploy:finish"]


# -- @roles and @runs_once ---------------------------------------------------------
def _decorated(r, order):
    if order == "task-outside":
        @r.task
        @roles("db", "web")
        @runs_once
        def t():
            pass
    elif order == "task-inside":
        @roles("db", "web")
        @runs_once
        @r.task
        def t():
            pass
    elif order == "mixed":
        @runs_once
        @r.task
        @roles("db", "web")
        def t():
            pass
    else:
        @r.task(roles=["db", "web"], runs_once=True)
        def t():
            pass
    return t


@pytest.mark.parametrize("order", ["task-outside", "task-inside", "mixed", "task-arguments"])
def test_roles_and_runs_once_in_any_order(r, order):
    t = _decorated(r, order)
    assert isinstance(t, Task)
    assert r.tasks["t"] is t
    assert t.roles == ["db", "web"]
    assert t.runs_once is True


def test_undecorated_task_defaults(r):
    @r.task
    def t():
        pass

    assert t.roles == []
    assert t.runs_once is False


def test_decorators_on_a_plain_function_mark_it():
    @roles("db")
    @runs_once
    def f():
        return 1

    assert f._fake_roles == ["db"]
    assert f._fake_runs_once is True
    assert f() == 1
    assert inspect.isfunction(f)


# -- preflight and reset ---------------------------------------------------------------
def test_preflight_registration(r):
    def check_a():
        pass

    def check_b():
        pass

    @r.flow()
    def ship():
        pass

    r.preflight("ship", check_a)
    r.preflight(ship, check_b)  # by object: stored under its name
    assert r.preflight_checks("ship") == [check_a, check_b]
    assert r.preflight_checks(ship) == [check_a, check_b]
    assert r.preflight_checks("other") == []
    r.preflight_checks("ship").append(None)  # a copy
    assert r.preflight_checks("ship") == [check_a, check_b]


def test_reset_forgets_tasks_hooks_and_preflight(r):
    add_tasks(r, "a", "b")
    r.before("a", "b")
    r.preflight("a", lambda: None)
    r.reset()
    assert r.tasks == {}
    assert r.hooks("a") == ([], [])
    assert r.preflight_checks("a") == []


def test_global_registry_is_reset_around_each_test():
    from fake import state

    assert state.registry.tasks == {}
    assert "deploy" not in state.registry.tasks
