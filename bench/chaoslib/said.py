"""What a failed run's stderr says about a host: named as failed, or on which release.

Invariants 2 and 6 (see the docstring of bench/chaos.py) accept a split or a
failed host only when a failed run said so; these are the ways Fake says it.
"""

import re


def _table_row(line, host):
    return re.match(rf"^{re.escape(host)}\s+(ok|FAILED|not reached)\b", line) is not None


def names_failed(stderr, host):
    """``[host] ...`` or the summary row ``host  FAILED``."""
    return f"[{host}]" in stderr or re.search(rf"^{re.escape(host)}\s+FAILED\b", stderr, re.M) is not None


def names_with_release(stderr, host, live):
    """Whether some line says which release ``host`` has: ``live`` (a release name, or None for none).

    In the ways Fake states a host's release: ``host <release>`` side by
    side (the rollback refusal, the releases table's "hosts disagree"
    warning), or a line naming the host that says it "switched back to", "is
    on", "is left on", "is still on"... the release (as the note "web1:
    switched back to <release>"). Not a summary-table row: its release
    column is the run's target, and "ok" or "FAILED" there does not say the
    hosts differ. Nor an error line that merely contains the release, such
    as "[web2] ... connection lost while running 'remove unpublished release
    <release>'".
    """
    h = re.escape(host)
    rel = re.escape(live) if live else r"(none|no release|nothing|no current)"
    said = (r"(switched back to|is on|is still on|left on|still on|stays on|remains on|kept on|may be on"
            r"|might be on|may still be on|has live|live release is|live is)")
    patterns = [
        rf"(?<![\w-]){h}\]?:?\s[^\n]*\b{said} (release )?{rel}\b",
        rf"(?<![\w\[-]){h},? (has |on |at )?{rel}\b",
    ]
    for line in stderr.splitlines():
        if not _table_row(line, host) and any(re.search(p, line) for p in patterns):
            return True
    return False
