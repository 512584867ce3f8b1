"""Networks of their own for test hosts that must be reachable only through a bastion.

A `NetNs` is a Linux network namespace with nothing but its loopback: an
sshd started in it (``Fleet(..., netns=ns)``) listens on 127.0.0.1 *of that
namespace*, which no process outside it can reach. A bastion sshd started
in the same namespace can; a `Relay` makes the bastion itself reachable
from outside, as the one door into that network.

Like `tests.e2e.sshd`, this needs root and has no pytest imports.
"""

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path):
    """Move the calling thread (only it: network namespaces are per thread) into ``path``'s network."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetNs:
    """A network namespace with only ``lo`` (up), held by a ``sleep`` we started and stop by PID."""

    def __init__(self, timeout=5.0):
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.path = f"/proc/{self.proc.pid}/ns/net"
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unshare --net exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                # `exec sleep` runs only after `ip link set lo up` succeeded
                if os.readlink(self.path) != mine and _comm(self.proc.pid) == "sleep":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("network namespace not ready")
            time.sleep(0.01)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(5)


def _comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


class Relay:
    """Forwards TCP from a port in one network (``listen_ns``; None: this machine's) to
    ``127.0.0.1:target_port`` in another (``target_ns``).

    Runs in threads of the calling process: the listening socket is made in
    the listening network, then the accepting thread moves itself into the
    target network, so each connection it opens lands there.
    """

    def __init__(self, target_port, target_ns, listen_ns=None):
        self.target_port = target_port
        self.target_ns = target_ns
        self.listen_ns = listen_ns
        self.port = None
        self._ready = threading.Event()
        self._error = None
        self._sock = None
        self._closed = False
        self._conns = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise self._error
        if self.port is None:
            raise TimeoutError("relay did not start")

    def _serve(self):
        try:
            if self.listen_ns is not None:
                _setns(self.listen_ns.path)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self._sock = sock
            self.port = sock.getsockname()[1]
            _setns(self.target_ns.path)
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while not self._closed:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self):
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
