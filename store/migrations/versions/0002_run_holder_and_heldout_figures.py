"""Who runs a run (one process per run: store/run_lock.py), and what a training round's held-out figures
rest on (a deterministic flow-matching loss, and how many samples each mean counts).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("run", sa.Column("held_by", sa.String, nullable=True))
    op.add_column("trainingrun", sa.Column("eval_counts_json", sa.String, nullable=True))
    op.add_column("trainingrun", sa.Column("heldout_loss", sa.Float, nullable=True))
    op.add_column("trainingrun", sa.Column("category_counts_json", sa.String, nullable=True))
    op.add_column("heldoutevaluation", sa.Column("flow_loss", sa.Float, nullable=True))
