"""A small, safe expression language for the conditions of capture triggers.

A collection plan says *when* to capture with a condition such as
``Speed > 33 and avg(AccelerationX, 2) < -3``. The text comes from the cloud, so
it is parsed by the hand-written tokenizer and recursive-descent parser below,
never by ``eval`` or Python's own parser, and everything it may do is listed here:

* numbers (``12``, ``0.5``, ``1e-3``), ``true``, ``false``;
* signals: ``Name``, ``Message.Name``, ``Bus.Message.Name``; any part may be
  double-quoted for names with odd characters (``"Wheel Speed"``, with ``\\"``
  and ``\\\\`` as escapes);
* arithmetic ``+ - * / %`` and unary minus, on numbers;
* comparisons ``< <= > >= == !=`` (not chained: ``a < b < c`` is an error);
* ``and``/``&&``, ``or``/``||``, ``not``/``!`` on conditions;
* ``abs(x)``; window functions ``min(Signal, s)``, ``max(Signal, s)``,
  ``avg(Signal, s)`` over the signal's samples in the last ``s`` seconds of CAN
  time, where ``s`` is a positive number literal of at most
  :data:`MAX_WINDOW_S`.

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons, ``+ -``,
``* / %``, unary minus. Types are checked when parsing: arithmetic takes
numbers, logic takes conditions, and the whole expression must be a condition.

Evaluation never raises. A division (or ``%``) by zero, or a window with no
samples in it, makes the *whole* condition false for that evaluation: a trigger
cannot fire on a value that does not exist.

:func:`parse` gives an :class:`Expression` whose signal names are still text; the
collection plan resolves them against the catalog and :func:`compile_condition`
turns the tree into nested closures reading the collector's latest values.

Pure module: no transport, storage or bus library.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_WINDOW_S",
    "Binary",
    "Call",
    "Condition",
    "Expression",
    "ExpressionError",
    "Literal",
    "NoData",
    "Node",
    "SignalName",
    "SignalNode",
    "Unary",
    "WindowFunctions",
    "WindowNode",
    "compile_condition",
    "parse",
]

#: Longest condition text accepted, in characters.
MAX_LENGTH = 1000
#: Deepest nesting accepted (parentheses, operators, function calls).
MAX_DEPTH = 32
#: Longest window of min/max/avg, in seconds.
MAX_WINDOW_S = 600.0

#: A signal as written: (name,), (message, name) or (bus, message, name).
SignalName = tuple[str, ...]

#: A compiled condition: called with the current CAN time in microseconds.
Condition = Callable[[int], bool]
_Num = Callable[[int], float]
_Bool = Callable[[int], bool]


class ExpressionError(ValueError):
    """A condition cannot be parsed; says where and what was expected.

    ``position`` is the 0-based character offset in ``text``; ``reason`` is the
    message without the position.
    """

    def __init__(self, text: str, position: int, reason: str) -> None:
        near = text[position : position + 20]
        where = f"near {near!r}" if near else "at end of text"
        super().__init__(f"{reason} (position {position}, {where})")
        self.text = text
        self.position = position
        self.reason = reason


# ---------------------------------------------------------------- tokens

_NUM, _NAME, _QUOTED, _OP, _END = "number", "name", "quoted", "op", "end"
_OPERATORS = ("<=", ">=", "==", "!=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")")
_SINGLE = frozenset("+-*/%<>!(),.")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    pos: int
    value: float = 0.0


def _describe(token: _Token) -> str:
    return "end of text" if token.kind == _END else repr(token.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isascii() and c.isdigit():
            i = _number(text, i, tokens)
        elif c.isascii() and (c.isalpha() or c == "_"):
            start = i
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            tokens.append(_Token(_NAME, text[start:i], start))
        elif c == '"':
            i = _quoted(text, i, tokens)
        else:
            for op in _OPERATORS:
                if text.startswith(op, i):
                    tokens.append(_Token(_OP, op, i))
                    i += len(op)
                    break
            else:
                if c in _SINGLE:
                    tokens.append(_Token(_OP, c, i))
                    i += 1
                else:
                    raise ExpressionError(text, i, f"unexpected character {c!r}")
    tokens.append(_Token(_END, "", n))
    return tokens


def _digits(text: str, i: int) -> int:
    while i < len(text) and text[i].isascii() and text[i].isdigit():
        i += 1
    return i


def _number(text: str, start: int, tokens: list[_Token]) -> int:
    i = _digits(text, start)
    if i < len(text) and text[i] == "." and i + 1 < len(text) and text[i + 1].isdigit():
        i = _digits(text, i + 1)
    if i < len(text) and text[i] in "eE":
        j = i + 1
        if j < len(text) and text[j] in "+-":
            j += 1
        end = _digits(text, j)
        if end == j:
            raise ExpressionError(text, j, "expected digits in the exponent of a number")
        i = end
    if i < len(text) and (text[i].isalpha() or text[i] == "_"):
        raise ExpressionError(text, i, "expected an operator after a number")
    value = float(text[start:i])
    if not math.isfinite(value):
        raise ExpressionError(text, start, "number out of range")
    tokens.append(_Token(_NUM, text[start:i], start, value))
    return i


def _quoted(text: str, start: int, tokens: list[_Token]) -> int:
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            chars.append(text[i + 1])
            i += 2
        elif c == '"':
            if not chars:
                raise ExpressionError(text, start, "empty quoted name")
            tokens.append(_Token(_QUOTED, "".join(chars), start))
            return i + 1
        else:
            chars.append(c)
            i += 1
    raise ExpressionError(text, start, "unterminated quoted name: expected a closing '\"'")


# ---------------------------------------------------------------- tree

_NUMBER, _CONDITION = "a number", "a condition"


@dataclass(frozen=True, slots=True)
class Literal:
    """A number, ``true`` or ``false``."""

    pos: int
    value: float | bool


@dataclass(frozen=True, slots=True)
class SignalNode:
    """The latest value of a signal."""

    pos: int
    name: SignalName


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x`` or ``not x``."""

    pos: int
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic, comparison or logic; ``op`` is canonical (``and``, not ``&&``)."""

    pos: int
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    """``abs(x)``."""

    pos: int
    func: str
    arg: Node


@dataclass(frozen=True, slots=True)
class WindowNode:
    """``min|max|avg(signal, seconds)``."""

    pos: int
    func: str
    signal: SignalName
    seconds: float


Node = Literal | SignalNode | Unary | Binary | Call | WindowNode

_ARITHMETIC = frozenset("+-*/%")
_COMPARISON = frozenset(("<", "<=", ">", ">=", "==", "!="))
_LOGIC = {"and": "and", "&&": "and", "or": "or", "||": "or"}
_WINDOW_FUNCS = ("avg", "max", "min")
_FUNCS = ("abs", *_WINDOW_FUNCS)
_KEYWORDS = frozenset(("and", "or", "not", "true", "false"))


def _type(node: Node) -> str:
    if isinstance(node, Literal):
        return _CONDITION if isinstance(node.value, bool) else _NUMBER
    if isinstance(node, Unary):
        return _CONDITION if node.op == "not" else _NUMBER
    if isinstance(node, Binary):
        return _NUMBER if node.op in _ARITHMETIC else _CONDITION
    return _NUMBER


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed condition: its text, tree and the signals it reads.

    ``signals`` lists each distinct signal name once, in order of appearance
    (window arguments included); ``windows`` each distinct
    ``(function, signal, seconds)``.
    """

    text: str
    root: Node
    signals: tuple[SignalName, ...]
    windows: tuple[tuple[str, SignalName, float], ...]


