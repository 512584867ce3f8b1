"""A TCP proxy on 127.0.0.1 that injects faults on command, for bench/chaos.py.

Each named upstream (an sshd test host) gets its own listening port. Unlike
bench/proxy.py, whose delay is fixed for the whole run, this one is driven
while it runs, from the thread that owns it:

- ``cut(name, direction, after_bytes)``: once ``after_bytes`` more bytes have
  gone through that host's connection in ``direction`` ("up": client to host,
  "down": host to client), both of its sockets are *reset* (SO_LINGER 0, so an
  RST, not a FIN: a dead link or a crashed middlebox, not an orderly close).
  The bytes before the offset are delivered, so the peer sees a packet cut
  part-way. A cut armed while no connection is open waits for the next one.
- ``set_delay(name, seconds)``: every chunk is held that long, in order,
  in both directions (a slow or congested link).
- ``reset()``: disarm cuts and clear delays (between rounds).

The asyncio loop runs in a daemon thread of the calling process, so there is
no process of its own to stop: ``close()`` closes its sockets and ends the
thread. Only 127.0.0.1 is used.
"""

import asyncio
import collections
import socket
import struct
import threading
import time

HOST = "127.0.0.1"
HIGH_WATER = 1 << 20
DIRECTIONS = ("up", "down")


def _nodelay(sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class _Link:
    """One proxied connection: client <-> proxy <-> upstream."""

    def __init__(self, route):
        self.route = route
        self.client = None      # _Side for the accepted socket (writes go "down")
        self.upstream = None    # _Side for the upstream socket (writes go "up")
        self.dead = False

    def reset(self):
        """RST both sockets now; queued chunks are dropped."""
        if self.dead:
            return
        self.dead = True
        for side in (self.client, self.upstream):
            if side is not None:
                side.abort()
        self.route.links.discard(self)


class _Side(asyncio.Protocol):
    """One socket of a link. ``direction`` is the way bytes *written* to it travel."""

    def __init__(self, link, direction):
        self.link, self.direction = link, direction
        self.transport = None
        self.peer = None
        self.pending = []       # what the peer sent us before our socket was up
        self.last_due = 0.0
        self.eof_in = self.eof_out = False

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _nodelay(sock)

    # what we read goes to the peer, after the route's delay, in order
    def _schedule(self, action, *args):
        loop = asyncio.get_running_loop()
        delay = self.link.route.delay
        if delay <= 0 and self.last_due <= loop.time():
            action(*args)
            return
        due = max(loop.time() + delay, self.last_due + 1e-6)
        self.last_due = due
        loop.call_at(due, action, *args)

    def data_received(self, data):
        self._schedule(self._to_peer, data)

    def _to_peer(self, data):
        self.peer.send(data)

    def eof_received(self):
        self.eof_in = True
        self._schedule(self.peer.send_eof)
        return True  # keep writing until the other way is done too

    def connection_lost(self, exc):
        if self.link.dead:
            return
        # An orderly end on one side ends the other after what is queued.
        self._schedule(self.peer.close)
        self.link.route.links.discard(self.link)

    def send(self, data):
        if self.link.dead:
            return
        if self.transport is None:  # upstream still connecting
            self.pending.append(data)
            return
        if self.transport.is_closing():
            return
        route = self.link.route
        route.bytes[self.direction] += len(data)
        cut = route.cut
        if cut is not None and cut["direction"] == self.direction:
            left = cut["left"]
            if len(data) >= left:
                if left:
                    self.transport.write(data[:left])
                route.fired(self.link, cut)
                return
            cut["left"] = left - len(data)
        self.transport.write(data)

    def flush(self):
        pending, self.pending = self.pending, []
        for item in pending:
            if item is None:
                self.send_eof()
            elif isinstance(item, str):
                self.close()
            else:
                self.send(item)

    def send_eof(self):
        if self.transport is None:
            self.pending.append(None)
            return
        if self.transport.is_closing():
            return
        self.eof_out = True
        if self.eof_in or not self.transport.can_write_eof():
            self.transport.close()
        else:
            self.transport.write_eof()

    def close(self):
        if self.transport is None:
            self.pending.append("close")
        else:
            self.transport.close()

    def abort(self):
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def pause_writing(self):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self):
        if self.peer is not None and self.peer.transport is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()


