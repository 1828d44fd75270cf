"""The scratchpad experiment's problem generator (experiments/scratchpad_problems.py) against
column arithmetic worked out by hand."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "experiments"))

from scratchpad_problems import Problem, problems  # noqa: E402


def test_addition_steps_carry_from_the_low_digit_up():
    problem = Problem(57, 68, "+", 2)  # 7+8 = 15 (write 5, carry 1); 5+6+1 = 12
    assert problem.scratchpad == "7+8+0=15 5+6+1=12"
    assert problem.scratchpad_text() == "Q: 57+68\nS: 7+8+0=15 5+6+1=12\nA: 125"
    assert problem.direct_text() == "Q: 57+68\nA: 125"


def test_multiplication_steps_carry_the_tens_of_each_product():
    problem = Problem(4567, 8, "*", 4)  # 56 -> 6 c5; 48+5=53 -> 3 c5; 40+5=45 -> 5 c4; 32+4=36
    assert problem.scratchpad == "7*8+0=56 6*8+5=53 5*8+5=45 4*8+4=36"
    assert problem.answer == 36536


def test_problems_are_seeded_and_have_the_asked_lengths():
    first, again, other = problems(3, [4, 6], 50), problems(3, [4, 6], 50), problems(4, [4, 6], 50)
    assert first == again and first != other
    for problem in first:
        assert len(str(problem.a)) == problem.digits in (4, 6)
        assert problem.op == "*" and 2 <= problem.b <= 9 or len(str(problem.b)) == problem.digits