def parse(text: str) -> Expression:
    """Parse a trigger condition; raises :class:`ExpressionError` on any bad input."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            text, MAX_LENGTH, f"condition is {len(text)} characters long, at most {MAX_LENGTH}"
        )
    return _Parser(text).parse()


class _Parser:
    """Recursive descent, one method per precedence level."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.at = 0
        self.depth = 0
        self.signals: dict[SignalName, None] = {}
        self.windows: dict[tuple[str, SignalName, float], None] = {}

    # -- helpers

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def error(self, reason: str, token: _Token | None = None) -> ExpressionError:
        return ExpressionError(self.text, (token or self.token).pos, reason)

    def accept(self, *ops: str) -> _Token | None:
        token = self.token
        if (token.kind == _OP and token.text in ops) or (token.kind == _NAME and token.text in ops):
            self.at += 1
            return token
        return None

    def expect(self, op: str, what: str) -> _Token:
        token = self.accept(op)
        if token is None:
            raise self.error(f"expected {what} but found {_describe(self.token)}")
        return token

    def nest(self, token: _Token) -> None:
        # Bounds the parser's recursion as well as the compiled closures' depth.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels", token)

    def check(self, node: Node, want: str, role: str, op: _Token) -> None:
        got = _type(node)
        if got != want:
            raise self.error(f"{op.text!r} needs {want} {role}, but found {got}", op)

    # -- grammar

    def parse(self) -> Expression:
        root = self.or_expr()
        if self.token.kind != _END:
            raise self.error(
                f"expected an operator or end of text but found {_describe(self.token)}"
            )
        if _type(root) != _CONDITION:
            raise ExpressionError(
                self.text,
                0,
                "the condition must be true or false, not a number (compare it, e.g. 'Speed > 0')",
            )
        return Expression(self.text, root, tuple(self.signals), tuple(self.windows))

    def binary_chain(self, ops: tuple[str, ...], operand: Callable[[], Node], want: str) -> Node:
        left = operand()
        depth = self.depth
        while (op := self.accept(*ops)) is not None:
            self.check(left, want, "on its left", op)
            right = operand()
            self.check(right, want, "on its right", op)
            self.nest(op)
            left = Binary(op.pos, _LOGIC.get(op.text, op.text), left, right)
        self.depth = depth
        return left

    def or_expr(self) -> Node:
        return self.binary_chain(("or", "||"), self.and_expr, _CONDITION)

    def and_expr(self) -> Node:
        return self.binary_chain(("and", "&&"), self.not_expr, _CONDITION)

    def not_expr(self) -> Node:
        op = self.accept("not", "!")
        if op is None:
            return self.comparison()
        self.nest(op)
        operand = self.not_expr()
        self.depth -= 1
        self.check(operand, _CONDITION, "after it", op)
        return Unary(op.pos, "not", operand)

    def comparison(self) -> Node:
        left = self.additive()
        op = self.accept(*_COMPARISON)
        if op is None:
            return left
        right = self.additive()
        if op.text in ("==", "!=") and _type(left) == _type(right) == _CONDITION:
            pass  # comparing two conditions for equality is meaningful
        else:
            self.check(left, _NUMBER, "on its left", op)
            self.check(right, _NUMBER, "on its right", op)
        if (chained := self.accept(*_COMPARISON)) is not None:
            raise self.error("comparisons cannot be chained; join them with 'and'", chained)
        return Binary(op.pos, op.text, left, right)

    def additive(self) -> Node:
        return self.binary_chain(("+", "-"), self.multiplicative, _NUMBER)

    def multiplicative(self) -> Node:
        return self.binary_chain(("*", "/", "%"), self.unary, _NUMBER)

    def unary(self) -> Node:
        op = self.accept("-", "+")
        if op is None:
            return self.primary()
        self.nest(op)
        operand = self.unary()
        self.depth -= 1
        self.check(operand, _NUMBER, "after it", op)
        if op.text == "+":
            return operand
        if isinstance(operand, Literal):  # keep "-5" a literal: window lengths need it
            return Literal(op.pos, -operand.value)
        return Unary(op.pos, "-", operand)

    def primary(self) -> Node:
        token = self.token
        if token.kind == _NUM:
            self.at += 1
            return Literal(token.pos, token.value)
        if token.kind == _OP and token.text == "(":
            self.at += 1
            self.nest(token)
            inner = self.or_expr()
            self.depth -= 1
            self.expect(")", f"')' to close the '(' at position {token.pos}")
            return inner
        if token.kind == _NAME and token.text in ("true", "false"):
            self.at += 1
            return Literal(token.pos, token.text == "true")
        # A name token is never last: the end token follows every other token.
        following = self.tokens[self.at + 1] if token.kind == _NAME else token
        if token.kind == _NAME and following.kind == _OP and following.text == "(":
            return self.call()
        if token.kind == _QUOTED or (token.kind == _NAME and token.text not in _KEYWORDS):
            return SignalNode(token.pos, self.signal_name())
        raise self.error(
            f"expected a number, a signal, a function or '(' but found {_describe(token)}"
        )

    def signal_name(self) -> SignalName:
        first = self.token
        parts = [first.text]
        self.at += 1
        while self.accept(".") is not None:
            part = self.token
            if part.kind not in (_NAME, _QUOTED):
                raise self.error(f"expected a name after '.' but found {_describe(part)}")
            parts.append(part.text)
            self.at += 1
        if len(parts) > 3:
            raise self.error(
                f"a signal has at most three parts (bus.message.signal), found {len(parts)}",
                first,
            )
        name = tuple(parts)
        self.signals.setdefault(name)
        return name

    def call(self) -> Node:
        func = self.token
        if func.text not in _FUNCS:
            raise self.error(
                f"unknown function {func.text!r} (known: {', '.join(sorted(_FUNCS))})", func
            )
        self.at += 2  # the name and "("
        self.nest(func)
        args: list[tuple[_Token, Node]] = []
        if self.accept(")") is None:
            while True:
                start = self.token
                args.append((start, self.or_expr()))
                if self.accept(")") is not None:
                    break
                self.expect(",", f"',' or ')' in the arguments of {func.text}()")
        self.depth -= 1
        if func.text == "abs":
            if len(args) != 1:
                raise self.error(f"abs() takes 1 argument, got {len(args)}", func)
            self.check(args[0][1], _NUMBER, "as its argument", func)
            return Call(func.pos, "abs", args[0][1])
        return self.window(func, args)

    def window(self, func: _Token, args: list[tuple[_Token, Node]]) -> Node:
        name = func.text
        if len(args) != 2:
            raise self.error(f"{name}() takes 2 arguments (signal, seconds), got {len(args)}", func)
        (sig_token, signal), (sec_token, seconds) = args
        if not isinstance(signal, SignalNode):
            raise self.error(f"expected a signal as the first argument of {name}()", sig_token)
        if not isinstance(seconds, Literal) or isinstance(seconds.value, bool):
            raise self.error(
                f"expected a number of seconds as the second argument of {name}()", sec_token
            )
        if seconds.value <= 0:
            raise self.error(f"the window of {name}() must be positive", sec_token)
        if seconds.value > MAX_WINDOW_S:
            raise self.error(
                f"the window of {name}() is {seconds.value:g} s, longer than the "
                f"{MAX_WINDOW_S:g} s limit",
                sec_token,
            )
        self.windows.setdefault((name, signal.name, float(seconds.value)))
        return WindowNode(func.pos, name, signal.name, float(seconds.value))


