"""Count hysteresis: scripted sequences and properties against a brute-force reference."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.basket.stabilizer import Change, CountStabilizer


def feed(stab: CountStabilizer, counts: Sequence[int], key: str = "P1",
         score: float = 0.9) -> list[tuple[int, Change]]:
    """Feed per-frame counts of one key; return (frame index, change) pairs."""
    out = []
    for index, count in enumerate(counts):
        for change in stab.update({key: [score] * count} if count else {}):
            out.append((index, change))
    return out


def test_rise_needs_confirm_frames_in_a_row() -> None:
    stab = CountStabilizer(3, 5)
    assert feed(stab, [1, 1, 0, 1, 1]) == []
    assert feed(stab, [1]) == [(0, Change("P1", 0, 1, 0.9))]
    assert stab.confirmed == {"P1": 1}


def test_flicker_never_confirms() -> None:
    stab = CountStabilizer(3, 5)
    assert feed(stab, [1, 0, 1, 1, 0, 1, 0, 1, 1, 0] * 5) == []
    assert stab.confirmed == {}


def test_fall_needs_the_longer_release_window() -> None:
    stab = CountStabilizer(2, 6)
    feed(stab, [2, 2])
    assert stab.confirmed == {"P1": 2}
    assert feed(stab, [0, 0, 0, 0, 0]) == []             # a hand: 5 < 6 frames
    assert feed(stab, [2, 2]) == []                      # back: no re-add
    assert feed(stab, [1] * 5) == []
    assert feed(stab, [1]) == [(0, Change("P1", 2, 1))]  # one removed, held 6 frames
    assert stab.confirmed == {"P1": 1}


def test_rise_goes_to_the_level_that_held() -> None:
    stab = CountStabilizer(3, 10)
    changes = feed(stab, [3, 2, 3, 3, 3])
    # Frame 2: counts 3,2,3 all >= 2. Frame 4: the 2 has left the window, all >= 3.
    assert [(i, c.old, c.new) for i, c in changes] == [(2, 0, 2), (4, 2, 3)]


def test_fall_goes_to_the_level_that_held() -> None:
    stab = CountStabilizer(1, 4, initial={"P1": 5})
    changes = feed(stab, [3, 1, 2, 0])
    assert [(i, c.old, c.new) for i, c in changes] == [(3, 5, 3)]


def test_initial_view_is_confirmed_without_events() -> None:
    stab = CountStabilizer(2, 4, initial={"P1": 2, "P2": 0})
    assert stab.confirmed == {"P1": 2}
    assert feed(stab, [2] * 10) == []
    assert feed(stab, [3, 3]) == [(1, Change("P1", 2, 3, 0.9))]


def test_initial_view_needs_the_full_release_window_to_fall() -> None:
    stab = CountStabilizer(2, 4, initial={"P1": 1})
    assert feed(stab, [0, 0, 0]) == []
    assert feed(stab, [0]) == [(0, Change("P1", 1, 0))]
    assert stab.confirmed == {}


def test_confidence_uses_the_scores_that_made_the_rise() -> None:
    stab = CountStabilizer(2, 4)
    assert stab.update({"P1": [0.9]}) == []
    assert stab.update({"P1": [0.7]}) == [Change("P1", 0, 1, pytest.approx(0.8))]
    # A second, weaker detection appears: judged on its own (rank 2) scores.
    stab.update({"P1": [0.5, 0.95]})
    [change] = stab.update({"P1": [0.9, 0.6]})
    assert (change.old, change.new) == (1, 2)
    assert change.confidence == pytest.approx(0.55)


def test_two_at_once_is_one_change_of_two() -> None:
    stab = CountStabilizer(2, 4)
    changes = [c for frame in ([0.8, 0.6], [0.8, 0.6]) for c in stab.update({"P1": frame})]
    assert changes == [Change("P1", 0, 2, pytest.approx(0.7))]


def test_keys_are_independent_and_changes_come_sorted() -> None:
    stab = CountStabilizer(2, 3)
    stab.update({"b": [0.9], "a": [0.8]})
    changes = stab.update({"a": [0.8], "b": [0.9]})
    assert [c.key for c in changes] == ["a", "b"]


def test_forgotten_keys_leave_no_state() -> None:
    stab = CountStabilizer(2, 3)
    for n in range(200):
        stab.update({f"k{n}": [0.9]})
    assert len(stab._tracks) == 1  # only the key seen in the last frame


@pytest.mark.parametrize("confirm, release", [(0, 5), (5, 4)])
def test_bad_windows_are_refused(confirm: int, release: int) -> None:
    with pytest.raises(ValueError):
        CountStabilizer(confirm, release)


def reference(counts: Sequence[int], confirm: int, release: int,
              initial: int = 0) -> list[tuple[int, int, int]]:
    """Brute force: a rise to min of the last `confirm` counts, a fall to max of the last `release`."""
    confirmed, out = initial, []
    for t in range(len(counts)):
        if t + 1 >= confirm and min(counts[t + 1 - confirm:t + 1]) > confirmed:
            out.append((t, confirmed, min(counts[t + 1 - confirm:t + 1])))
            confirmed = out[-1][2]
        elif t + 1 >= release and max(counts[t + 1 - release:t + 1]) < confirmed:
            out.append((t, confirmed, max(counts[t + 1 - release:t + 1])))
            confirmed = out[-1][2]
    return out


windows = st.integers(1, 6).flatmap(lambda c: st.tuples(st.just(c), st.integers(c, 12)))


@settings(max_examples=300, deadline=None)
@given(windows, st.lists(st.integers(0, 4), max_size=80), st.integers(0, 3))
def test_matches_the_brute_force_reference(w: tuple[int, int], counts: list[int],
                                           initial: int) -> None:
    confirm, release = w
    stab = CountStabilizer(confirm, release, initial={"P1": initial})
    got = [(i, c.old, c.new) for i, c in feed(stab, counts)]
    assert got == reference(counts, confirm, release, initial)


@settings(max_examples=200, deadline=None)
@given(windows, st.lists(st.integers(0, 3), max_size=60))
def test_properties_of_rises(w: tuple[int, int], counts: list[int]) -> None:
    confirm, release = w
    stab = CountStabilizer(confirm, release)
    added = 0
    for t, change in feed(stab, counts):
        if change.rise:
            added += change.new - change.old
            # Never a rise without the count held for confirm_frames frames.
            assert t + 1 >= confirm
            assert all(n >= change.new for n in counts[t + 1 - confirm:t + 1])
            assert change.confidence == pytest.approx(0.9)
        else:
            assert all(n <= change.new for n in counts[t + 1 - release:t + 1])
    assert added >= stab.confirmed.get("P1", 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("abc"),
                                st.lists(st.floats(0, 1), max_size=3)), max_size=40))
def test_deterministic(frames: list[dict[str, list[float]]]) -> None:
    runs = []
    for _ in range(2):
        stab = CountStabilizer(2, 5)
        runs.append([stab.update(frame) for frame in frames])
    assert runs[0] == runs[1]


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8), st.lists(st.integers(0, 7), min_size=1, max_size=40))
def test_dips_shorter_than_release_change_nothing(confirm: int, dips: list[int]) -> None:
    release = confirm + 8
    stab = CountStabilizer(confirm, release)
    feed(stab, [2] * confirm)
    counts = []
    for dip in dips:
        counts += [2] + [dip % 2] * min(dip, release - 1)
    assert feed(stab, counts) == []
    assert stab.confirmed == {"P1": 2}
