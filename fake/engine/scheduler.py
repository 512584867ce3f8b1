"""Running one function on many hosts in threads: a width, host order, and Ctrl-C.

Worker threads start in a fresh context; ``prepare`` (run first in each)
sets what they must carry over from the caller (the run, the flow), and
nothing else leaks in: each call enters its own host scope.
"""

import contextvars
import threading
from collections import deque

from ..exceptions import Interrupted
from ..streams import flush_thread
from .limits import default_width

__all__ = ["Scheduler"]


class Scheduler:
    """Parallel calls with a width; one interrupt state for the whole invocation.

    A first Ctrl-C (or SIGTERM) lets calls in flight finish and starts
    nothing new; a second aborts at once (``aborted``: no clean-up runs,
    since commands may still be running).
    """

    def __init__(self, width=None, say=None):
        self.width = width
        self.say = say or (lambda line: None)
        self.interrupted = None  # the signal's name, once one came
        self.aborted = False

    def check(self):
        if self.interrupted:
            raise Interrupted(self.interrupted)

    def map(self, hosts, fn, interruptible=True, prepare=None, on_abort=None):
        """fn(host) for each host, at most ``width`` at once, started in host order.

        Returns (results, failures, skipped): ``{host: value}``,
        ``{host: exception}`` and the hosts not started after a first
        interrupt. ``on_abort(pending)`` is told the hosts left running when
        a second interrupt aborts.
        """
        results, failures, skipped = {}, {}, []
        if not hosts:
            return results, failures, skipped
        if self.width is None:
            self.width = default_width()  # what the file-descriptor limit allows (-P not given)
        width = max(1, min(self.width, len(hosts)))
        queue = deque(hosts)
        lock = threading.Lock()
        left = [len(hosts)]
        done = threading.Event()

        def finish(n=1):
            left[0] -= n
            if left[0] <= 0:
                done.set()

        def work():
            if prepare is not None:
                prepare()
            while True:
                with lock:
                    if not queue:
                        return
                    host = queue.popleft()
                try:
                    results[host] = fn(host)
                except BaseException as e:  # reported per host, never lost
                    failures[host] = e
                finally:
                    flush_thread()  # what the call printed without a newline, before its step ends
                    with lock:
                        finish()

        started = 0
        while True:
            try:
                while started < width:  # inside the try: a Ctrl-C while starting is handled too
                    threading.Thread(target=contextvars.Context().run, args=(work,), daemon=True).start()
                    started += 1
                while not done.wait(0.1):
                    pass
                # In host order, not finishing order: error lines and reports name hosts as -H and roles list them.
                order = {h: i for i, h in enumerate(hosts)}
                return (dict(sorted(results.items(), key=lambda kv: order[kv[0]])),
                        dict(sorted(failures.items(), key=lambda kv: order[kv[0]])), skipped)
            except KeyboardInterrupt as e:
                signame = getattr(e, "signame", "SIGINT")

                def abort():
                    self.interrupted = self.interrupted or signame
                    self.aborted = True
                    with lock:
                        pending = [h for h in hosts if h not in results and h not in failures]
                    if on_abort is not None:
                        on_abort(pending)
                    raise Interrupted(self.interrupted) from None

                if self.interrupted:
                    abort()
                if not interruptible:
                    # A first Ctrl-C during a clean-up lets it finish everywhere; a second aborts.
                    self.interrupted = signame
                    self.say(f"interrupted ({signame}) during the clean-up: it goes on; "
                             "press Ctrl-C again to abort at once")
                    continue
                try:
                    self.interrupted = signame
                    self.say(f"interrupted ({signame}): letting running commands finish; "
                             "press Ctrl-C again to abort at once")
                    with lock:
                        skipped.extend(queue)
                        n = len(queue)
                        queue.clear()
                        if n:
                            finish(n)
                except KeyboardInterrupt:  # the second came while the first was being handled
                    abort()
