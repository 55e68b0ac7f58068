"""Prompt templates: a search path (override folder first, then the built-ins), sandboxed rendering,
and a sha256 per template so every call records exactly which text it used."""

from __future__ import annotations

import difflib
import hashlib
import re
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FunctionLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

BUILTIN_DIR = Path(__file__).parent / "templates"
SUFFIXES = (".j2", ".yaml")
VARS_HEADER = re.compile(r"\{#\s*vars:(.*?)#\}", re.DOTALL)  # {# vars: caption, avoid #}


def declared_variables(text: str) -> list[str]:
    header = VARS_HEADER.search(text)
    return [v.strip() for v in header.group(1).split(",") if v.strip()] if header else []


def template_line(err: BaseException) -> int | None:
    """The template line a rendering error came from (Jinja2 puts template frames in the traceback)."""
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename == "<template>"]
    return lines[-1] if lines else None


class PromptError(Exception):
    """A template is missing, does not parse, needs a variable it was not given, or breaks the sandbox."""


@dataclass(frozen=True)
class TemplateSource:
    name: str
    path: Path
    origin: str  # "built-in" or "override"
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    sha256: str
    origin: str
    text: str


class PromptBook:
    """Finds templates by name; the override folder wins over the built-ins, file by file."""

    def __init__(self, override_dir: Path | None = None) -> None:
        if override_dir is not None and not Path(override_dir).is_dir():
            raise PromptError(f"prompt override folder (--prompts) {override_dir} is not a folder")
        self.override_dir = Path(override_dir) if override_dir else None
        # Each template is self-contained: a loader that finds nothing makes include, import and extends fail
        # as "not found" (without one, Jinja2 raised a bare TypeError), and no file is ever read through them.
        self._env = ImmutableSandboxedEnvironment(
            loader=FunctionLoader(lambda _name: None),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def names(self) -> list[str]:
        found = {p.name for p in BUILTIN_DIR.iterdir() if p.suffix in SUFFIXES}
        if self.override_dir:
            found |= {p.name for p in self.override_dir.iterdir() if p.suffix in SUFFIXES}
        return sorted(found)

    def source(self, name: str) -> TemplateSource:
        if "/" in name or "\\" in name or name.startswith("."):
            raise PromptError(f"template name {name!r} must be a plain file name")
        if self.override_dir and (self.override_dir / name).is_file():
            path, origin = self.override_dir / name, "override"
        elif (BUILTIN_DIR / name).is_file():
            path, origin = BUILTIN_DIR / name, "built-in"
        else:
            raise PromptError(f"no prompt template named {name!r} (known: {', '.join(self.names())})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PromptError(f"template {path} cannot be read as text: {err}") from err
        return TemplateSource(name=name, path=path, origin=origin, text=text)

    def render(self, name: str, **variables: str | int | float | list[str]) -> RenderedPrompt:
        src = self.source(name)
        try:
            template = self._env.from_string(src.text)
            text = template.render(**variables).strip()
        except TemplateSyntaxError as err:
            raise PromptError(f"template {src.path} line {err.lineno}: {err.message}") from err
        except UndefinedError as err:
            raise PromptError(
                f"template {src.path} line {template_line(err)} needs a variable it was not given: {err.message} "
                f"(given: {', '.join(variables) or 'none'})"
            ) from err
        except TemplateNotFound as err:
            raise PromptError(
                f"template {src.path} line {template_line(err)} includes, imports or extends {err.name!r}: templates "
                "are self-contained, so include, import and extends are not allowed"
            ) from err
        except SecurityError as err:
            raise PromptError(
                f"template {src.path} line {template_line(err)} tried something the sandbox forbids: {err}"
            ) from err
        return RenderedPrompt(name=name, sha256=src.sha256, origin=src.origin, text=text)

    def check(self, name: str) -> None:
        """Render a template with a placeholder for each variable the code passes it (those its built-in
        declares in its `{# vars: ... #}` header), or parse a vocabulary, so a broken file fails before the
        first episode instead of in every one."""
        if name.endswith(".yaml"):
            self.load_data(name)
            return
        builtin = BUILTIN_DIR / name
        declared = declared_variables((builtin if builtin.is_file() else self.source(name).path).read_text("utf-8"))
        self.render(name, **{v: f"<{v}>" for v in declared})

    def check_all(self) -> None:
        for name in self.names():
            self.check(name)

    def load_data(self, name: str) -> tuple[Any, TemplateSource]:
        """A YAML vocabulary (data, never code) with the source it came from."""
        src = self.source(name)
        try:
            return yaml.safe_load(src.text), src
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise PromptError(
                f"vocabulary {src.path}{where} is not valid YAML: {getattr(err, 'problem', err)}"
            ) from err

    def copy(self, name: str, dest_dir: Path) -> Path:
        src = self.source(name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        shutil.copyfile(BUILTIN_DIR / name if (BUILTIN_DIR / name).is_file() else src.path, dest)
        return dest

    def diff(self, name: str) -> str:
        """Unified diff of the override against the built-in ('' when they agree or there is no override)."""
        src = self.source(name)
        builtin = BUILTIN_DIR / name
        old = builtin.read_text(encoding="utf-8").splitlines(keepends=True) if builtin.is_file() else []
        return "".join(difflib.unified_diff(old, src.text.splitlines(keepends=True), f"built-in/{name}", str(src.path)))
