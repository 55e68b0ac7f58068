"""One row per call: what a call was charged becomes columns of its ToolCall (device_seconds, run_id), and the
Charge table, 1:1 with ToolCall and repeating its tool and seconds, goes. Existing charges move into their
calls: a step done again had its redone work added to its charge, which its row's device_seconds held only
the last of.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("toolcall", sa.Column("run_id", sa.String, nullable=True))
    op.create_index("ix_toolcall_run_id_node", "toolcall", ["run_id", "node"])
    op.execute(
        "UPDATE toolcall SET "
        "run_id = (SELECT run_id FROM charge WHERE charge.tool_call_id = toolcall.id), "
        "device_seconds = (SELECT device_seconds FROM charge WHERE charge.tool_call_id = toolcall.id) "
        "WHERE id IN (SELECT tool_call_id FROM charge)"
    )
    # A call reused from the cache had no charge: its run is its episode's, or its training round's (a reused
    # call outside both, a screening of a clip, names no run: it cost nothing).
    op.execute(
        "UPDATE toolcall SET run_id = (SELECT run_id FROM episode WHERE episode.id = toolcall.episode_id) "
        "WHERE run_id IS NULL AND episode_id IS NOT NULL"
    )
    op.execute(
        "UPDATE toolcall SET run_id = (SELECT run_id FROM trainingrun WHERE trainingrun.id = toolcall.training_id) "
        "WHERE run_id IS NULL AND training_id IS NOT NULL"
    )
    op.drop_index("ix_charge_run_id", table_name="charge")
    op.drop_table("charge")
