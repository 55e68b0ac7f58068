"""The category mix: deficit order, counts that do not depend on timing, and shares moved by training."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agent.admission import EpisodeBook
from agent.config import ConfigError, load_config
from agent.quotas import category_order, shift_shares, within_bounds
from store.tables import Episode

SHARES = {"global_style": 0.4, "global_freeform": 0.4, "local_attribute": 0.15, "text": 0.05}


@pytest.mark.parametrize(
    ("counts", "clip_uses", "first"),
    [
        ({}, {}, None),  # nothing yet: the largest share goes first (the tie between the two 0.4s by seed)
        ({"global_style": 4, "global_freeform": 4}, {}, "local_attribute"),
        ({"global_style": 4, "global_freeform": 3, "local_attribute": 1}, {}, "global_freeform"),
        ({"global_style": 4, "global_freeform": 4, "local_attribute": 2}, {}, "text"),
        # a clip that already had local_attribute prefers what it has not had, within one sample of deficit
        ({"global_style": 3, "global_freeform": 4, "text": 1}, {}, "local_attribute"),
        ({"global_style": 3, "global_freeform": 4, "text": 1}, {"local_attribute": 1}, "global_style"),
    ],
)
def test_the_category_furthest_below_its_share_goes_first(counts, clip_uses, first) -> None:  # type: ignore[no-untyped-def]
    order = category_order(SHARES, counts, clip_uses, seed=7)
    assert sorted(order) == sorted(SHARES)
    if first is None:
        assert order[0] in ("global_style", "global_freeform")
    else:
        assert order[0] == first


def test_ties_are_broken_by_the_seed_deterministically() -> None:
    even = {"a": 0.5, "b": 0.5}
    firsts = {category_order(even, {}, {}, seed)[0] for seed in range(20)}
    assert firsts == {"a", "b"}  # some seeds favour each
    assert all(category_order(even, {}, {}, s) == category_order(even, {}, {}, s) for s in range(20))


def test_twelve_accepted_samples_land_within_one_sample_of_every_target() -> None:
    counts: Counter[str] = Counter()
    for _ in range(12):
        counts[category_order(SHARES, counts, {}, seed=3)[0]] += 1
    assert len(counts) == 4
    assert all(abs(counts[c] - share * 12) <= 1 for c, share in SHARES.items()), counts


def episode_row(index: int, category: str | None, planned: str | None, status: str, clip: str = "clip.mp4") -> Episode:
    return Episode(
        id=f"r:{index:05d}",
        run_id="r",
        index=index,
        clip_path=clip,
        variant=0,
        seed=index,
        category=category,
        planned_category=planned,
        status=status,
    )


@pytest.mark.parametrize(
    ("past", "index", "expected"),
    [
        # inside the window (2): counted as if accepted, whatever became of them
        ([(0, "a", None, "discarded"), (1, "b", None, "running")], 2, {"a": 1, "b": 1}),
        # older than the window: only accepted ones count, under the category they were planned as
        ([(0, "a", "b", "accepted"), (1, "a", None, "discarded"), (2, "c", None, "x")], 4, {"b": 1, "c": 1}),
        # an episode older than the window still running: the choice waits
        ([(0, "a", None, "running"), (1, "b", None, "accepted")], 3, None),
    ],
)
def test_counts_before_do_not_depend_on_which_episodes_finished_first(past, index, expected) -> None:  # type: ignore[no-untyped-def]
    got = EpisodeBook([episode_row(*e) for e in past]).counts_before(index, window=2)
    assert (dict(got) if got is not None else None) == expected


def recount(rows: list[Episode], index: int, window: int) -> Counter[str] | None:
    """counts_before's definition, read off every episode at once."""
    counts: Counter[str] = Counter()
    for e in rows:
        if e.index >= index or e.category is None:
            continue
        if e.index >= index - window:
            counts[e.category] += 1
        elif e.status == "running":
            return None
        elif e.status == "accepted":
            counts[e.planned_category or e.category] += 1
    return counts


