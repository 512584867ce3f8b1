"""fake.roles: from -H/-R and env.roledefs to hosts, roles of a host, role values."""

import pytest

from fake.exceptions import ConfigError, RoleError
from fake.roles import host_roles, resolve, role_hosts, role_values, split_names

LIST_SHAPE = {"web": ["web1", "web2"], "db": ["db1", "web2"], "lb": ["lb1"]}
DICT_SHAPE = {
    "web": {"hosts": ["web1", "web2"], "branch": "main"},
    "db": {"hosts": ["db1", "web2"], "branch": "db-branch", "pool": 5},
    "lb": {"hosts": ["lb1"]},
}


@pytest.mark.parametrize("roledefs", [LIST_SHAPE, DICT_SHAPE], ids=["list-shape", "dict-shape"])
@pytest.mark.parametrize(
    "hosts, roles, expected",
    [
        (None, None, []),
        ("", "", []),
        ("h1,h2", None, ["h1", "h2"]),
        (" h1 , ,h2,h1 ", None, ["h1", "h2"]),
        (["h2", "h1", "h2"], [], ["h2", "h1"]),
        (None, "web", ["web1", "web2"]),
        (None, "db", ["db1", "web2"]),
        # roles in -R order, a host in two roles listed once, where first seen
        (None, "web,db", ["web1", "web2", "db1"]),
        (None, "db,web", ["db1", "web2", "web1"]),
        (None, ["lb", "db", "web"], ["lb1", "db1", "web2", "web1"]),
        (None, "web,web", ["web1", "web2"]),
        # -H hosts first, then the roles' hosts, without duplicates
        ("db1", "web,db", ["db1", "web1", "web2"]),
        ("x,web2", "web", ["x", "web2", "web1"]),
    ],
)
def test_resolve_order_and_dedupe(roledefs, hosts, roles, expected):
    assert resolve(hosts, roles, roledefs) == expected


def test_resolve_without_roles_never_reads_roledefs():
    # a broken roledefs does not matter when no role is selected
    assert resolve("h1", None, "not a dict") == ["h1"]


@pytest.mark.parametrize("hosts", [lambda: ["c1", "c2"], lambda: ("c1", "c2")])
@pytest.mark.parametrize("shape", ["list", "dict"])
def test_callable_hosts(hosts, shape):
    roledefs = {"app": hosts if shape == "list" else {"hosts": hosts, "k": "v"}}
    assert role_hosts(roledefs, "app") == ["c1", "c2"]
    assert resolve("h0", "app", roledefs) == ["h0", "c1", "c2"]


def test_callable_hosts_is_called_when_resolving_not_before():
    calls = []

    def hosts():
        calls.append(1)
        return ["late1"]

    roledefs = {"app": {"hosts": hosts}}
    assert calls == []
    assert resolve(None, "app", roledefs) == ["late1"]
    assert calls == [1]


def test_host_entries_are_stripped():
    assert role_hosts({"web": [" web1 ", "deploy@web2:2222"]}, "web") == ["web1", "deploy@web2:2222"]


@pytest.mark.parametrize(
    "roledefs, role, needles",
    [
        ({"web": ["w1"], "db": ["d1"]}, "nope", ["unknown role 'nope'", "known roles: db, web"]),
        ({}, "web", ["unknown role 'web'", "known roles: none (env.roledefs is empty)"]),
        (None, "web", ["unknown role 'web'", "env.roledefs is empty"]),
        (["w1"], "web", ["env.roledefs must be a dict of role name to a list of hosts or a dict with a 'hosts' list", "got list"]),
        ("w1,w2", "web", ["env.roledefs must be a dict", "got str"]),
        ({"web": "w1"}, "web", ["env.roledefs['web'] must be a list of hosts or a dict with a 'hosts' list", "got str"]),
        ({"web": {"hosts": "w1"}}, "web", ["env.roledefs['web'] must be a list of hosts", "got str"]),
        ({"web": lambda: "w1"}, "web", ["env.roledefs['web'] must be a list of hosts", "got str"]),
        ({"web": None}, "web", ["env.roledefs['web'] must be a list of hosts", "got NoneType"]),
        ({"web": 3}, "web", ["env.roledefs['web'] must be a list of hosts", "got int"]),
        ({"web": {"branch": "x"}}, "web", ["role 'web' has no hosts", "has no 'hosts' key"]),
        ({"web": {"hosts": None}}, "web", ["role 'web' has no hosts"]),
        ({"web": []}, "web", ["role 'web' has no hosts"]),
        ({"web": {"hosts": []}}, "web", ["role 'web' has no hosts"]),
        ({"web": lambda: []}, "web", ["role 'web' has no hosts"]),
        ({"web": ["w1", "w 2"]}, "web", ["role 'web' has a bad host entry 'w 2'", "want 'name', 'user@name' or 'name:port'"]),
        ({"web": ["w1\tw2"]}, "web", ["bad host entry 'w1\\tw2'"]),
        ({"web": ["w1", ""]}, "web", ["bad host entry ''"]),
        ({"web": ["  "]}, "web", ["bad host entry '  '"]),
        ({"web": ["w1", None]}, "web", ["bad host entry None"]),
        ({"web": [["w1"]]}, "web", ["bad host entry ['w1']"]),
    ],
)
def test_role_errors(roledefs, role, needles):
    with pytest.raises(RoleError) as info:
        resolve("h0", role, roledefs)
    assert isinstance(info.value, ConfigError)
    for needle in needles:
        assert needle in str(info.value)


