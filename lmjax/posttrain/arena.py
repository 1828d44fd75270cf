"""Arena-style ratings: Bradley–Terry strengths from pairwise comparisons, as LMArena computes
its leaderboard, with bootstrap confidence intervals.

Model i beats model j with probability 1 / (1 + 10^((R_j − R_i) / 400)) (Elo's scale: 400
points are a factor of 10 in odds). The ratings R are the maximum-likelihood fit (a tie counts
as half a win for each side) with the `anchor` model pinned at 1000, and a tiny ridge toward
the anchor (`RIDGE`) that keeps the fit finite when one model wins every comparison, as
LMArena's near-unregularised logistic regression does. Intervals are percentiles of refits on
comparisons resampled with replacement. Comparisons come from `tournament`: every variant
answers the same prompts and a judge (a callable scoring a response to a prompt) decides each
pair; the judge's name goes into the table, since ratings mean nothing without it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from lmjax.errors import DataError
from lmjax.posttrain import task

SCALE = 400.0
BASE = 1000.0
RIDGE = 1e-6
MIN_PER_MODEL = 5
LOGIT = math.log(10) / SCALE  # natural-log odds per rating point


class Comparison(NamedTuple):
    """One judged pair: `score` is model_a's result (1 win, 0.5 tie, 0 loss)."""

    model_a: str
    model_b: str
    score: float


@dataclasses.dataclass(frozen=True)
class Ratings:
    """Elo-scaled Bradley–Terry ratings with `level` bootstrap intervals, best first."""

    models: tuple[str, ...]
    rating: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    judge: str
    anchor: str
    n_comparisons: int
    level: float

    def table(self) -> str:
        """A markdown table naming the judge, the anchor and the number of comparisons."""
        lines = [f"judge: {self.judge}; {self.n_comparisons} comparisons; {self.anchor} pinned at "
                 f"{BASE:.0f}; {100 * self.level:.0f}% bootstrap intervals", "",
                 "| model | rating | interval |", "|---|---:|---|"]
        for name, r, lo, hi in zip(self.models, self.rating, self.lower, self.upper):
            lines.append(f"| {name} | {r:.0f} | [{lo:.0f}, {hi:.0f}] |")
        return "\n".join(lines)


def win_matrix(comparisons: Sequence[Comparison], models: Sequence[str]) -> np.ndarray:
    """W[i, j]: wins of model i over model j, ties counting half to each."""
    return _wins(*_encode(comparisons, models), len(models))


def _encode(comparisons: Sequence[Comparison], models: Sequence[str]) -> tuple[np.ndarray, ...]:
    index = {name: i for i, name in enumerate(models)}
    a = np.array([index[c.model_a] for c in comparisons])
    b = np.array([index[c.model_b] for c in comparisons])
    return a, b, np.array([c.score for c in comparisons], float)


