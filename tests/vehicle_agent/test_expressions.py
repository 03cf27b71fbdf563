"""The trigger condition language: grammar, precedence, errors and windows."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from vehicle_agent.collector import Window
from vehicle_agent.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    Binary,
    ExpressionError,
    Literal,
    NoData,
    SignalNode,
    Unary,
    WindowNode,
    compile_condition,
    parse,
)

NAMES = ("a", "b", "c")


class Env:
    """Latest values by name, and windows as the collector keeps them."""

    def __init__(self, window_samples: int = 1000) -> None:
        self.values = [0.0] * 8
        self.windows: dict[tuple[int, float], Window] = {}
        self.window_samples = window_samples

    def window(self, index: int, seconds: float, func: str) -> Window:
        key = (index, seconds)
        if key not in self.windows:
            self.windows[key] = Window(round(seconds * 1e6), self.window_samples)
        self.windows[key].track(func)
        return self.windows[key]

    def compile(self, text: str) -> Callable[[int], bool]:
        expression = parse(text)
        index_of = {name: NAMES.index(name[-1]) for name in expression.signals}
        return compile_condition(expression, index_of, self.values, self.window)


# Each condition with the same computation written in Python, whose own
# precedence rules are the reference.
PRECEDENCE: list[tuple[str, Callable[[float, float, float], bool]]] = [
    ("a + b * c > 4", lambda a, b, c: a + b * c > 4),
    ("(a + b) * c > 4", lambda a, b, c: (a + b) * c > 4),
    ("a - b - c < 0", lambda a, b, c: a - b - c < 0),
    ("a * b % 3 == 1", lambda a, b, c: a * b % 3 == 1),
    ("-a * b >= c", lambda a, b, c: -a * b >= c),
    ("- -a == a", lambda a, b, c: 0 - (0 - a) == a),
    ("a > 1 or b > 1 and c > 1", lambda a, b, c: a > 1 or (b > 1 and c > 1)),
    ("(a > 1 or b > 1) and c > 1", lambda a, b, c: (a > 1 or b > 1) and c > 1),
    ("not a > 1 and b > 1", lambda a, b, c: (not a > 1) and b > 1),
    ("!(a > 1 && b > 1) || c <= 0", lambda a, b, c: not (a > 1 and b > 1) or c <= 0),
    ("abs(a - b) != c", lambda a, b, c: abs(a - b) != c),
    ("a / 2 + 1e1 > 2.5E-1 * b", lambda a, b, c: a / 2 + 1e1 > 2.5e-1 * b),
    ("(a > b) == (b > c)", lambda a, b, c: (a > b) == (b > c)),
    ("(a > b) != true", lambda a, b, c: (a > b) is not True),
    ("false or a >= +b", lambda a, b, c: a >= b),
]


@pytest.mark.parametrize(("text", "reference"), PRECEDENCE, ids=[t for t, _ in PRECEDENCE])
def test_conditions_evaluate_like_python(
    text: str, reference: Callable[[float, float, float], bool]
) -> None:
    env = Env()
    condition = env.compile(text)
    grid = (-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 7.0)
    for a, b, c in itertools.product(grid, repeat=3):
        env.values[:3] = [a, b, c]
        assert condition(0) is reference(a, b, c), (a, b, c)


def test_tree_shape_follows_precedence() -> None:
    root = parse("a > 1 or not b < 2 and c == 3").root
    assert isinstance(root, Binary)
    assert root.op == "or"
    assert isinstance(root.right, Binary)
    assert root.right.op == "and"
    assert isinstance(root.right.left, Unary)
    assert root.right.left.op == "not"
    negated = parse("-a > -2").root
    assert isinstance(negated, Binary)
    assert isinstance(negated.left, Unary)
    assert negated.right == Literal(5, -2.0)


def test_signal_names_dotted_and_quoted() -> None:
    expression = parse('gnss.gnss_speed.Speed > 1 and gnss_imu."Accel X" < "we\\"ird\\\\"')
    assert expression.signals == (
        ("gnss", "gnss_speed", "Speed"),
        ("gnss_imu", "Accel X"),
        ('we"ird\\',),
    )
    assert parse("Speed > 1 and Speed < 9").signals == (("Speed",),)
    node = parse("x > 1").root
    assert isinstance(node, Binary)
    assert node.left == SignalNode(0, ("x",))


def test_windows_are_listed_once() -> None:
    expression = parse("min(x, 2) < 1 and max(x, 2) > 3 and min(x, 2) < 5 and avg(y, 0.5) > 0")
    assert expression.windows == (("min", ("x",), 2.0), ("max", ("x",), 2.0), ("avg", ("y",), 0.5))
    assert expression.signals == (("x",), ("y",))
    node = parse("avg(x, 1e1) > 0").root
    assert isinstance(node, Binary)
    assert node.left == WindowNode(0, "avg", ("x",), 10.0)


ERRORS: list[tuple[str, str, int]] = [
    ("", "expected a number, a signal, a function or '(' but found end of text", 0),
    ("x > ", "expected a number, a signal, a function or '(' but found end of text", 4),
    ("x > 1 or", "expected a number, a signal, a function or '(' but found end of text", 8),
    ("(x > 1", "expected ')' to close the '(' at position 0 but found end of text", 6),
    ("x > 1)", "expected an operator or end of text but found ')'", 5),
    ("x > 1 y", "expected an operator or end of text but found 'y'", 6),
    ("x > 1 @", "unexpected character '@'", 6),
    ("x = 1", "unexpected character '='", 2),
    ("x & y", "unexpected character '&'", 2),
    ("1e+ > x", "expected digits in the exponent of a number", 3),
    ("1x > 2", "expected an operator after a number", 1),
    ("1e999 > x", "number out of range", 0),
    ('"x > 1', "unterminated quoted name", 0),
    ('"" > 1', "empty quoted name", 0),
    ("x. > 1", "expected a name after '.' but found '>'", 3),
    ("a.b.c.d > 1", "a signal has at most three parts", 0),
    ("foo(x) > 1", "unknown function 'foo' (known: abs, avg, max, min)", 0),
    ("abs(x, y) > 1", "abs() takes 1 argument, got 2", 0),
    ("abs() > 1", "abs() takes 1 argument, got 0", 0),
    ("max(x) > 1", "max() takes 2 arguments (signal, seconds), got 1", 0),
    ("min(x, 1, 2) > 1", "min() takes 2 arguments (signal, seconds), got 3", 0),
    ("avg(x 1) > 1", "expected ',' or ')' in the arguments of avg()", 6),
    ("avg(x + 1, 1) > 1", "expected a signal as the first argument of avg()", 4),
    ("avg(x, y) > 1", "expected a number of seconds as the second argument of avg()", 7),
    ("avg(x, 2 * 3) > 1", "expected a number of seconds as the second argument of avg()", 7),
    ("avg(x, 0) > 1", "the window of avg() must be positive", 7),
    ("min(x, -5) > 1", "the window of min() must be positive", 7),
    ("max(x, 601) > 1", "the window of max() is 601 s, longer than the 600 s limit", 7),
    ("x", "the condition must be true or false, not a number", 0),
    ("x + 1", "the condition must be true or false, not a number", 0),
    ("x > 1 and 3", "'and' needs a condition on its right, but found a number", 6),
    ("x or y > 1", "'or' needs a condition on its left, but found a number", 2),
    ("not x", "'not' needs a condition after it, but found a number", 0),
    ("-(x > 1) == y", "'-' needs a number after it, but found a condition", 0),
    ("(x > 1) + 1 > 0", "'+' needs a number on its left, but found a condition", 8),
    ("(x > 1) < 2", "'<' needs a number on its left, but found a condition", 8),
    ("abs(x > 1) > 0", "'abs' needs a number as its argument, but found a condition", 0),
    ("a < b < c", "comparisons cannot be chained; join them with 'and'", 6),
    ("and > 1", "expected a number, a signal, a function or '(' but found 'and'", 0),
]


@pytest.mark.parametrize(("text", "reason", "position"), ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_conditions_say_where_and_what(text: str, reason: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert info.value.reason.startswith(reason)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def test_overlong_text_is_rejected() -> None:
    text = "x > 1 and " * 100 + "x > 100"
    assert len(text) > MAX_LENGTH
    with pytest.raises(ExpressionError, match=f"at most {MAX_LENGTH}") as info:
        parse(text)
    assert info.value.position == MAX_LENGTH


@pytest.mark.parametrize(
    "build",
    [
        lambda n: "(" * n + "a > 1" + ")" * n,
        lambda n: "-" * n + "a > 1",
        lambda n: "not " * n + "a > 1",
        lambda n: "+".join(["a"] * (n + 1)) + " > 1",
        lambda n: "abs(" * n + "a" + ")" * n + " > 1",
    ],
    ids=["parentheses", "minus", "not", "chain", "calls"],
)
def test_nesting_is_limited_and_the_limit_evaluates(build: Callable[[int], str]) -> None:
    with pytest.raises(ExpressionError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse(build(MAX_DEPTH + 1))
    deepest = MAX_DEPTH - 1
    env = Env()
    env.values[:3] = [3.0, 0.0, 0.0]
    assert isinstance(env.compile(build(deepest))(0), bool)


def test_division_by_zero_makes_the_whole_condition_false() -> None:
    env = Env()
    env.values[:3] = [4.0, 0.0, 1.0]
    assert env.compile("a / c > 1")(0) is True
    assert env.compile("a / b > 1")(0) is False
    assert env.compile("not (a / b > 1)")(0) is False  # not "true by negation"
    assert env.compile("a / b > 1 or c > 0")(0) is False
    assert env.compile("a % b == 0 or c > 0")(0) is False
    assert env.compile("c > 0 or a / b > 1")(0) is True  # short-circuit never divides


def brute(samples: list[tuple[int, float]], now: int, span: int) -> list[float]:
    return [v for t, v in samples if now - span <= t <= now]


def test_window_functions_match_brute_force_over_random_samples() -> None:
    rng = random.Random(7)
    env = Env()
    conditions = {
        "min": parse("min(a, 0.5) > 0"),
        "max": parse("max(a, 0.5) > 0"),
        "avg": parse("avg(a, 2) > 0"),
    }
    for expression in conditions.values():
        compile_condition(expression, {("a",): 0}, env.values, env.window)
    short, long_ = env.windows[(0, 0.5)], env.windows[(0, 2.0)]
    samples: list[tuple[int, float]] = []
    now = 0
    for _ in range(3000):
        now += rng.choice((1_000, 10_000, 200_000, 900_000))
        value = rng.choice((rng.uniform(-50, 50), 0.25 * rng.randint(-8, 8)))
        samples.append((now, value))
        short.add(now, value)
        long_.add(now, value)
        seen = brute(samples, now, 500_000)
        assert short.min(now) == min(seen)
        assert short.max(now) == max(seen)
        assert long_.avg(now) == pytest.approx(
            sum(brute(samples, now, 2_000_000)) / len(brute(samples, now, 2_000_000)),
            rel=1e-9,
            abs=1e-9,
        )
    # Nothing new for longer than either span: every window is empty.
    for window in (short, long_):
        with pytest.raises(NoData):
            window.avg(now + 2_000_001)
    assert len(long_) == 0


def test_empty_window_makes_the_condition_false_and_windows_are_bounded() -> None:
    env = Env(window_samples=5)
    condition = env.compile("max(a, 10) >= 0 or b > 0")
    env.values[1] = 1.0
    assert condition(0) is False  # no sample in the window: false, not an error
    window = env.windows[(0, 10.0)]
    window.track("min")
    for t in range(8):
        window.add(t * 1000, float(t))
    assert len(window) == 5
    assert window.dropped == 3
    assert window.max(8000) == 7.0
    assert window.min(8000) == 3.0  # the dropped samples no longer count
    assert window.avg(8000) == pytest.approx((3 + 4 + 5 + 6 + 7) / 5)
    assert condition(8000) is True
