"""Git: a bare mirror in ``repo/``, exported with ``git archive`` per release.

The strategy only writes shell for the deploy's batched commands: a probe
(is the repository reachable, what commit is the branch at) that joins the
read-only inspection, and the steps that fill a release. Git never prompts:
a missing credential fails at once with git's own message.
"""

import re

from ..exceptions import ConfigError
from ..remote import quote

__all__ = ["Git"]

NO_PROMPT = (
    "GIT_TERMINAL_PROMPT=0; export GIT_TERMINAL_PROMPT; "
    'GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes}"; export GIT_SSH_COMMAND'
)
_SHA = re.compile(r"^[0-9a-f]{40}$")


class Git:
    name = "git"

    def validate(self, repo_url, branch):
        if not repo_url:
            raise ConfigError("setting env.repo_url is required by the git strategy but not set")
        if str(repo_url).startswith("-"):
            raise ConfigError(f"env.repo_url {repo_url!r} must not start with '-'")
        if branch is not None:
            b = str(branch)
            if not b or b.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in b):
                raise ConfigError(f"env.branch {branch!r} is not a usable branch, tag or commit name")

    def probe(self, repo_url, branch):
        """Shell printing ``remote <sha> <ref>`` lines, or ``remote-error``/``noref``.

        Sets ``problems=1`` when the repository or the branch is not there.
        """
        if branch:
            patterns = [f"refs/heads/{branch}", f"refs/tags/{branch}", f"refs/tags/{branch}^{{}}"]
            ls = "git ls-remote -- " + " ".join(quote(p) for p in [repo_url, *patterns])
        else:
            ls = "git ls-remote --symref -- " + quote(repo_url) + " HEAD"
        return "\n".join([
            NO_PROMPT,
            f"if refs=$({ls} 2>&1); then",
            '  if [ -n "$refs" ]; then printf "%s\\n" "$refs" | sed "s/^/remote /"; '
            'else echo noref; problems=1; fi',
            'else printf "%s\\n" "$refs" | sed "s/^/remote-error /"; problems=1; fi',
        ])

    def resolve(self, lines, branch):
        """(sha, ref, error) from the probe's lines."""
        refs, errors, symref = {}, [], None
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind == "remote":
                if rest.startswith("ref: "):
                    symref = rest[5:].split("\t")[0].strip()
                    continue
                sha, _, ref = rest.partition("\t")
                refs[ref.strip()] = sha.strip()
            elif kind == "remote-error":
                errors.append(rest)
            elif kind == "noref":
                return None, None, f"branch {branch!r} not found"
        if errors:
            return None, None, "repository not reachable: " + " | ".join(e for e in errors[-3:] if e)
        if branch:
            for ref in (f"refs/heads/{branch}", f"refs/tags/{branch}^{{}}", f"refs/tags/{branch}"):
                if ref in refs and _SHA.match(refs[ref]):
                    return refs[ref], ref, None
            return None, None, f"branch {branch!r} not found"
        sha = refs.get("HEAD")
        if not sha:
            return None, None, "the repository has no default branch (HEAD)"
        return sha, symref or "HEAD", None

    def create_release(self, script, repo_url, repo_path, release_path, sha, mirror_present):
        """Add the steps that update the mirror and export ``sha`` into the release."""
        script.add("git environment", NO_PROMPT)
        if mirror_present:
            script.argv("git remote set-url", "git", "-C", repo_path, "remote", "set-url", "origin", repo_url)
            script.argv("git fetch", "git", "-C", repo_path, "fetch", "--prune", "--quiet", "origin",
                        "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
        else:
            script.argv("git clone --mirror", "git", "clone", "--mirror", "--quiet", "--", repo_url, repo_path)
        script.argv("git cat-file", "git", "-C", repo_path, "cat-file", "-e", f"{sha}^{{commit}}")
        script.argv("mkdir release", "mkdir", release_path)
        script.add("git archive", f"git -C {quote(repo_path)} archive --format=tar {quote(sha)} "
                                  f"| tar -x -f - -C {quote(release_path)}")
