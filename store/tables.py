"""The record of everything a run did: one table per noun. Reports read these, never checkpoint blobs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    profile: str
    budget_device_seconds: float
    seed: int
    config_json: str  # the resolved RunConfig, secrets excluded
    status: str = "running"  # running | finished | stopped_budget | interrupted


class Episode(SQLModel, table=True):
    id: str = Field(primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    index: int
    clip_path: str
    variant: int
    seed: int
    status: str = Field(default="running", index=True)  # running | accepted | discarded
    reason: str | None = Field(default=None, index=True)
    detail: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class NodeEvent(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("episode_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    episode_id: str = Field(index=True, foreign_key="episode.id")
    seq: int
    node: str
    update_json: str
    at: datetime = Field(default_factory=utcnow)


class ToolCall(SQLModel, table=True):
    # One row per (episode, node, attempt, tool): a rerun after a crash finds it and does nothing twice.
    __table_args__ = (UniqueConstraint("episode_id", "node", "attempt", "tool"),)
    id: int | None = Field(default=None, primary_key=True)
    call_key: str = Field(index=True)  # sha256 of tool, version, backend, input and template hashes
    episode_id: str = Field(index=True, foreign_key="episode.id")
    node: str
    attempt: int
    tool: str
    tool_version: str
    backend: str
    input_json: str
    output_json: str | None = None
    error_kind: str | None = None
    error_detail: str | None = None
    prompts_json: str = "[]"  # [{name, sha256, origin, text}] of every template rendered
    device_seconds: float = 0.0
    devices: int = 1
    reused_call_id: int | None = None  # set when the result came from the cache: nothing ran, nothing charged
    at: datetime = Field(default_factory=utcnow)


class Charge(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    tool_call_id: int = Field(unique=True, foreign_key="toolcall.id")
    run_id: str = Field(index=True, foreign_key="run.id")
    tool: str
    device_seconds: float
    at: datetime = Field(default_factory=utcnow)


class Artifact(SQLModel, table=True):
    id: str = Field(primary_key=True)  # sha256 of the bytes plus the file suffix
    kind: str
    relpath: str
    bytes: int
    created_at: datetime = Field(default_factory=utcnow)


class PromptVersion(SQLModel, table=True):
    sha256: str = Field(primary_key=True)
    name: str
    origin: str
    text: str


class Sample(SQLModel, table=True):
    id: str = Field(primary_key=True)
    episode_id: str = Field(unique=True, foreign_key="episode.id")
    run_id: str = Field(index=True, foreign_key="run.id")
    dataset_dir: str
    record_json: str
    created_at: datetime = Field(default_factory=utcnow)