def test_error_names_the_role_at_fault_among_several():
    roledefs = {"good": ["g1"], "bad": "b1"}
    with pytest.raises(RoleError, match=r"env.roledefs\['bad'\]"):
        resolve(None, "good,bad", roledefs)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("web1", ["web"]),
        ("web2", ["web", "db"]),  # roledefs order
        ("db1", ["db"]),
        ("lb1", ["lb"]),
        ("other", []),
    ],
)
@pytest.mark.parametrize("roledefs", [LIST_SHAPE, DICT_SHAPE], ids=["list-shape", "dict-shape"])
def test_host_roles(roledefs, host, expected):
    assert host_roles(roledefs, host) == expected


def test_host_roles_skips_malformed_roles():
    roledefs = {
        "string": "web1",
        "nohosts": {"branch": "x"},
        "empty": [],
        "badentry": ["web1", "a b"],
        "boom": {"hosts": lambda: "web1"},
        "web": {"hosts": ["web1"]},
        "also": lambda: ["web1"],
    }
    assert host_roles(roledefs, "web1") == ["web", "also"]
    assert host_roles(None, "web1") == []


def test_host_roles_rejects_non_dict_roledefs():
    with pytest.raises(RoleError, match="env.roledefs must be a dict"):
        host_roles(["web1"], "web1")


@pytest.mark.parametrize(
    "host, selected, expected",
    [
        # only the non-hosts keys of selected roles that contain the host
        ("web1", ["web"], {"branch": "main"}),
        ("web1", ["db"], {}),
        ("web1", ["web", "db"], {"branch": "main"}),
        ("db1", ["web", "db"], {"branch": "db-branch", "pool": 5}),
        # merged in -R order: a later role's value replaces an earlier one's
        ("web2", ["web", "db"], {"branch": "db-branch", "pool": 5}),
        ("web2", ["db", "web"], {"branch": "main", "pool": 5}),
        ("lb1", ["lb"], {}),
        ("web1", [], {}),
        ("other", ["web", "db", "lb"], {}),
    ],
)
def test_role_values(host, selected, expected):
    assert role_values(DICT_SHAPE, host, selected) == expected


def test_role_values_of_list_shape_are_empty():
    assert role_values(LIST_SHAPE, "web2", ["web", "db"]) == {}


def test_role_values_keep_callables_uncalled():
    fn = lambda: "computed"  # noqa: E731
    roledefs = {"web": {"hosts": ["w1"], "branch": fn}}
    assert role_values(roledefs, "w1", ["web"]) == {"branch": fn}


def test_role_values_of_an_unknown_selected_role_is_an_error():
    with pytest.raises(RoleError, match="unknown role 'nope'"):
        role_values(DICT_SHAPE, "web1", ["web", "nope"])


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, []),
        ("", []),
        ([], []),
        ("web", ["web"]),
        ("web,db", ["web", "db"]),
        (" web , db ,", ["web", "db"]),
        (",,web,,", ["web"]),
        (["web", " db ", "", None], ["web", "db"]),
        (("a", "b"), ["a", "b"]),
        ("a,a", ["a", "a"]),  # splitting only; resolve() dedupes
    ],
)
def test_split_names(value, expected):
    assert split_names(value) == expected