def test_the_books_running_counts_match_a_recount_through_a_run() -> None:
    """The run loop's book settles old episodes into a running count; at every admission of a run where
    episodes finish out of order, it must give what counting every episode gives."""
    rng = random.Random(7)
    book, rows, running = EpisodeBook([]), {}, []
    index = 0
    while index < 400:
        if running and (len(running) >= 6 or rng.random() < 0.4):  # an episode ends, not the oldest first
            done = running.pop(rng.randrange(len(running)))
            row = rows[done]
            row.status = rng.choice(["accepted", "accepted", "discarded"])
            row.planned_category = rng.choice([None, "b"])
            book.add(row)
            continue
        expected = recount(list(rows.values()), index, window=4)
        got = book.counts_before(index, window=4)
        assert got == expected, index
        if got is None:  # the choice waits for the oldest to finish
            continue
        rows[index] = episode_row(index, rng.choice("abc"), None, "running", clip=f"clip{index % 7}.mp4")
        book.add(rows[index])
        assert book.clip_rounds(f"clip{index % 7}.mp4", index + 1) == Counter(
            r.category for r in rows.values() if r.clip_path == f"clip{index % 7}.mp4"
        )
        running.append(index)
        index += 1


BOUNDS = {
    "global_style": (0.15, 0.6),
    "global_freeform": (0.15, 0.6),
    "local_attribute": (0.04, 0.35),
    "text": (0.02, 0.25),
}


def test_shares_move_toward_the_category_editto_does_worst_within_bounds() -> None:
    scores = {"global_style": 9.0, "global_freeform": 9.0, "local_attribute": 2.0, "text": 9.0}
    moved = shift_shares(SHARES, scores, BOUNDS, rate=0.5)
    assert moved["local_attribute"] > SHARES["local_attribute"]
    assert moved["local_attribute"] <= BOUNDS["local_attribute"][1]
    assert sum(moved.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(BOUNDS[c][0] - 1e-6 <= v <= BOUNDS[c][1] + 1e-6 for c, v in moved.items())
    halfway = shift_shares(SHARES, scores, BOUNDS, rate=0.1)  # smoothed: a small rate moves a little
    assert SHARES["local_attribute"] < halfway["local_attribute"] < moved["local_attribute"]


def test_unscored_categories_keep_their_share_and_equal_scores_change_nothing() -> None:
    assert shift_shares(SHARES, {}, BOUNDS, rate=0.5) == pytest.approx(SHARES)
    partial = shift_shares(SHARES, {"global_style": 8.0, "local_attribute": 6.0}, BOUNDS, rate=0.5)
    assert partial["text"] == pytest.approx(SHARES["text"]) and partial["global_freeform"] == pytest.approx(0.4)


def test_within_bounds_clips_and_renormalises() -> None:
    out = within_bounds({"a": 0.9, "b": 0.05, "c": 0.05}, {"a": (0, 0.6), "b": (0, 1), "c": (0.1, 1)})
    assert out["a"] == pytest.approx(0.6) and out["c"] >= 0.1 and sum(out.values()) == pytest.approx(1.0)


def test_taxonomy_is_config_and_only_categories_a_backend_can_do_are_planned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config("cpu", None, {"out": tmp_path})
    status = cfg.category_status()
    assert set(cfg.target_shares()) == {"global_style", "global_freeform", "local_attribute", "text"}
    assert "editor (opencv_styles)" in status["local_replace"]
    assert sum(cfg.target_shares().values()) == pytest.approx(1.0)
    off = load_config("cpu", None, {"out": tmp_path, "categories": {"text": {"target": 0}}})
    assert "text" not in off.target_shares() and off.category_status()["text"] == "target share is 0"
    assert off.categories["text"].description  # changed key by key: the rest of the entry stays
    with pytest.raises(ConfigError, match="categories.text.target"):
        load_config("cpu", None, {"out": tmp_path, "categories": {"text": {"target": "lots"}}})
    with pytest.raises(ConfigError, match="no edit category can be planned"):
        load_config("cpu", None, {"out": tmp_path, "categories": {c: {"target": 0} for c in status}})
