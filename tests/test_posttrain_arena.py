"""Arena ratings: Bradley–Terry fits against closed forms and an independent MM fit, recovery
of known strengths with bootstrap intervals, tournaments and bad input."""

import itertools
import math

import numpy as np
import pytest

from lmjax.errors import DataError
from lmjax.posttrain import arena
from lmjax.posttrain.arena import Comparison

TRUE = {"a": 1000.0, "b": 1100.0, "c": 1250.0, "d": 900.0, "e": 1400.0}


def _simulate(rng: np.random.Generator, per_pair: int = 100) -> list[Comparison]:
    """Comparisons drawn from the Elo-scaled Bradley–Terry model with the TRUE ratings."""
    comparisons = []
    for x, y in itertools.combinations(TRUE, 2):
        p_x = 1 / (1 + 10 ** ((TRUE[y] - TRUE[x]) / 400))
        comparisons += [Comparison(x, y, float(win)) for win in rng.random(per_pair) < p_x]
    return comparisons


def test_two_models_match_the_closed_form():
    """With two models the MLE sets the odds to the observed ones: R_b − R_a = 400·log10(W_b/W_a)."""
    comparisons = [Comparison("a", "b", 1.0)] * 3 + [Comparison("a", "b", 0.0)] * 9 + [Comparison("b", "a", 0.5)] * 2
    ratings = arena.fit(arena.win_matrix(comparisons, ["a", "b"]))
    assert ratings[0] == 1000
    assert ratings[1] - ratings[0] == pytest.approx(400 * math.log10(10 / 4), abs=1e-3)


def test_fit_equals_hunters_mm_iterations():
    """Hunter's (2004) minorise-maximise updates p_i ← W_i / Σ_j N_ij / (p_i + p_j) reach the
    same maximum likelihood by another route."""
    wins = arena.win_matrix(_simulate(np.random.default_rng(1), per_pair=30), list(TRUE))
    games = wins + wins.T
    p = np.ones(len(TRUE))
    for _ in range(3000):
        p = wins.sum(axis=1) / (games / (p[:, None] + p[None, :])).sum(axis=1)
        p /= p[0]
    np.testing.assert_allclose(arena.fit(wins), 1000 + 400 * np.log10(p), atol=0.05)


def test_ratings_recover_known_strengths_within_bootstrap_intervals():
    """20 synthetic tournaments of 100 comparisons per pair: the true order is recovered every
    time, and the 95% percentile intervals hold the true rating (relative to the anchor) in at
    least 80% of the 80 cases. Percentile intervals of a maximum-likelihood fit undercover a
    little at this size (about 90%, measured over 200 tournaments), hence the 80% floor."""
    rng = np.random.default_rng(0)
    inside = checked = 0
    for replicate in range(20):
        ratings = arena.rate(_simulate(rng), "synthetic", anchor="a", bootstrap=100, seed=replicate)
        assert ratings.models == tuple(sorted(TRUE, key=TRUE.get, reverse=True))
        for name, lower, upper in zip(ratings.models, ratings.lower, ratings.upper):
            if name != "a":
                inside += lower <= TRUE[name] <= upper
                checked += 1
    assert inside >= 0.8 * checked


def test_a_model_that_wins_everything_gets_a_finite_top_rating():
    comparisons = [Comparison("x", "y", 1.0)] * 6 + [Comparison("y", "z", 0.5)] * 6
    ratings = arena.rate(comparisons, "synthetic", bootstrap=20)
    assert ratings.models[0] == "x" and all(math.isfinite(r) for r in ratings.rating)


def test_tournament_judges_every_pair_on_every_prompt_and_names_the_judge():
    prompts = [f"Write a story about a {word}." for word in ("dog", "cat", "ball", "tree", "bird", "car")]
    variants = {
        "always": lambda ps: [f"The {p.split()[-1][:-1]} was happy." for p in ps],
        "late": lambda ps: [f"Once upon a time there was a {p.split()[-1][:-1]}." for p in ps],
        "never": lambda ps: ["Once upon a time." for _ in ps],
    }
    comparisons = arena.tournament(variants, prompts, arena.word_reward_judge)
    assert len(comparisons) == 3 * len(prompts)
    assert set(comparisons) == {Comparison("always", "late", 1.0), Comparison("always", "never", 1.0),
                                Comparison("late", "never", 1.0)}
    ratings = arena.rate(comparisons + [Comparison("never", "late", 0.5)], arena.WORD_REWARD_JUDGE,
                         anchor="never", bootstrap=20)
    assert ratings.models == ("always", "late", "never")
    assert ratings.table().startswith("judge: word-use reward")


def test_synthetic_judge_scores_ties():
    comparisons = arena.tournament({"x": lambda ps: ["aa"] * len(ps), "y": lambda ps: ["bb"] * len(ps)},
                                   ["p"] * 3, judge=lambda prompt, response: len(response))
    assert [c.score for c in comparisons] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("comparisons, message", [
    ([Comparison("a", "b", 1.0)] * 4, "too few comparisons: a is in 4, ratings need at least 5"),
    ([Comparison("a", "b", 1.0)] * 5 + [Comparison("c", "d", 0.0)] * 5, "c, d never met a"),
    ([Comparison("a", "a", 1.0)] * 5, "bad comparison"),
    ([Comparison("a", "b", 0.7)] * 5, "bad comparison"),
    ([], "at least 2 models"),
])
def test_bad_comparisons_are_one_line_errors(comparisons, message):
    with pytest.raises(DataError, match=message) as err:
        arena.rate(comparisons, "synthetic")
    assert "\n" not in str(err.value)


def test_unknown_anchor_and_empty_tournament_are_errors():
    with pytest.raises(DataError, match="anchor 'z' is not among"):
        arena.rate([Comparison("a", "b", 1.0)] * 5, "synthetic", anchor="z")
    with pytest.raises(DataError, match="at least 2 variants and 1 prompt"):
        arena.tournament({"x": lambda ps: ps}, ["p"], judge=lambda p, r: 0.0)
    with pytest.raises(DataError, match="gave 0 responses to 1 prompts"):
        arena.tournament({"x": lambda ps: [], "y": lambda ps: ps}, ["p"], judge=lambda p, r: 0.0)
