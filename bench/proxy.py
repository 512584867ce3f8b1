"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay, for benchmarks.

Each target port gets its own listening port.  Every chunk read from one side
is written to the other side ``delay`` seconds later, in order, in both
directions, so a round trip through the proxy costs 2 x delay more than a
direct one.  Sockets on both sides have TCP_NODELAY set, so the proxy adds no
Nagle stalls of its own.  What is not modelled: the TCP handshake's round trip
(the client's connect() returns at once) and bandwidth limits.

Use it as a program (this is how bench/run.py does)::

    python proxy.py --delay-ms 25 2201 2202 ...

It prints one JSON line ``{"2201": <listen port>, ...}`` once every listener
is up, then serves until SIGTERM or SIGINT.  Only 127.0.0.1 is used.
"""

import argparse
import asyncio
import json
import random
import signal
import socket
import sys

HOST = "127.0.0.1"
HIGH_WATER = 1 << 20  # pause reading when the other side has this much unsent
# Below the kernel's ephemeral range (ip_local_port_range, 32768+ by default),
# where outgoing connections take their ports, and apart from the sshd test
# hosts' 10000-19999 (tests/e2e/sshd.py), which they bind a moment after
# choosing them.
PORTS = range(20000, 32000)


def _nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Side(asyncio.Protocol):
    """One TCP connection of a proxied pair; forwards what it reads to ``peer``."""

    def __init__(self, delay):
        self.delay = delay
        self.transport = None
        self.peer = None          # the other _Side
        self.pending = []         # chunks read before the peer is connected
        self.last_due = 0.0       # keeps due times strictly increasing (order)
        self.closed = False
        self.eof_in = False       # our socket said EOF
        self.eof_out = False      # we passed the peer's EOF on to our socket

    # -- reading from our socket, scheduling writes on the peer ------------
    def _schedule(self, action, *args):
        loop = asyncio.get_running_loop()
        if self.delay <= 0:
            action(*args)
            return
        due = max(loop.time() + self.delay, self.last_due + 1e-6)
        self.last_due = due
        loop.call_at(due, action, *args)

    def data_received(self, data):
        if self.peer is None:
            self.pending.append(data)
            return
        self._schedule(self.peer.send, data)

    def eof_received(self):
        self.eof_in = True
        if self.peer is None:
            self.pending.append(None)
        else:
            self._schedule(self.peer.send_eof)
        # Keep our side open for writing until the peer's EOF has come through.
        return not self.eof_out

    def connection_lost(self, exc):
        self.closed = True
        if self.peer is not None:
            self._schedule(self.peer.close)

    def flush_pending(self):
        for item in self.pending:
            if item is None:
                self._schedule(self.peer.send_eof)
            else:
                self._schedule(self.peer.send, item)
        self.pending = []

    # -- writing to our socket (called by the peer) ---------------------
    def send(self, data):
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)

    def send_eof(self):
        if self.transport is None or self.transport.is_closing():
            return
        self.eof_out = True
        if self.eof_in or not self.transport.can_write_eof():
            self.transport.close()  # both directions done: close (after flushing)
        else:
            self.transport.write_eof()

    def close(self):
        if self.transport is not None:
            self.transport.close()

    # -- flow control: our writes are backed up, so stop reading the peer ---
    def pause_writing(self):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()


class _Client(_Side):
    """The accepted side: opens the upstream connection when it arrives."""

    def __init__(self, delay, target_port):
        super().__init__(delay)
        self.target_port = target_port

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        _nodelay(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self):
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Upstream(self.delay, self), HOST, self.target_port)
        except OSError:
            self.transport.close()
            return
        self.peer = upstream
        self.flush_pending()
        if self.closed:
            self._schedule(upstream.close)


class _Upstream(_Side):
    def __init__(self, delay, client):
        super().__init__(delay)
        self.peer = client

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        _nodelay(transport)


async def serve(targets, delay_ms, out=sys.stdout):
    loop = asyncio.get_running_loop()
    delay = delay_ms / 1000.0
    servers, mapping = [], {}
    candidate = random.randrange(PORTS.start, PORTS.stop)
    for port in targets:
        for _ in range(len(PORTS)):
            candidate = PORTS.start + (candidate + 1 - PORTS.start) % len(PORTS)
            try:
                server = await loop.create_server(
                    lambda port=port: _Client(delay, port), HOST, candidate, backlog=256)
                break
            except OSError:
                continue
        else:
            raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
        servers.append(server)
        mapping[str(port)] = candidate
    out.write(json.dumps(mapping) + "\n")
    out.flush()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    for server in servers:
        server.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay in ms")
    parser.add_argument("targets", type=int, nargs="+", help="ports on 127.0.0.1 to proxy")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.targets, args.delay_ms))


if __name__ == "__main__":
    main()
