"""bench.judges at its quick size, as CI runs it: the cpu judges accept none of the labelled set's bad cases and
at least 90% of its good ones (the full set's table is in bench/RESULTS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the bench's quick set: a minute of CPU

ROOT = Path(__file__).resolve().parents[2]


def test_the_cpu_judges_reject_every_bad_case_of_the_quick_set_and_keep_the_good() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.judges", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout.splitlines()[-1]
    found = re.fullmatch(r"good accepted: (\d+) of (\d+) \(\d+%\); bad accepted: (\d+) of (\d+)", summary)
    assert found, result.stdout[-2000:]
    kept, good, bad_kept, bad = map(int, found.groups())
    assert bad_kept == 0 and bad >= 30, result.stdout
    assert good >= 4 and kept >= 0.9 * good, result.stdout
    kinds = {
        line.split("|")[1].strip()
        for line in result.stdout.splitlines()
        if re.match(r"\| [a-z_]+ \| \d+ \| \d+ \|$", line)
    }
    assert {"a_third_edited", "too_weak", "wrong_object", "stutter", "flicker", "other_category"} <= kinds
