"""Near-duplicate screening: the array of every fingerprint seen answers what comparing each pair would."""

from __future__ import annotations

import random

from agent.sources import SeenFootage


def matching_fraction(a: list[int], b: list[int], max_bits: int) -> float:
    """The pair by pair reference that SeenFootage answers for every earlier clip at once: the fraction of the
    shorter fingerprint's frames with a frame of the other within `max_bits` bits, near 1 for the same footage,
    however trimmed, re-encoded or slightly cropped."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if not short:
        return 0.0
    return sum(any(bin(x ^ y).count("1") <= max_bits for y in long_) for x in short) / len(short)


def near(h: int, bits: int, rng: random.Random) -> int:
    """`h` with `bits` of its 64 bits flipped."""
    for bit in rng.sample(range(64), bits):
        h ^= 1 << bit
    return h


def test_matches_are_the_clips_pairwise_matching_finds_in_order() -> None:
    rng = random.Random(3)
    seen, earlier = SeenFootage(), []
    duplicates = 0
    for clip in range(300):
        source = rng.choice(earlier)[1] if earlier else []
        if clip % 3 and source:  # a copy of earlier footage: re-encoded (a few bits), trimmed, or mixed
            kept = rng.sample(source, rng.randint(1, len(source)))
            prints = [near(h, rng.randint(0, 14), rng) for h in kept] + [rng.getrandbits(64)] * rng.randint(0, 2)
        else:
            prints = [rng.getrandbits(64) for _ in range(rng.randint(0, 8))]
        expected = next(
            (name for name, other in earlier if other and matching_fraction(prints, other, 10) >= 0.6), None
        )
        found = seen.matches(prints, 10, 0.6)
        assert found[:1] == ([expected] if expected else []), clip
        assert found == [name for name, other in earlier if other and matching_fraction(prints, other, 10) >= 0.6]
        if expected is None:
            seen.add(f"clip{clip}", prints)
            earlier.append((f"clip{clip}", prints))
        duplicates += expected is not None
    assert 30 < duplicates < 270  # both answers were asked for
