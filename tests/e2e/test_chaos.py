"""A short chaos run (bench/chaos.py): 30 seeded rounds, every fault kind, 0 violations wanted.

The long runs are the script's own (``python bench/chaos.py --rounds 1000``);
this keeps a fixed seed in the test suite so a fix for one fault cannot
quietly break another. A failure lists each violation with the seed and round
that replays it: ``python bench/chaos.py --seed SEED --first-round R --rounds 1``.
"""

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.sshd import _require_root

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261127
ROUNDS = 30
LIMIT = 300  # seconds; a run takes about 70 s on an idle 2-core machine, 150+ on a loaded one


def test_short_chaos_run_keeps_every_invariant(project):
    _require_root()
    result_path = project / "chaos.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--rounds", str(ROUNDS), "--seed", str(SEED),
         "--json", str(result_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
        raise AssertionError(f"not done in {LIMIT} s\n{stderr[-4000:]}") from None
    finally:
        # SIGTERM, not the SIGKILL subprocess.run would send: the script stops its hosts on the way out.
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    assert result_path.exists(), f"exit {proc.returncode}\n{stderr[-4000:]}"
    result = json.loads(result_path.read_text())
    assert result["aborted"] is None, f"{result['aborted']}\n{stderr[-4000:]}"
    assert result["rounds"] == ROUNDS
    sys.path.insert(0, str(ROOT / "bench"))
    from chaos import FAULTS

    assert set(result["faults_scheduled"]) == set(FAULTS), "every fault kind is drawn"
    violations = [f"seed {v['seed']} round {v['round']}: [{v['invariant']}] "
                  + (f"{v['host']}: " if v["host"] else "") + v["text"] for v in result["violations"]]
    assert not violations, ("\n".join(violations) + "\n\n" + stdout[-3000:])