def _wins(a: np.ndarray, b: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    wins = np.zeros((n, n))
    np.add.at(wins, (a, b), score)
    np.add.at(wins, (b, a), 1 - score)
    return wins


def fit(wins: np.ndarray, anchor: int = 0, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood ratings for win matrices (n × n, or a stack B × n × n), model
    `anchor` at BASE: Newton's method on the concave log-likelihood, all stacks at once."""
    wins = np.asarray(wins, float)
    stacked = wins if wins.ndim == 3 else wins[None]
    n = stacked.shape[-1]
    free = np.array([i for i in range(n) if i != anchor])
    theta = np.zeros(stacked.shape[:2])
    games = stacked + np.swapaxes(stacked, 1, 2)
    for _ in range(iterations):
        diff = theta[:, :, None] - theta[:, None, :]
        p_win = 1 / (1 + np.exp(-diff))
        pull = stacked * (1 - p_win)
        grad = pull.sum(axis=1) - pull.sum(axis=2) + 2 * RIDGE * theta
        weight = games * p_win * (1 - p_win)
        hessian = np.eye(n) * (weight.sum(axis=2) + 2 * RIDGE)[:, :, None] - weight
        step = np.linalg.solve(hessian[:, free][:, :, free], grad[:, free, None])[..., 0]
        theta[:, free] -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    ratings = BASE + theta / LOGIT
    return ratings if wins.ndim == 3 else ratings[0]


def rate(comparisons: Sequence[Comparison], judge: str, anchor: str | None = None,
         bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> Ratings:
    """Ratings of every model in `comparisons` with intervals from `bootstrap` resamples."""
    models = check_comparisons(comparisons)
    anchor = anchor if anchor is not None else models[0]
    if anchor not in models:
        raise DataError(f"anchor {anchor!r} is not among the compared models {', '.join(models)}")
    pinned = models.index(anchor)
    a, b, score = _encode(comparisons, models)
    rating = fit(_wins(a, b, score, len(models)), pinned)
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(score), size=(bootstrap, len(score)))
    samples = fit(np.stack([_wins(a[pick], b[pick], score[pick], len(models)) for pick in picks]), pinned)
    tail = 100 * (1 - level) / 2
    lower, upper = np.percentile(samples, [tail, 100 - tail], axis=0)
    order = np.argsort(-rating, kind="stable")
    return Ratings(tuple(models[i] for i in order), _ordered(rating, order), _ordered(lower, order),
                   _ordered(upper, order), judge, anchor, len(comparisons), level)


def _ordered(values: np.ndarray, order: np.ndarray) -> tuple[float, ...]:
    return tuple(float(values[i]) for i in order)


def check_comparisons(comparisons: Sequence[Comparison]) -> list[str]:
    """The compared models in order of appearance, after checking that ratings can be fitted:
    valid scores, no self-comparisons, MIN_PER_MODEL comparisons per model, one connected graph."""
    for c in comparisons:
        if c.model_a == c.model_b or c.score not in (0, 0.5, 1):
            raise DataError(f"bad comparison {tuple(c)}: two different models and a score of 1, 0.5 or 0")
    models = list(dict.fromkeys(name for c in comparisons for name in (c.model_a, c.model_b)))
    if len(models) < 2:
        raise DataError(f"ratings need comparisons between at least 2 models, got {len(comparisons)} "
                        f"comparisons of {len(models)}")
    counts = {name: 0 for name in models}
    for c in comparisons:
        counts[c.model_a] += 1
        counts[c.model_b] += 1
    few = [name for name, count in counts.items() if count < MIN_PER_MODEL]
    if few:
        raise DataError(f"too few comparisons: {few[0]} is in {counts[few[0]]}, ratings need at least "
                        f"{MIN_PER_MODEL} per model; judge more prompts")
    _check_connected(comparisons, models)
    return models


def _check_connected(comparisons: Sequence[Comparison], models: list[str]) -> None:
    """Models in separate groups that never met have no common scale."""
    reached, frontier = {models[0]}, [models[0]]
    neighbours: dict[str, set[str]] = {name: set() for name in models}
    for c in comparisons:
        neighbours[c.model_a].add(c.model_b)
        neighbours[c.model_b].add(c.model_a)
    while frontier:
        for other in neighbours[frontier.pop()] - reached:
            reached.add(other)
            frontier.append(other)
    if len(reached) < len(models):
        missing = sorted(set(models) - reached)
        raise DataError(f"{', '.join(missing)} never met {models[0]} directly or through others: "
                        "compare every model within one connected set")


Responder = Callable[[Sequence[str]], Sequence[str]]


def tournament(variants: Mapping[str, Responder], prompts: Sequence[str],
               judge: Callable[[str, str], float]) -> list[Comparison]:
    """Every variant answers every prompt; for each prompt every pair of variants is one
    comparison, won by the response the judge scores higher (equal scores tie)."""
    if len(variants) < 2 or not prompts:
        raise DataError(f"a tournament needs at least 2 variants and 1 prompt, got {len(variants)} "
                        f"and {len(prompts)}")
    scores = {}
    for name, respond in variants.items():
        responses = list(respond(list(prompts)))
        if len(responses) != len(prompts):
            raise DataError(f"variant {name} gave {len(responses)} responses to {len(prompts)} prompts")
        scores[name] = [judge(p, r) for p, r in zip(prompts, responses)]
    return [Comparison(a, b, _outcome(scores[a][i], scores[b][i]))
            for i in range(len(prompts)) for a, b in itertools.combinations(variants, 2)]


def _outcome(score_a: float, score_b: float) -> float:
    return 1.0 if score_a > score_b else 0.0 if score_a < score_b else 0.5


def word_reward_judge(prompt: str, story: str) -> float:
    """The verifiable judge of the story task (`lmjax.posttrain.task.reward`): whether and how
    early the story uses the word its instruction asks for."""
    return task.reward(story, task.word_in(prompt))


WORD_REWARD_JUDGE = "word-use reward (lmjax.posttrain.task.reward; deterministic, no people)"
