"""The store as release caf5255 (the last without migrations) left it, stated here as it was then: a new
store's tables are made from it, and a store of that release or an earlier one gains the tables, columns and
indexes it lacks (releases before migrations added them by hand).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa

from store.migrations.catch_up import add_missing

revision = "0001"
down_revision = None

# Columns with a server default are those a store of an earlier release may lack, and rows it holds need a value.
# Times are aware (SQLModel's UTCDateTime): TIMESTAMP WITH TIME ZONE on PostgreSQL.
SCHEMA = sa.MetaData()
sa.Table(
    "run",
    SCHEMA,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("profile", sa.String, nullable=False),
    sa.Column("budget_device_seconds", sa.Float, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("config_json", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False, server_default="running"),
)
sa.Table(
    "artifact",
    SCHEMA,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("relpath", sa.String, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "promptversion",
    SCHEMA,
    sa.Column("sha256", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("origin", sa.String, nullable=False),
    sa.Column("text", sa.String, nullable=False),
)
sa.Table(
    "episode",
    SCHEMA,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, sa.ForeignKey("run.id"), nullable=False, index=True),
    sa.Column("index", sa.Integer, nullable=False),
    sa.Column("clip_path", sa.String, nullable=False),
    sa.Column("variant", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("category", sa.String, index=True),
    sa.Column("categories_json", sa.String),
    sa.Column("category_rounds_json", sa.String),
    sa.Column("planned_category", sa.String),
    sa.Column("status", sa.String, nullable=False, index=True, server_default="running"),
    sa.Column("reason", sa.String, index=True),
    sa.Column("detail", sa.String),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index("ix_episode_run_id_clip_path", "run_id", "clip_path"),
)
sa.Table(
    "trainingrun",
    SCHEMA,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, sa.ForeignKey("run.id"), nullable=False, index=True),
    sa.Column("index", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False, server_default="running"),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("accepted", sa.Integer, nullable=False),
    sa.Column("resume_from", sa.String),
    sa.Column("train_samples_json", sa.String, nullable=False),
    sa.Column("heldout_samples_json", sa.String, nullable=False),
    sa.Column("checkpoint_dir", sa.String),
    sa.Column("weights", sa.String),
    sa.Column("training_state", sa.String),
    sa.Column("card_json", sa.String),
    sa.Column("eval_scores_json", sa.String),
    sa.Column("category_scores_json", sa.String),
    sa.Column("shares_before_json", sa.String),
    sa.Column("shares_after_json", sa.String),
    sa.Column("error", sa.String),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)
sa.Table(
    "nodeevent",
    SCHEMA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("episode_id", sa.String, sa.ForeignKey("episode.id"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("node", sa.String, nullable=False),
    sa.Column("update_json", sa.String, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("episode_id", "seq"),
)
sa.Table(
    "toolcall",
    SCHEMA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("call_key", sa.String, nullable=False, index=True),
    sa.Column("episode_id", sa.String, sa.ForeignKey("episode.id"), index=True),
    sa.Column("training_id", sa.String, sa.ForeignKey("trainingrun.id"), index=True),
    sa.Column("node", sa.String, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("tool", sa.String, nullable=False),
    sa.Column("tool_version", sa.String, nullable=False),
    sa.Column("backend", sa.String, nullable=False),
    sa.Column("input_json", sa.String, nullable=False),
    sa.Column("output_json", sa.String),
    sa.Column("error_kind", sa.String),
    sa.Column("error_field", sa.String),
    sa.Column("error_detail", sa.String),
    sa.Column("prompts_json", sa.String, nullable=False, server_default="[]"),
    sa.Column("device_seconds", sa.Float, nullable=False, server_default="0.0"),
    sa.Column("devices", sa.Float, nullable=False, server_default="1"),
    sa.Column("queued_s", sa.Float, nullable=False, server_default="0.0"),
    sa.Column("usage_json", sa.String),
    sa.Column("reused_call_id", sa.Integer),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("episode_id", "node", "attempt", "tool"),
    sa.UniqueConstraint("training_id", "node", "attempt", "tool"),
)
sa.Table(
    "sample",
    SCHEMA,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("episode_id", sa.String, sa.ForeignKey("episode.id"), nullable=False, unique=True),
    sa.Column("run_id", sa.String, sa.ForeignKey("run.id"), nullable=False, index=True),
    sa.Column("dataset_dir", sa.String, nullable=False),
    sa.Column("record_json", sa.String, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "charge",
    SCHEMA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tool_call_id", sa.Integer, sa.ForeignKey("toolcall.id"), nullable=False, unique=True),
    sa.Column("run_id", sa.String, sa.ForeignKey("run.id"), nullable=False, index=True),
    sa.Column("tool", sa.String, nullable=False),
    sa.Column("device_seconds", sa.Float, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "heldoutevaluation",
    SCHEMA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("training_id", sa.String, sa.ForeignKey("trainingrun.id"), nullable=False, index=True),
    sa.Column("sample_id", sa.String, sa.ForeignKey("sample.id"), nullable=False),
    sa.Column("edited_video", sa.String),
    sa.Column("scores_json", sa.String),
    sa.Column("reasons_json", sa.String),
    sa.Column("metrics_json", sa.String),
    sa.Column("error", sa.String),
    sa.UniqueConstraint("training_id", "sample_id"),
)


def upgrade() -> None:
    add_missing(SCHEMA)
