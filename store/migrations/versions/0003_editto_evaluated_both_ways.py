"""Editto's held-out evaluation with the edited reference frame beside the one without it, the evaluation
that steered the category mix, and whether the held-out set has stopped growing (issue 30).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("trainingrun", sa.Column("heldout_frozen", sa.Boolean, nullable=True))
    for name in (
        "eval_scores_with_reference_json",
        "eval_counts_with_reference_json",
        "category_scores_with_reference_json",
        "steered_by",
    ):
        op.add_column("trainingrun", sa.Column(name, sa.String, nullable=True))
    op.add_column("trainingrun", sa.Column("heldout_loss_with_reference", sa.Float, nullable=True))
    for name in (
        "edited_video_with_reference",
        "scores_with_reference_json",
        "reasons_with_reference_json",
        "metrics_with_reference_json",
        "error_with_reference",
    ):
        op.add_column("heldoutevaluation", sa.Column(name, sa.String, nullable=True))
    op.add_column("heldoutevaluation", sa.Column("flow_loss_with_reference", sa.Float, nullable=True))
