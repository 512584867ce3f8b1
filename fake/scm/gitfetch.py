"""The deploy's one git connection per host: fetch into the mirror while probing, then read refs there.

A deploy used to reach the git server twice per host: ``git ls-remote`` in
the probe, to learn the commit, and the fetch in ``updating``. Against a
hosted server over SSH each is a handshake of a few hundred milliseconds,
and one more login on a server that may throttle them. Now the probe, once
it holds the deploy lock (never while another run may be fetching into the
same mirror), fetches under the ``git_max_concurrent`` gate and prints the
branch's refs from the mirror in ``ls-remote``'s shape, so
:func:`fake.scm.git.resolve_refs` reads them as before. The update then
exports from the mirror without fetching. A dry run still uses
``ls-remote``: it changes nothing, not even the mirror.
"""

import posixpath

from ..shell import block, join, quote

__all__ = ["fetch_and_list", "FETCHED"]

FETCHED = "scm-fetched"  # printed once the mirror holds what the repository has


def fetch_and_list(url, branch, repo_path, depth, refspecs, is_commit, no_prompt, read_origin, fetch_done):
    """Shell run after the probe took the lock (``$fake_locked``): update the mirror, list its refs."""
    r = quote(repo_path)
    fetch = ["git", "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-C", repo_path, "fetch", "--prune", "--quiet"]
    fetch += [f"--depth={depth}"] if depth else []
    unshallow = "" if depth else f" $([ -f {quote(posixpath.join(repo_path, 'shallow'))} ] && echo --unshallow)"
    if depth:
        create = " && ".join([
            join(["git", "init", "--bare", "--quiet", repo_path]),
            join(["git", "-C", repo_path, "remote", "add", "--mirror=fetch", "origin", url]),
            join([*fetch, "origin", *refspecs]),
        ])
    else:
        create = join(["git", "clone", "--mirror", "--quiet", "--", url, repo_path])
    update = (f'if [ "$fake_origin" != {quote(url)} ]; then '
              + join(["git", "-C", repo_path, "remote", "set-url", "origin", url]) + "; fi && "
              + join(fetch) + unshallow + " " + join(["--", url, *refspecs]))
    fmt = "remote %(objectname)%09%(refname)%0aremote %(*objectname)%09%(refname)^{}"
    if is_commit:
        spec = quote(f"{branch}^{{commit}}")
        listing = [f"git -C {r} for-each-ref --format={quote(fmt)}",
                   f"if full=$(git -C {r} rev-parse --verify --quiet {spec} 2>/dev/null); "
                   'then echo "scm-commit $full"; fi']
    elif branch:
        refs = [f"refs/heads/{branch}", f"refs/tags/{branch}"]
        listing = [f"fake_refs=$(git -C {r} for-each-ref --format={quote(fmt)} -- {join(refs)})",
                   'if [ -n "$fake_refs" ]; then printf \'%s\\n\' "$fake_refs"; else echo noref; problems=1; fake_scm_failed=1; fi']
    else:
        listing = [f"if fake_head=$(git -C {r} symbolic-ref HEAD 2>/dev/null); "
                   "then printf 'remote ref: %s\\tHEAD\\n' \"$fake_head\"; fi",
                   f"if fake_sha=$(git -C {r} rev-parse --verify --quiet HEAD 2>/dev/null); "
                   "then printf 'remote %s\\tHEAD\\n' \"$fake_sha\"; fi"]
    return "\n".join([
        'if [ -n "$fake_locked" ]; then',
        no_prompt,
        f"  if [ -d {r} ]; then",
        read_origin,
        f"    fake_cmd() {{ {update}; }}",
        f"  else fake_cmd() {{ {create}; }}; fi",
        "  if fake_out=$(fake_cmd 2>&1); then",
        f"    echo {fetch_done}; echo {FETCHED}",
        *("    " + line for line in listing),
        f"  else echo {fetch_done}; {block('remote-error', 'fake_out')}; problems=1; fake_scm_failed=1; fi",
        "fi",
    ])