# ---------------------------------------------------------------- evaluation


class NoData(Exception):
    """A window function was evaluated over an empty window."""


class WindowFunctions(Protocol):
    """The samples of one signal over a span of CAN time (the collector keeps them).

    Each method drops what is older than the span at ``now_us`` and raises
    :class:`NoData` when nothing is left.
    """

    def min(self, now_us: int) -> float: ...

    def max(self, now_us: int) -> float: ...

    def avg(self, now_us: int) -> float: ...


def compile_condition(
    expression: Expression,
    index_of: Mapping[SignalName, int],
    values: MutableSequence[float],
    window: Callable[[int, float, str], WindowFunctions],
) -> Condition:
    """Turn a parsed condition into one closure taking the CAN time in µs.

    ``index_of`` maps every name in ``expression.signals`` to its catalog index;
    ``values[index]`` holds the latest value of each signal (the caller checks
    that every referenced signal has one before evaluating); ``window(index,
    seconds, func)`` returns the samples of that signal over that span, with
    ``func`` maintained.

    The closure returns False instead of raising on a division by zero or an
    empty window (see the module docstring).
    """
    root = _compile_bool(expression.root, (index_of, values, window))

    def condition(now: int) -> bool:
        try:
            return root(now)
        except (ZeroDivisionError, NoData):
            return False

    return condition


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITHMETIC_OPS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
_Env = tuple[
    Mapping[SignalName, int], MutableSequence[float], Callable[[int, float, str], WindowFunctions]
]


