"""Why a run cannot start or has to stop. None of them is an episode's fault: every episode keeps its
checkpoint, and the same command resumes the run once the cause is gone."""

from __future__ import annotations


class RunError(Exception):
    """The run cannot start: no clips, an unknown run id, a config that does not match the store."""


class StorageError(RunError):
    """The store cannot be written (disk full, database locked past the busy timeout): the run stops, every
    episode stays checkpointed, and the same command resumes it once the cause is gone."""


class OutageStop(RunError):
    """A backend is down (agent.calls.BackendDown): the run stops, interrupted, with every episode waiting on it
    checkpointed, and the same command resumes it once the backend is back."""


class TemplateStop(RunError):
    """A prompt template broke mid-run (edited while running): the configuration's fault, not the episode's.
    The run stops with every episode checkpointed; once the template is fixed the same command resumes."""
