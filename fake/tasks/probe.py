"""A host's deploy state in one read-only command: the probe, and what it saw.

``inspect()`` is the one command a flow's first stage needs (releases,
current, lock, mirror, linked files, and the scm's probe); everything after
it is decided locally from its :class:`HostState`.
"""

import json
import posixpath

from ..scm.base import PROBE_PREFIX as SCM_PROBE_PREFIX
from ..shell import block, quote, unblock
from .commands import send, unfence_shell
from .layout import ARCHIVE_TEMP, BAD_MARKER, LOCK_FILE, RELEASE_NAME, cenv, deploy_path, linked_paths, repo_path, shared_path

__all__ = ["HostState", "probe_script", "inspect"]


class HostState:
    """What the probe saw on one host."""

    def __init__(self):
        self.now = None
        self.current = None
        self.releases = {}
        self.bad = set()
        self.lock = None
        self.locked_by_us = False
        self.lock_failed = False
        self.mirror = False
        self.missing = []
        self.scm_lines = []
        self.log = []

    @property
    def live(self):
        if not self.current:
            return None
        name = posixpath.basename(self.current.rstrip("/"))
        return name if RELEASE_NAME.match(name) else None

    @classmethod
    def parse(cls, text):
        st = cls()
        for line in unblock(text.splitlines()):
            kind, _, rest = line.partition(" ")
            if kind == "now":
                st.now = int(rest)
            elif kind == "current":
                st.current = rest
            elif kind == "release":
                name, rev, *flags = rest.split(" ")
                st.releases[name] = None if rev in ("", "-") else rev
                if "bad" in flags:
                    st.bad.add(name)
            elif kind == "lock":
                st.lock = rest
            elif kind == "locked":
                st.locked_by_us = True
            elif kind == "lockfail":
                st.lock_failed = True
            elif kind == "mirror":
                st.mirror = True
            elif kind == "missing":
                st.missing.append(rest)
            elif kind == "log":
                st.log.append(rest)
            elif kind in ("remote", "remote-error", "noref") or kind.startswith(SCM_PROBE_PREFIX):
                st.scm_lines.append(line)
        return st


def probe_script(lock_info=None, scm=None, with_log=False):
    """Shell that reports a host's deploy state, and takes the lock if asked.

    The lock is taken only when nothing else is wrong, with noclobber so two
    deploys racing for it cannot both win. Builtins do the reading (``read``,
    not ``cat``, per release): the probe starts ``date`` and ``readlink``,
    and the scm's check, and nothing else on a host in order. Values read
    from files go out through ``printf '%s'``: dash's ``echo`` would act
    on backslashes in them.
    """
    d = quote(deploy_path())
    lock = f"{d}/{LOCK_FILE}"
    late = None
    lines = [
        "problems=0", "fake_locked=", "fake_made_dir=", "fake_scm_failed=",
        "now=$(date +%s)",
        'echo "now $now"',
        f"if [ -L {d}/current ]; then printf 'current %s\\n' \"$(readlink {d}/current)\"; fi",
        f"for r in {d}/releases/*; do",
        '  [ -d "$r" ] || continue',
        '  rev=; { read -r rev < "$r/REVISION"; } 2>/dev/null || true',
        f'  if [ -e "$r/{BAD_MARKER}" ]; then bad=bad; else bad=; fi',
        "  printf 'release %s %s %s\\n' \"${r##*/}\" \"${rev:--}\" \"$bad\"",
        "done",
        f"if [ -f {lock} ]; then printf 'lock %s\\n' \"$(head -c 2000 {lock} | tr '\\n' ' ')\"; problems=1; fi",
        f"if [ -d {d}/repo ]; then echo mirror; fi",
    ]
    if with_log:
        lines.append(f"if [ -f {d}/revisions.log ]; then fake_log=$(tail -n 500 {d}/revisions.log); "
                     f"{block('log', 'fake_log')}; fi")
    if scm is not None:
        files = dict.fromkeys(p for kind, p in linked_paths() if kind == "linked_files")
        for path in files:
            target = quote(posixpath.join(shared_path(), path))
            lines.append(f"if [ ! -e {target} ]; then echo missing {quote(path)}; problems=1; fi")
        late = scm.probe_locked(cenv.get("repo_url"), cenv.get("branch"), repo_path()) if lock_info else None
        if late is None:
            lines.append(scm.probe(cenv.get("repo_url"), cenv.get("branch"), repo_path=repo_path()))
    if lock_info is not None:
        head = quote(json.dumps(lock_info, sort_keys=True)[:-1] + ', "since": ')
        # Written whole to a file of its own, then linked into place: ln fails if
        # a lock exists, and a full disk can never leave an empty lock behind.
        lines += [
            'if [ "$problems" -eq 0 ]; then',
            f"  [ -d {d} ] || {{ mkdir -p {d} && fake_made_dir=1; }}",
            f"  fake_new={lock}.{quote(lock_info['token'])}",
            f"  if {{ printf '%s%s}}\\n' {head} \"$now\" > \"$fake_new\"; }} 2>/dev/null && ln \"$fake_new\" {lock} 2>/dev/null; then echo locked; fake_locked=1;",
            # A dead run's archive in the making, a failed run's fence: ours now to remove.
            f"    rm -f -- {d}/{ARCHIVE_TEMP} {d}/{ARCHIVE_TEMP}.gz",
            f"    {unfence_shell()}",
            f"  elif [ -e {lock} ]; then printf 'lock %s\\n' \"$(cat {lock} 2>/dev/null | tr '\\n' ' ')\";",
            "  else echo lockfail; fi",
            '  rm -f -- "$fake_new"',
            "fi",
        ]
        if scm is not None and late is not None:
            lines.append(late)  # only once the lock is ours: it may write to the mirror
            # A first deploy that cannot fetch (or finds no such branch) leaves the host as it was.
            lines.append(f'if [ -n "$fake_made_dir" ] && [ -n "$fake_scm_failed" ]; then '
                         f"rm -f -- {lock}; rm -rf -- {quote(repo_path())}; rmdir -- {d} 2>/dev/null; fi")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def inspect(lock_info=None, scm=None, with_log=False, gate=None):
    result = send(probe_script(lock_info, scm, with_log), "inspect " + deploy_path(), gate=gate)
    return HostState.parse(result.stdout)