def _compile_bool(node: Node, env: _Env) -> _Bool:
    if isinstance(node, Literal):
        constant = bool(node.value)
        return lambda now: constant
    if isinstance(node, Unary):
        inner = _compile_bool(node.operand, env)
        return lambda now: not inner(now)
    assert isinstance(node, Binary), node
    op = node.op
    if op == "and":
        a, b = _compile_bool(node.left, env), _compile_bool(node.right, env)
        return lambda now: a(now) and b(now)
    if op == "or":
        a, b = _compile_bool(node.left, env), _compile_bool(node.right, env)
        return lambda now: a(now) or b(now)
    if _type(node.left) == _CONDITION:  # == or != between two conditions
        p, q = _compile_bool(node.left, env), _compile_bool(node.right, env)
        if op == "==":
            return lambda now: p(now) == q(now)
        return lambda now: p(now) != q(now)
    return _compile_comparison(op, node.left, node.right, env)


def _compile_comparison(op: str, left: Node, right: Node, env: _Env) -> _Bool:
    compare = _COMPARE[op]
    index_of, values, _ = env
    # The common shape "Signal <op> number" reads the value list directly: one
    # closure call per evaluation instead of three.
    if isinstance(left, SignalNode) and isinstance(right, Literal):
        i, c = index_of[left.name], float(right.value)
        return lambda now: compare(values[i], c)
    a, b = _compile_num(left, env), _compile_num(right, env)
    return lambda now: compare(a(now), b(now))


def _compile_num(node: Node, env: _Env) -> _Num:
    index_of, values, window = env
    if isinstance(node, Literal):
        constant = float(node.value)
        return lambda now: constant
    if isinstance(node, SignalNode):
        i = index_of[node.name]
        return lambda now: values[i]
    if isinstance(node, WindowNode):
        w = window(index_of[node.signal], node.seconds, node.func)
        if node.func == "min":
            return w.min
        if node.func == "max":
            return w.max
        return w.avg
    if isinstance(node, Call):
        arg = _compile_num(node.arg, env)
        return lambda now: abs(arg(now))
    if isinstance(node, Unary):
        inner = _compile_num(node.operand, env)
        return lambda now: -inner(now)
    assert isinstance(node, Binary), node
    a, b = _compile_num(node.left, env), _compile_num(node.right, env)
    # operator.truediv and operator.mod raise ZeroDivisionError like "/" and "%".
    arithmetic = _ARITHMETIC_OPS[node.op]
    return lambda now: arithmetic(a(now), b(now))
