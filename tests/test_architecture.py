"""The layering holds (docs/layout.md; pyproject's import-linter contracts): agent -> tools -> models, and the
leaves (store, prompts, models) import nothing of ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_profile_never_imports_torch() -> None:
    """Nor do the captioner, planner and judges at an endpoint: they need no torch either."""
    endpoint = "{'kind': 'openai', 'base_url': 'http://127.0.0.1:9/v1'}"
    roles = ("captioner", "planner", "keyframe_judge", "video_judge")
    code = (
        "import sys; from agent.config import load_config; from tools import build_toolkit; "
        "c = load_config('cpu'); build_toolkit(c.tools, c.backends); import main; "
        f"e = load_config('cpu', overrides={{'backends': {{r: {endpoint} for r in {roles}}}}}); "
        "build_toolkit(e.tools, e.backends); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_prompt_strings_in_code() -> None:
    offenders = [
        str(p)
        for pkg in ("agent", "tools", "models")
        for p in (ROOT / pkg).rglob("*.py")
        if '"""You are' in p.read_text() or "'You are" in p.read_text()
    ]
    assert not offenders
