"""The record of everything a run did: one table per noun. Reports read these, never checkpoint blobs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


SECONDS_PER_DAY = 86_400  # budgets are given in device-days, calls charged in device-seconds


def device_unit(profile: str) -> str:
    """What a run's device-seconds are: CPU time of its process on the profiles without a GPU, else a GPU's."""
    return "CPU" if profile in ("cpu", "tiny") else "GPU"


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    profile: str
    budget_device_seconds: float
    seed: int = Field(sa_type=BigInteger)
    config_json: str  # the resolved RunConfig, secrets excluded
    status: str = "running"  # running | finished | stopped_budget | interrupted
    held_by: str | None = None  # JSON {host, pid, since} of the process running it (store/run_lock.py)


class Episode(SQLModel, table=True):
    # Admission and the planner ask for a clip's other episodes in the run: without this index SQLite read
    # every episode of the run for each.
    __table_args__ = (Index("ix_episode_run_id_clip_path", "run_id", "clip_path"),)
    id: str = Field(primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    index: int
    clip_path: str
    variant: int
    seed: int = Field(sa_type=BigInteger)  # 32-bit unsigned: past PostgreSQL's INTEGER
    category: str | None = Field(default=None, index=True)  # the edit category it was admitted for
    # Nullable so that a store from before categories gets the columns; NULL: admitted by that version.
    categories_json: str | None = None  # every active category in the order the planner tries them
    category_rounds_json: str | None = None  # category -> earlier episodes of the clip admitted for it
    planned_category: str | None = None  # what the planner wrote: another one when the first did not fit the clip
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
    # One row per call site, (episode or training round, node, attempt, tool): a rerun after a crash finds
    # it and does nothing twice. A call belongs to an episode or to a training round, never both.
    __table_args__ = (
        UniqueConstraint("episode_id", "node", "attempt", "tool"),
        UniqueConstraint("training_id", "node", "attempt", "tool"),
        # A run's calls, and its own calls outside any episode (a clip's screening) by their site: by the run
        # alone, SQLite read every call of the run for each clip screened (quadratic in clips).
        Index("ix_toolcall_run_id_node", "run_id", "node"),
    )
    id: int | None = Field(default=None, primary_key=True)
    call_key: str = Field(index=True)  # sha256 of tool, version, backend, input and template hashes
    episode_id: str | None = Field(default=None, index=True, foreign_key="episode.id")
    training_id: str | None = Field(default=None, index=True, foreign_key="trainingrun.id")
    node: str
    attempt: int
    tool: str
    tool_version: str
    backend: str
    input_json: str
    output_json: str | None = None
    error_kind: str | None = None  # tools.base.ErrorKind
    error_field: str | None = None  # the input or output field at fault, when the tool named one
    error_detail: str | None = None
    prompts_json: str = "[]"  # [{name, sha256, origin, text}] of every template rendered
    # What the call was charged: the seconds it held its device(s), times the devices, measured where the tool
    # ran (a step done again adds its work); 0 for a result reused from the cache.
    device_seconds: float = 0.0
    # The run that paid for it. No foreign key: SQLite adds one only by rebuilding the table, which on a store of
    # millions of calls is a long pause for the first run of a new release.
    run_id: str | None = None
    devices: float = 1
    queued_s: float = 0.0  # waited for a device lock or a free actor before running: recorded, never charged
    usage_json: str | None = None  # an LLM call's latency, tokens and transport retries, when it reports them
    reused_call_id: int | None = None  # set when the result came from the cache: nothing ran, nothing charged
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


class TrainingRun(SQLModel, table=True):
    """One round of Editto training on the samples accepted so far, and its held-out evaluation."""

    id: str = Field(primary_key=True)  # '<run id>:train-001'
    run_id: str = Field(index=True, foreign_key="run.id")
    index: int
    trigger: str  # 'every 10 accepted' | 'by hand'
    status: str = "running"  # running | finished | failed
    steps: int
    accepted: int  # samples accepted in the run when the round was planned
    resume_from: str | None = None  # the TrainingRun whose checkpoint this round continued
    train_samples_json: str  # sample ids trained on
    heldout_samples_json: str  # sample ids evaluated, never trained on
    # Whether that set is fixed: every category had training.steer_min_samples judged held-out samples in it
    # after this round (or a round before); until then each round adds samples, and steering waits.
    heldout_frozen: bool | None = None
    checkpoint_dir: str | None = None  # relative to --out: editto.safetensors, training_state.pt, card.json
    weights: str | None = None  # artifact ref of editto.safetensors
    training_state: str | None = None  # artifact ref of training_state.pt
    card_json: str | None = None  # steps, samples seen, loss, reference-drop probability
    eval_scores_json: str | None = None  # mean held-out score per criterion, edited from the instruction alone
    eval_counts_json: str | None = None  # how many held-out samples each of those means (and the loss) rests on
    heldout_loss: float | None = None  # mean deterministic flow-matching loss of the held-out samples, no reference
    category_scores_json: str | None = None  # mean held-out score per edit category, instruction alone
    category_counts_json: str | None = None  # held-out samples judged per edit category (both evaluations)
    # The same, edited from the instruction and the edited reference frame (what the curriculum feeds early on).
    eval_scores_with_reference_json: str | None = None
    eval_counts_with_reference_json: str | None = None
    heldout_loss_with_reference: float | None = None
    category_scores_with_reference_json: str | None = None
    # Which evaluation moved the category shares: 'with reference' | 'instruction alone'; None: steering waited.
    steered_by: str | None = None
    shares_before_json: str | None = None  # the category shares episodes were admitted by before this round
    shares_after_json: str | None = None  # ... and after it: moved toward the categories Editto does worst
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class HeldoutEvaluation(SQLModel, table=True):
    """Editto's edit of one held-out sample from its instruction alone and from its instruction and edited
    reference frame, and the video judge's verdict on each."""

    __table_args__ = (UniqueConstraint("training_id", "sample_id"),)
    id: int | None = Field(default=None, primary_key=True)
    training_id: str = Field(index=True, foreign_key="trainingrun.id")
    sample_id: str = Field(foreign_key="sample.id")
    edited_video: str | None = None  # artifact ref
    scores_json: str | None = None
    reasons_json: str | None = None
    metrics_json: str | None = None  # CLIP-T and CLIP-F, where a CLIP backend is configured
    flow_loss: float | None = None  # the checkpoint's deterministic flow-matching loss on it, no reference
    error: str | None = None
    # The same, Editto given the edited key frame as its reference too.
    edited_video_with_reference: str | None = None
    scores_with_reference_json: str | None = None
    reasons_with_reference_json: str | None = None
    metrics_with_reference_json: str | None = None
    flow_loss_with_reference: float | None = None
    error_with_reference: str | None = None
