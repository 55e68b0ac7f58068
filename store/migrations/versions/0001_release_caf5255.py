"""The store as release caf5255 (the last without migrations) left it. A store of that release or an earlier
one gains the tables, columns and indexes it lacks, as the hand-written upgrade before migrations added them.

Revision ID: 0001
Revises:
"""

from store.migrations.catch_up import add_missing

revision = "0001"
down_revision = None

COLUMNS = {
    "run": ["id", "created_at", "profile", "budget_device_seconds", "seed", "config_json", "status"],
    "episode": [
        "id",
        "run_id",
        "index",
        "clip_path",
        "variant",
        "seed",
        "category",
        "categories_json",
        "category_rounds_json",
        "planned_category",
        "status",
        "reason",
        "detail",
        "started_at",
        "finished_at",
    ],
    "nodeevent": ["id", "episode_id", "seq", "node", "update_json", "at"],
    "toolcall": [
        "id",
        "call_key",
        "episode_id",
        "training_id",
        "node",
        "attempt",
        "tool",
        "tool_version",
        "backend",
        "input_json",
        "output_json",
        "error_kind",
        "error_field",
        "error_detail",
        "prompts_json",
        "device_seconds",
        "devices",
        "queued_s",
        "usage_json",
        "reused_call_id",
        "at",
    ],
    "charge": ["id", "tool_call_id", "run_id", "tool", "device_seconds", "at"],
    "artifact": ["id", "kind", "relpath", "bytes", "created_at"],
    "promptversion": ["sha256", "name", "origin", "text"],
    "sample": ["id", "episode_id", "run_id", "dataset_dir", "record_json", "created_at"],
    "trainingrun": [
        "id",
        "run_id",
        "index",
        "trigger",
        "status",
        "steps",
        "accepted",
        "resume_from",
        "train_samples_json",
        "heldout_samples_json",
        "checkpoint_dir",
        "weights",
        "training_state",
        "card_json",
        "eval_scores_json",
        "category_scores_json",
        "shares_before_json",
        "shares_after_json",
        "error",
        "started_at",
        "finished_at",
    ],
    "heldoutevaluation": [
        "id",
        "training_id",
        "sample_id",
        "edited_video",
        "scores_json",
        "reasons_json",
        "metrics_json",
        "error",
    ],
}
INDEXES = {
    "charge": ["ix_charge_run_id"],
    "episode": [
        "ix_episode_category",
        "ix_episode_reason",
        "ix_episode_run_id",
        "ix_episode_run_id_clip_path",
        "ix_episode_status",
    ],
    "heldoutevaluation": ["ix_heldoutevaluation_training_id"],
    "nodeevent": ["ix_nodeevent_episode_id"],
    "sample": ["ix_sample_run_id"],
    "toolcall": ["ix_toolcall_call_key", "ix_toolcall_episode_id", "ix_toolcall_training_id"],
    "trainingrun": ["ix_trainingrun_run_id"],
}


def upgrade() -> None:
    add_missing(COLUMNS, INDEXES)
