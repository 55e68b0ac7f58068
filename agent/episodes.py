"""One episode, run as a LangGraph thread: streamed from its last checkpoint, each node's update recorded as a
trace event, its checkpoints pruned once it has ended. A failure the graph did not decide on is the episode's
(it is discarded, the run goes on) or the run's (agent/faults.py: the run stops, the episode keeps its
checkpoint)."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlmodel import Session, col, func, select

from agent.calls import canonical_json
from agent.context import RunContext
from agent.faults import run_stop
from agent.state import EpisodeInput
from store.dataset import discard_episode
from store.inserts import insert_ignore
from store.tables import NodeEvent

log = logging.getLogger(__name__)

Ended = queue.Queue[tuple[str, BaseException | None]]  # (episode id, what stopped the run, if anything did)


class EpisodeRunner:
    """Runs episodes through the compiled graph, each in a thread of its own; `stop` set, each stops at its
    next checkpoint."""

    def __init__(self, graph: Any, context: RunContext, checkpointer: BaseCheckpointSaver[str]) -> None:
        self.graph, self.context, self.checkpointer = graph, context, checkpointer
        self.engine = context.engine
        self.stop = threading.Event()

    def start(self, episode: EpisodeInput, index: int, ended: Ended) -> str:
        """The episode runs in a daemon thread (a tool that hangs cannot keep the process from exiting) and
        says on `ended` when it has."""

        def run() -> None:
            try:
                self.run(episode)
                ended.put((episode["episode_id"], None))
            except BaseException as err:  # noqa: BLE001 -- handed to the admission loop
                ended.put((episode["episode_id"], err))

        threading.Thread(target=run, name=f"episode-{index}", daemon=True).start()
        return episode["episode_id"]

    def run(self, episode: EpisodeInput) -> None:
        """From the start, or from where a stopped or killed run left it (its checkpoint, and the node events
        recorded so far)."""
        episode_id = episode["episode_id"]
        config = {"configurable": {"thread_id": episode_id}}
        with Session(self.engine) as s:
            seq = s.exec(select(func.count(col(NodeEvent.id))).where(NodeEvent.episode_id == episode_id)).one()
        resuming = bool(self.graph.get_state(config).next)
        try:
            for update in self.graph.stream(
                None if resuming else episode, config, context=self.context, stream_mode="updates", durability="sync"
            ):
                for node, delta in update.items():
                    seq += 1
                    # A row recorded before a crash stays: the rerun of the node wrote nothing new.
                    event = {"episode_id": episode_id, "seq": seq, "node": node, "update_json": canonical_json(delta)}
                    insert_ignore(self.engine, NodeEvent, **event)
                if self.stop.is_set():
                    return  # the checkpoint holds the episode; the same command continues it
        except Exception as err:  # noqa: BLE001 -- one broken episode must not end the run
            if (stop := run_stop(err, self.context.config.out)) is not None:
                self.stop.set()
                raise stop from err
            log.exception("episode failed", extra={"episode": episode_id})
            discard_episode(self.engine, episode_id, "agent_error", f"{type(err).__name__}: {err}")
        self.checkpointer.delete_thread(episode_id)  # ended: its checkpoints are not needed
