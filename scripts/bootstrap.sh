#!/usr/bin/env bash
# Prepare this machine for Fake's tests: the system tools the end-to-end SSH
# test hosts need (sshd, git, unshare/nsenter), then a .venv in the repo with
# Fake and its test extras.  Safe to re-run; does nothing that is done already.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f setup.py ] || { echo "bootstrap: no setup.py in $PWD; is this Fake's repo?" >&2; exit 1; }

say() { echo "bootstrap: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# Debian package for each missing tool (sshd lives in /usr/sbin, which is
# not always on a non-root PATH, hence the explicit path).
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
{ have ssh && have ssh-keygen; } || missing+=(openssh-client)
have git || missing+=(git)
{ have unshare && have nsenter; } || missing+=(util-linux)
have mount || missing+=(mount)
# The Django e2e tests: hosts make virtualenvs with the system python3, fetch
# the health URL with curl, and the gunicorn reload watches processes with ps.
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
have curl || missing+=(curl)
have ps || missing+=(procps)
if [ ! -x .venv/bin/python ]; then
    have python3 || missing+=(python3)
    # Debian splits venv/ensurepip out of python3.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing packages (${missing[*]}); install them as root or re-run this script as root" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    rm -rf .venv
    python3 -m venv .venv
fi

say "installing Fake (editable) with test extras into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
say "done"
