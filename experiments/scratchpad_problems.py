"""Seeded arithmetic problems and their two written forms, for the scratchpad experiment
(Nye et al., 2021, "Show Your Work").

A problem is n-digit + n-digit addition or n-digit × 1-digit multiplication. The *direct*
form is the question then the answer; the *scratchpad* form writes, between them, one step
per digit from the least significant up, each with the carry it takes in and the digit and
carry it gives out:

    Q: 57+68                       Q: 57+68
    A: 125                         S: 7+8+0=15 5+6+1=12
                                   A: 125

The steps are exactly what column addition (or short multiplication) does, so a model that
learns one step can, in principle, chain as many as the number has digits.
"""

from __future__ import annotations

import dataclasses
import random

OPERATIONS = ("+", "*")


@dataclasses.dataclass(frozen=True)
class Problem:
    """`a op b` with `digits` the length of `a` (and of `b` for addition)."""

    a: int
    b: int
    op: str
    digits: int

    @property
    def question(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a * self.b

    @property
    def scratchpad(self) -> str:
        """One "x+y+carry=sum" (or "x*y+carry=product") step per digit of `a`, low digit first."""
        steps, carry = [], 0
        a_digits = str(self.a)[::-1]
        b_digits = str(self.b)[::-1].ljust(len(a_digits), "0")
        for x, y in zip(a_digits, b_digits):
            if self.op == "+":
                value = int(x) + int(y) + carry
                steps.append(f"{x}+{y}+{carry}={value}")
            else:
                value = int(x) * self.b + carry
                steps.append(f"{x}*{self.b}+{carry}={value}")
            carry = value // 10
        return " ".join(steps)

    def direct_text(self) -> str:
        return f"Q: {self.question}\nA: {self.answer}"

    def scratchpad_text(self) -> str:
        return f"Q: {self.question}\nS: {self.scratchpad}\nA: {self.answer}"

    def record(self) -> dict:
        """The evaluation task's document (lmjax/eval/tasks/arithmetic/*.yaml)."""
        return {"question": self.question, "scratchpad": self.scratchpad, "answer": str(self.answer),
                "op": self.op, "digits": self.digits}


def random_number(rng: random.Random, digits: int) -> int:
    """A number of exactly `digits` digits (no leading zero)."""
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)


def make_problem(rng: random.Random, digits: int, op: str) -> Problem:
    a = random_number(rng, digits)
    b = random_number(rng, digits) if op == "+" else rng.randint(2, 9)
    return Problem(a, b, op, digits)


def problems(seed: int, digit_lengths: range | list[int], count: int) -> list[Problem]:
    """`count` problems, lengths and operations drawn uniformly, reproducible from `seed`."""
    rng = random.Random(seed)
    lengths = list(digit_lengths)
    return [make_problem(rng, rng.choice(lengths), rng.choice(OPERATIONS)) for _ in range(count)]
