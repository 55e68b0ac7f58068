"""Prompt templates: a search path (override folder first, then the built-ins), sandboxed rendering,
and a sha256 per template so every call records exactly which text it used."""

from __future__ import annotations

import difflib
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

BUILTIN_DIR = Path(__file__).parent / "templates"
SUFFIXES = (".j2", ".yaml")


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
            raise PromptError(f"prompt override folder {override_dir} does not exist")
        self.override_dir = Path(override_dir) if override_dir else None
        self._env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
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
        return TemplateSource(name=name, path=path, origin=origin, text=path.read_text(encoding="utf-8"))

    def render(self, name: str, **variables: str | int | float | list[str]) -> RenderedPrompt:
        src = self.source(name)
        try:
            template = self._env.from_string(src.text)
            text = template.render(**variables).strip()
        except TemplateSyntaxError as err:
            raise PromptError(f"template {src.path} line {err.lineno}: {err.message}") from err
        except UndefinedError as err:
            raise PromptError(f"template {src.path} needs a variable it was not given: {err.message}") from err
        except SecurityError as err:
            raise PromptError(f"template {src.path} tried something the sandbox forbids: {err}") from err
        return RenderedPrompt(name=name, sha256=src.sha256, origin=src.origin, text=text)

    def load_data(self, name: str) -> tuple[Any, TemplateSource]:
        """A YAML vocabulary (data, never code) with the source it came from."""
        src = self.source(name)
        try:
            return yaml.safe_load(src.text), src
        except yaml.YAMLError as err:
            raise PromptError(f"vocabulary {src.path} is not valid YAML: {err}") from err

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
