"""Editto's held-out evaluation with the edited reference frame beside the one without it, the evaluation
that steered the category mix, and whether the held-out set has stopped growing (issue 30).

Revision ID: 0003
Revises: 0002
"""

from store.migrations.catch_up import add_missing

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    add_missing(
        {
            "trainingrun": [
                "heldout_frozen",
                "eval_scores_with_reference_json",
                "eval_counts_with_reference_json",
                "heldout_loss_with_reference",
                "category_scores_with_reference_json",
                "steered_by",
            ],
            "heldoutevaluation": [
                "edited_video_with_reference",
                "scores_with_reference_json",
                "reasons_with_reference_json",
                "metrics_with_reference_json",
                "flow_loss_with_reference",
                "error_with_reference",
            ],
        }
    )
