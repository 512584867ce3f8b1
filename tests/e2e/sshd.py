"""Real OpenSSH test hosts for Fake's end-to-end tests.

A `Fleet` starts a few genuine ``sshd`` processes on 127.0.0.1.  Fake drives
hosts through Fabric/Paramiko, so talking to a real server catches what mocks
cannot: quoting, exit codes, sftp, connection reuse.  Each sshd lives in its
own mount namespace with a private tmpfs on ``/srv``, which lets one machine
pose as several hosts that each have their own deploy tree, while sharing the
rest of the filesystem (so a git repository under the fleet's workdir can be
cloned by path from every host).

Everything here needs root: sshd must run as root to switch to the test user,
and unshare/mount/nsenter need CAP_SYS_ADMIN.  This module deliberately has no
pytest imports so it can be used from a REPL or a benchmark script.
"""

import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEST_USER = "fake-test"
TEST_HOME = "/var/lib/fake-test"
SSHD = "/usr/sbin/sshd"
READY_TIMEOUT = 10.0


def ensure_test_user():
    """Create the unprivileged login user if needed; return its pwd entry.

    Hosts are not logged into as root because root's rc files on dev boxes
    may be slow (``pyenv init`` costs ~150 ms per remote command).  The user
    gets ``/bin/sh`` and an empty home, so a remote command costs nothing
    extra.  The password field is ``*`` rather than useradd's default ``!``:
    with ``UsePAM no`` sshd treats ``!`` as a locked account and refuses even
    key logins.
    """
    _require_root()
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--user-group", "--no-create-home",
             "--home-dir", TEST_HOME, "--shell", "/bin/sh",
             "--password", "*", TEST_USER],
            check=True, capture_output=True, text=True,
        )
        pw = pwd.getpwnam(TEST_USER)
    home = Path(pw.pw_dir)
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    # Test repositories are created by root; without this git refuses to
    # clone or fetch them as "dubious ownership".
    gitconfig = home / ".gitconfig"
    text = gitconfig.read_text() if gitconfig.exists() else ""
    if "directory = *" not in text:
        gitconfig.write_text(text + "[safe]\n\tdirectory = *\n")
    os.chown(gitconfig, pw.pw_uid, pw.pw_gid)
    return pw