class _Route:
    """A listening port for one upstream, its live links, its delay and armed cut."""

    def __init__(self, proxy, name, target_port):
        self.proxy, self.name, self.target_port = proxy, name, target_port
        self.port = None
        self.server = None
        self.links = set()
        self.delay = 0.0
        self.cut = None
        self.bytes = {"up": 0, "down": 0}  # forwarded so far, all links

    def accept(self):
        self.proxy.connects.append(time.monotonic())
        link = _Link(self)
        link.client, link.upstream = _Side(link, "down"), _Side(link, "up")
        link.client.peer, link.upstream.peer = link.upstream, link.client
        self.links.add(link)
        asyncio.get_running_loop().create_task(self._connect(link))
        return link.client

    async def _connect(self, link):
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: link.upstream, HOST, self.target_port)
        except OSError:
            # Nothing listens there (a killed sshd): the client sees a reset.
            link.reset()
            return
        if link.dead:
            link.upstream.abort()
            return
        link.upstream.flush()

    def fired(self, link, cut):
        self.cut = None
        self.proxy.events.append({"name": self.name, "direction": cut["direction"],
                                  "after_bytes": cut["after_bytes"], "at": time.monotonic()})
        link.reset()


class FaultProxy:
    """``FaultProxy({name: port})``; ``.ports[name]`` is where clients connect instead."""

    def __init__(self, targets):
        self.events = []  # cuts that fired: {"name", "direction", "after_bytes", "at"}
        self.connects = collections.deque(maxlen=1000)  # when each connection was accepted
        self._routes = {name: _Route(self, name, port) for name, port in targets.items()}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.close()
            raise
        self.ports = {name: r.port for name, r in self._routes.items()}

    async def _listen(self):
        loop = asyncio.get_running_loop()
        for route in self._routes.values():
            route.server = await loop.create_server(route.accept, HOST, 0, backlog=256)
            route.port = route.server.sockets[0].getsockname()[1]

    def _call(self, coro_or_fn, timeout=10):
        """Run a coroutine, or a plain function, on the proxy's loop and return its result."""
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self._loop).result(timeout)

        async def wrap():
            return coro_or_fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout)

    # -- commands ----------------------------------------------------------
    def cut(self, name, direction, after_bytes=0):
        """Reset ``name``'s connection once ``after_bytes`` more bytes went ``direction``."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        route = self._routes[name]

        def arm():
            cut = {"direction": direction, "left": int(after_bytes), "after_bytes": int(after_bytes)}
            route.cut = cut
            if after_bytes <= 0 and route.links:
                for link in list(route.links):
                    route.fired(link, cut)

        self._call(arm)

    def connect_times(self):
        """time.monotonic() of the latest connections accepted, any host."""
        return list(self.connects)

    def set_delay(self, name, seconds):
        route = self._routes[name]
        self._call(lambda: setattr(route, "delay", max(0.0, float(seconds))))

    def traffic(self, name):
        """Bytes forwarded to ``name`` ("up") and from it ("down") so far."""
        route = self._routes[name]
        return self._call(lambda: dict(route.bytes))

    def links(self, name):
        """How many connections to ``name`` are open through the proxy."""
        route = self._routes[name]
        return self._call(lambda: len(route.links))

    def reset(self):
        """Disarm every cut and clear every delay; return the cuts that fired since the last reset."""
        def clear():
            for route in self._routes.values():
                route.cut = None
                route.delay = 0.0
            fired, self.events = self.events, []
            return fired

        return self._call(clear)

    def close(self):
        if not self._loop.is_running():
            return

        async def shutdown():
            for route in self._routes.values():
                for link in list(route.links):
                    link.reset()
                if route.server is not None:
                    route.server.close()

        try:
            self._call(shutdown())
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
