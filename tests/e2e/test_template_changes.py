"""A template is the configuration's fault, never the episode's: a broken one fails before the first
episode, naming the file and line; one broken mid-run stops the run resumably, discarding nothing; and a
template edited after a run finished is applied by a new run that reruns exactly the calls that used it."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from main import app
from prompts.loader import BUILTIN_DIR
from tests.conftest import SMALL

pytestmark = pytest.mark.slow

BROKEN = [  # (template, text, what the one line says)
    (
        "plan_instruction.user.j2",
        "{# vars: caption, avoid #}\nSource video: {{ caption }\n",
        "plan_instruction.user.j2 line 2: unexpected '}'",
    ),
    (
        "judge_video.j2",
        "{# vars: instruction, target_description, mood #}\nEdit: {{ instruction }}\nMood: {{ mood }}\n",
        "judge_video.j2 line 3 needs a variable it was not given: 'mood' is undefined",
    ),
    (
        "caption_clip.j2",
        "{# vars: num_frames, fps #}\n{{ fps.__class__.__mro__ }}\n",
        "caption_clip.j2 line 2 tried something the sandbox forbids",
    ),
    (
        "edit_vocabulary.yaml",
        "edits: [unclosed\n",
        "edit_vocabulary.yaml line 2 is not valid YAML: expected ',' or ']'",
    ),
]


def config_file(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **extra}))
    return path


def counts(out: Path, sql: str) -> int:
    return sqlite3.connect(out / "ditto.db").execute(sql).fetchone()[0]


@pytest.mark.parametrize(("name", "text", "says"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_template_fails_before_the_first_episode(tmp_path: Path, name: str, text: str, says: str) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / name).write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--out", str(out), "--prompts", str(folder)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]  # one line
    assert f"{folder / name}" in result.output and says.split(" ", 1)[1] in result.output, result.output
    assert not out.exists()  # no run, no database


def break_when(out: Path, template: Path, text: str, stop: threading.Event) -> None:
    """Edit `template` while the run is going, once its first episode has finished."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if counts(out, "select count(*) from episode where status != 'running'"):
                template.write_text(text)
                return
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.01)


def test_a_template_broken_mid_run_stops_it_resumably_and_nothing_is_discarded(tmp_path: Path, clips) -> None:
    source = tmp_path / "clips"
    source.mkdir()
    shutil.copy(clips[0], source / clips[0].name)
    folder = tmp_path / "prompts"
    folder.mkdir()
    # The vocabulary: the text the cpu profile's planner reads (its metric captioner and judges read no prompt).
    template = folder / "edit_vocabulary.yaml"
    good = (BUILTIN_DIR / "edit_vocabulary.yaml").read_text()
    template.write_text(good)
    out = tmp_path / "out"
    args = ["--out", str(out), "--source-dir", str(source), "--prompts", str(folder)]
    args += ["--config", str(config_file(tmp_path, episodes_per_clip=4, concurrency=1))]

    stop = threading.Event()
    editor = threading.Thread(target=break_when, args=(out, template, good + "  - [unclosed\n", stop))
    editor.start()
    first = CliRunner().invoke(app, args)
    stop.set()
    editor.join()
    assert first.exit_code == 1, first.output
    said = " ".join(first.output.split())
    assert f"vocabulary {template} line" in said and "resume with: python main.py" in said
    assert counts(out, "select count(*) from episode where reason like 'tool_failed%'") == 0
    assert counts(out, "select count(*) from toolcall where tool = 'plan_instruction' and error_kind is not null") == 0

    template.write_text(good)
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert counts(out, "select count(*) from episode where status = 'running'") == 0
    assert counts(out, "select count(*) from episode where reason like 'tool_failed%'") == 0
    assert counts(out, "select count(*) from episode") == 4
    assert counts(out, "select count(distinct id) from run") == 1  # the same run went on


def test_a_template_edited_after_the_run_finished_is_applied_by_a_new_run(tmp_path: Path, clips) -> None:
    source = tmp_path / "clips"
    source.mkdir()
    shutil.copy(clips[0], source / clips[0].name)
    folder = tmp_path / "prompts"
    assert CliRunner().invoke(app, ["prompts", "copy", "edit_vocabulary.yaml", str(folder)]).exit_code == 0
    out = tmp_path / "out"
    args = ["--out", str(out), "--source-dir", str(source), "--prompts", str(folder)]
    args += ["--config", str(config_file(tmp_path, episodes_per_clip=2))]
    first = CliRunner().invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert counts(out, "select count(*) from toolcall where tool = 'plan_instruction'") > 0

    with (folder / "edit_vocabulary.yaml").open("a") as f:
        f.write("# Edited after the run: a comment changes the text, and so its hash.\n")
    same = CliRunner().invoke(app, args, catch_exceptions=False)
    assert same.exit_code == 0, same.output
    said = " ".join(same.output.split())  # rich may wrap the line
    assert "Templates changed since this run used them: edit_vocabulary.yaml." in said and "--new-run" in said

    new = CliRunner().invoke(app, [*args, "--new-run"], catch_exceptions=False)
    assert new.exit_code == 0, new.output
    db = sqlite3.connect(out / "ditto.db")
    latest = db.execute("select id from run order by created_at desc limit 1").fetchone()[0]
    ran = db.execute(
        "select t.tool, count(*) from toolcall t join episode e on e.id = t.episode_id "
        "where e.run_id = ? and t.reused_call_id is null group by t.tool",
        (latest,),
    ).fetchall()
    # The planner's calls ran again; they planned the same edits, so everything after them came from the cache.
    assert dict(ran) == {
        "plan_instruction": counts(out, "select count(*) from toolcall where tool = 'plan_instruction'") // 2
    }
    again = CliRunner().invoke(app, [*args], catch_exceptions=False)
    assert "Templates changed" not in again.output  # the latest run used the edited text