class Host:
    """One sshd in its own mount namespace; see `Fleet`."""

    def __init__(self, name, hostdir, netns=None):
        self.name = name
        self.netns = netns  # a tests.e2e.netns.NetNs to listen in, instead of this machine's network
        self.dir = hostdir
        self.log_path = hostdir / "sshd.log"
        self.config_path = hostdir / "sshd_config"
        self.key_path = hostdir / "ssh_host_ed25519_key"
        self.port = None
        self.proc = None
        self.mnt_ns = None
        self._ns_fd = None  # keeps the namespace, and so its id, ours until stop()

    def __repr__(self):
        return f"<Host {self.name} port={self.port} pid={self.pid}>"

    @property
    def pid(self):
        """PID of the listening sshd.

        unshare execs its command without forking and ``sh -c '... && exec
        sshd'`` replaces the shell, so Popen's pid *is* sshd's pid.
        """
        return self.proc.pid if self.proc else None

    def accepted_count(self):
        """Number of successful logins so far (one per SSH connection)."""
        return self.log_text().count("Accepted publickey")

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def sh(self, cmd, check=True):
        """Run ``cmd`` as root inside this host's mount namespace.

        This sees the host's private /srv, so tests can prepare or inspect a
        host without going through SSH (and without bumping
        `accepted_count`).  Returns stdout.
        """
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "/bin/sh", "-c", cmd],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{self.name}: {cmd!r} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc.stdout

    def stop(self, timeout=3.0):
        """Stop this host: SIGTERM its sshd, SIGKILL if it lingers.

        Session processes (per-connection sshd children and whatever they
        run) outlive the listener, so they are killed too.  They are found by
        this host's private mount namespace, which only processes descended
        from our sshd (or entered by `sh`) can be in.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            for pid in self._namespace_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            if self._ns_fd is not None:
                os.close(self._ns_fd)
                self._ns_fd = None

    def crash(self):
        """SIGKILL this host's sshd and everything running in its namespace, as a power cut would.

        Unlike `stop`, the namespace (and so its private /srv) is kept, so
        `restart` brings back the same host with the same files.
        """
        if self.proc is None:
            return
        # Our own unreaped child's pid cannot be reused; once poll() has reaped it, it can.
        own = [self.pid] if self.proc.poll() is None else []
        for pid in own + [p for p in self._namespace_pids() if p not in own]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for pid in self._namespace_pids():  # a session that forked while we were killing
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def restart(self, timeout=READY_TIMEOUT):
        """Start sshd again after `crash`: same config and port, in the namespace it had.

        The namespace is entered through the descriptor this object holds
        (the old sshd is gone, so there is no pid to ``nsenter -t``).
        """
        if self.running:
            return
        if self._ns_fd is None:
            raise RuntimeError(f"{self.name}: no namespace to restart in (stopped, not crashed)")
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--mount=/proc/self/fd/{self._ns_fd}", SSHD, "-D", "-e",
                 "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(self._ns_fd,),
            )
        self._wait_ready(time.monotonic() + timeout, since=since)

    def _namespace_pids(self):
        if self.mnt_ns is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ns = os.readlink(f"/proc/{entry}/ns/mnt")
                except OSError:
                    continue
                if ns == self.mnt_ns:
                    pids.append(int(entry))
        return pids

    def _spawn(self, uid, gid):
        # Keep the log open in append mode: the listener and its
        # per-connection children all write to it.
        script = (
            f"mount -t tmpfs -o mode=0755,uid={uid},gid={gid} tmpfs /srv"
            f" && exec {SSHD} -D -e -f {shlex.quote(str(self.config_path))}"
        )
        enter = ["nsenter", f"--net={self.netns.path}"] if self.netns is not None else []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                enter + ["unshare", "--mount", "--propagation", "private",
                         "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )

    def _wait_ready(self, deadline, since=0):
        """Poll until this sshd says it listens on its port and sends its banner; fail fast if it died.

        Its own "Server listening" line, not just a banner on the port: the
        banner could come from another server that took the port first.
        """
        listening = f"Server listening on 127.0.0.1 port {self.port}."
        while True:
            if self.proc.poll() is not None:
                tail = _tail(self.log_path)
                if "Address already in use" in tail:
                    raise _PortTaken(f"sshd for {self.name}: port {self.port} was taken before it could bind it")
                raise RuntimeError(
                    f"sshd for {self.name} exited with {self.proc.returncode};"
                    f" log tail:\n{tail}"
                )
            if listening not in self._log_since(since):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"sshd for {self.name} not listening on port {self.port};"
                                       f" log tail:\n{_tail(self.log_path)}")
                time.sleep(0.01)
                continue
            if self.netns is not None:
                break  # its port is in another network: its own "listening" line is the proof
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sshd for {self.name} not ready on port {self.port};"
                    f" log tail:\n{_tail(self.log_path)}"
                )
            time.sleep(0.01)
        # Hold the namespace open: the kernel reuses a freed namespace's id at
        # once, so without this, stop() could match (and SIGKILL) processes of
        # a namespace created meanwhile by another fleet or another process.
        if self._ns_fd is None:  # a restart is in the namespace already held
            self._ns_fd = os.open(f"/proc/{self.pid}/ns/mnt", os.O_RDONLY)
            self.mnt_ns = f"mnt:[{os.fstat(self._ns_fd).st_ino}]"

    def _log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


class Fleet:
    """A set of SSH test hosts sharing one client key and one ssh_config.

    ``Fleet(n, workdir=None, names=None)``: without a workdir a temporary
    one is created and removed on close; a given workdir is kept (its logs
    help debugging) but must be traversable by the test user, because sshd
    reads authorized_keys as that user.

    ``netns`` (a `tests.e2e.netns.NetNs`) starts every host in that network
    namespace: only a process in it (a bastion's sshd, a `Relay`) can reach
    them.

    Optional, for benchmarks: ``extra_config`` is a list of sshd_config
    lines appended to every host's config, or a callable taking the `Host`
    (name, dir and port are set) and returning such a list, e.g. a per-host
    ``ForceCommand``.  ``sftp_subsystem`` replaces ``internal-sftp`` as the
    sftp Subsystem command; under ``ForceCommand`` use the external binary
    (e.g. ``/usr/lib/openssh/sftp-server``), because sshd then runs the
    forced command with the subsystem's command line in
    ``SSH_ORIGINAL_COMMAND``.
    """

    def __init__(self, n, workdir=None, names=None, extra_config=None,
                 sftp_subsystem="internal-sftp", netns=None):
        names = list(names) if names else [f"web{i}" for i in range(1, n + 1)]
        if len(names) != n or len(set(names)) != n:
            raise ValueError(f"need {n} distinct names, got {names}")
        self._own_workdir = workdir is None
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="fake-fleet-")
        self.workdir = Path(workdir).resolve()
        self.extra_config = extra_config
        self.sftp_subsystem = sftp_subsystem
        self.netns = netns
        self.hosts = []
        try:
            self._start(names)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name):
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self, names):
        pw = ensure_test_user()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privsep dir
        Path("/srv").mkdir(mode=0o755, exist_ok=True)  # tmpfs mount point
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        check_traversable(self.workdir)

        self.key_path = self.workdir / "id_ed25519"
        _keygen(self.key_path)
        self.authorized_keys = self.workdir / "authorized_keys"
        shutil.copyfile(self.key_path.with_suffix(".pub"),
                        self.authorized_keys)
        self.authorized_keys.chmod(0o644)

        for name, port in zip(names, _free_ports(len(names))):
            hostdir = self.workdir / name
            hostdir.mkdir(mode=0o755)
            host = Host(name, hostdir, netns=self.netns)
            host.port = port
            _keygen(host.key_path)
            self._write_sshd_config(host)
            self.hosts.append(host)
        # Start all, then wait for all: startup overlaps.
        for host in self.hosts:
            host._spawn(pw.pw_uid, pw.pw_gid)
        deadline = time.monotonic() + READY_TIMEOUT
        for host in self.hosts:
            for attempt in range(1, 4):
                try:
                    host._wait_ready(deadline)
                    break
                except _PortTaken:
                    # Someone took the port between our check and sshd's bind:
                    # take another and start this host again.
                    if attempt == 3:
                        raise
                    taken = {h.port for h in self.hosts}
                    host.port = next(p for p in _free_ports(len(taken) + 1) if p not in taken)
                    self._write_sshd_config(host)
                    host.log_path.write_bytes(b"")  # the next check reads this start's lines only
                    host._spawn(pw.pw_uid, pw.pw_gid)

        self.ssh_config_path = self.write_ssh_config(self.workdir / "ssh_config")

    def write_ssh_config(self, path, ports=None):
        """An OpenSSH client config naming each host; ``ports`` maps a name to
        another port (the benchmark's delay proxies). Returns ``path``."""
        ports = ports or {}
        path.write_text("".join(
            f"Host {h.name}\n"
            f"    HostName 127.0.0.1\n"
            f"    Port {ports.get(h.name, h.port)}\n"
            f"    User {TEST_USER}\n"
            f"    IdentityFile {self.key_path}\n"
            f"    IdentitiesOnly yes\n"
            f"    StrictHostKeyChecking no\n"
            f"    UserKnownHostsFile /dev/null\n"
            f"    LogLevel ERROR\n\n"
            for h in self.hosts
        ))
        return path

    def _write_sshd_config(self, host):
        host.config_path.write_text(
            f"Port {host.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host.key_path}\n"
            "PidFile none\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "LogLevel VERBOSE\n"
            "MaxStartups 100\n"
            "MaxSessions 100\n"
            "AllowTcpForwarding yes\n"
            f"Subsystem sftp {self.sftp_subsystem}\n"
            + "".join(f"{line}\n" for line in self._extra_lines(host))
        )

    def _extra_lines(self, host):
        extra = self.extra_config
        if extra is None:
            return []
        if callable(extra):
            extra = extra(host)
        return [str(line).rstrip("\n") for line in extra]

    def close(self):
        """Stop every host this fleet started (by PID), then clean up."""
        try:
            for host in self.hosts:
                try:
                    host.stop()
                except Exception:
                    pass  # keep stopping the others
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


def make_repo(path):
    """Create a git repository hosts can clone by path; return HEAD's sha.

    It is an ordinary non-bare repo on branch ``master`` with ``app.py`` and
    ``static/.keep``, owned by the test user (hosts clone it as that user).
    The path must be traversable by the test user, e.g. under a Fleet's
    workdir, not under pytest's 0700 tmp_path.
    """
    pw = ensure_test_user()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    check_traversable(path)
    _git(path, "init", "-q", "-b", "master")
    _git(path, "config", "user.name", "Fake Test")
    _git(path, "config", "user.email", "fake-test@example.invalid")
    return commit(path, {
        "app.py": "print('hello from fake')\n",
        "static/.keep": "",
    }, "Initial commit", _pw=pw)


def commit(repo_path, files, message, branch=None, _pw=None):
    """Write ``files`` ({relpath: str|bytes|None}; None deletes) and commit.

    With ``branch`` the commit goes onto that branch and the previously
    checked-out branch is restored.  Returns the new commit's sha.
    """
    repo = Path(repo_path)
    previous = None
    if branch is not None:
        previous = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        _git(repo, "checkout", "-q", branch)
    try:
        for rel, content in files.items():
            target = repo / rel
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
        sha = _git(repo, "rev-parse", "HEAD")
    finally:
        if previous is not None:
            _git(repo, "checkout", "-q", previous)
        _chown_tree(repo, _pw or ensure_test_user())
    return sha


def branch(repo_path, name, from_ref="master"):
    """Create branch ``name`` at ``from_ref`` (not checked out); return sha."""
    repo = Path(repo_path)
    _git(repo, "branch", name, from_ref)
    _chown_tree(repo, ensure_test_user())
    return _git(repo, "rev-parse", name)


def check_traversable(path):
    """Raise if the test user could not reach ``path`` (0700 parents)."""
    path = Path(path).resolve()
    for directory in [path, *path.parents]:
        if not os.stat(directory).st_mode & 0o001:
            raise PermissionError(
                f"{directory} is not world-traversable, so {TEST_USER} cannot"
                f" reach {path}; use tempfile.mkdtemp() instead of tmp_path"
            )


def _git(repo, *args):
    # Root runs git here on repos owned by the test user: allow that, and
    # ignore root's own git config so the results are reproducible.
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null",
               GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n"
                           f"{proc.stderr}")
    return proc.stdout.strip()


def _chown_tree(root, pw):
    os.chown(root, pw.pw_uid, pw.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid,
                     follow_symlinks=False)


def _keygen(path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fake-test",
         "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )


class _PortTaken(RuntimeError):
    """sshd could not bind the port chosen for it (callers retrying on RuntimeError see it too)."""


# Below the kernel's ephemeral range (32768+ by default), where this
# machine's own outgoing connections take their ports, and apart from the
# benchmark proxy's 20000-31999.
PORTS = range(10000, 20000)


def _free_ports(n):
    """Pick n distinct free ports (sockets held open until all are chosen)."""
    socks = []
    try:
        for port in random.sample(PORTS, min(len(PORTS), 50 * n)):
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:  # a crowded range: let the kernel choose
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace")
                         .splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _require_root():
    if os.geteuid() != 0:
        raise PermissionError("SSH test hosts need root (sshd, unshare,"
                              " mount, nsenter); run the tests as root")
