from __future__ import annotations

from pathlib import Path

import pytest

from prompts.loader import PromptBook, PromptError


def test_override_wins_only_for_the_files_it_holds(tmp_path: Path) -> None:
    (tmp_path / "judge_video.j2").write_text("Judge {{ instruction }} for {{ target_description }}.")
    book = PromptBook(tmp_path)
    assert book.source("judge_video.j2").origin == "override"
    assert book.source("judge_keyframe.j2").origin == "built-in"
    rendered = book.render("judge_video.j2", instruction="sepia", target_description="old")
    assert rendered.text == "Judge sepia for old." and rendered.origin == "override"


def test_missing_template_variable_names_it() -> None:
    with pytest.raises(PromptError, match="caption"):
        PromptBook().render("plan_instruction.user.j2", avoid=[])


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    (tmp_path / "caption_clip.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(PromptError, match="sandbox|unsafe|forbids"):
        PromptBook(tmp_path).render("caption_clip.j2", num_frames=1, fps=1)


@pytest.mark.parametrize(
    "text", ["{% include '/etc/passwd' %}", "{% import 'caption_clip.j2' as c %}", "{% extends 'x.j2' %}"]
)
def test_include_import_and_extends_are_refused_in_one_line(text: str, tmp_path: Path) -> None:
    (tmp_path / "caption_clip.j2").write_text(f"first line\n{text}")
    with pytest.raises(PromptError, match=r"caption_clip.j2 line 2 includes, imports or extends") as err:
        PromptBook(tmp_path).check("caption_clip.j2")
    assert "\n" not in str(err.value) and "root:" not in str(err.value)


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "caption_clip.j2").write_text("line one\n{% if %}")
    with pytest.raises(PromptError, match=r"caption_clip.j2 line 2"):
        PromptBook(tmp_path).render("caption_clip.j2", num_frames=1, fps=1)


def test_hash_is_stable_and_follows_the_text(tmp_path: Path) -> None:
    builtin = PromptBook().source("judge_video.j2").sha256
    assert builtin == PromptBook().source("judge_video.j2").sha256
    PromptBook().copy("judge_video.j2", tmp_path)
    assert PromptBook(tmp_path).source("judge_video.j2").sha256 == builtin
    assert PromptBook(tmp_path).diff("judge_video.j2") == ""
    (tmp_path / "judge_video.j2").write_text("changed {{ instruction }} {{ target_description }}")
    assert PromptBook(tmp_path).source("judge_video.j2").sha256 != builtin
    assert "+changed" in PromptBook(tmp_path).diff("judge_video.j2")


def test_template_names_cannot_escape_the_folders() -> None:
    with pytest.raises(PromptError, match="plain file name"):
        PromptBook().source("../agent/config.py")
