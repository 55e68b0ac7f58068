"""Who runs a run (one process per run: store/run_lock.py), and what a training round's held-out figures
rest on (a deterministic flow-matching loss, and how many samples each mean counts).

Revision ID: 0002
Revises: 0001
"""

from store.migrations.catch_up import add_missing

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_missing(
        {
            "run": ["held_by"],
            "trainingrun": ["eval_counts_json", "heldout_loss", "category_counts_json"],
            "heldoutevaluation": ["flow_loss"],
        }
    )
