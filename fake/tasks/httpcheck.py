"""The health check as a URL: ``healthcheck = 'http://127.0.0.1:8000/health'``.

Fetched on the host itself (the app usually listens on loopback only), with
what the host has: curl, else wget, else python3; none of them is an error
that says so. Only a 2xx answer passes (a redirect does not: a login page is
not health). Tried again every half second until ``healthcheck_timeout``
(30 seconds when no timeout is set), since an app just restarted may need a
moment before it answers.
"""

from ..shell import quote

__all__ = ["url_check_shell"]

# One attempt: prints the status (000 when there is no answer); exit 0 only on 2xx.
_PYTHON_GET = (
    "import sys, urllib.error, urllib.request\n"
    "class NoRedirect(urllib.request.HTTPRedirectHandler):\n"
    "    def redirect_request(self, *args, **kwargs):\n"
    "        return None\n"
    "try:\n"
    "    code = urllib.request.build_opener(NoRedirect).open(sys.argv[1], timeout=float(sys.argv[2])).status\n"
    "except urllib.error.HTTPError as e:\n"
    "    code = e.code\n"
    "except Exception:\n"
    "    code = 0\n"
    "print('%03d' % code)\n"
    "sys.exit(0 if 200 <= code < 300 else 1)\n"
)


def url_check_shell(url, limit):
    """Shell that fetches ``url`` until it answers 2xx or ``limit`` seconds have passed."""
    attempt = max(1, min(5, int(limit)))
    return "\n".join([
        f"fake_url={quote(url)}; fake_end=$(( $(date +%s) + {int(limit + 0.999)} ))",
        "if command -v curl >/dev/null 2>&1; then fake_tool=curl",
        "elif command -v wget >/dev/null 2>&1; then fake_tool=wget",
        "elif command -v python3 >/dev/null 2>&1; then fake_tool=python3",
        "else echo \"no curl, wget or python3 on the host to fetch $fake_url\" >&2; exit 127; fi",
        "fake_get() {",
        "  case $fake_tool in",
        f"    curl) curl -sS -o /dev/null --max-time {attempt} -w '%{{http_code}}' \"$fake_url\" 2>/dev/null ;;",
        f"    wget) wget -q -S -O /dev/null -T {attempt} --tries=1 --max-redirect=0 \"$fake_url\" 2>&1"
        " | awk '/^  HTTP\\//{c=$2} END{print c+0}' ;;",
        f"    python3) python3 -c {quote(_PYTHON_GET)} \"$fake_url\" {attempt} ;;",
        "  esac",
        "}",
        "while :; do",
        "  fake_code=$(fake_get)",
        "  case $fake_code in 2[0-9][0-9]) echo \"$fake_url answered $fake_code ($fake_tool)\"; exit 0 ;; esac",
        "  if [ $(date +%s) -ge $fake_end ]; then",
        f"    echo \"$fake_url did not answer 2xx within {int(limit + 0.999)}s (last: HTTP $fake_code, by $fake_tool)\" >&2",
        "    exit 1",
        "  fi",
        "  sleep 0.5",
        "done",
    ]) + "\n"
