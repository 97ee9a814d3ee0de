"""The condition language of protocols: `when` on any step, `until` on repeats.

Parsed by a hand-written tokenizer and recursive-descent parser (never Python's eval), into a tree of
plain JSON-able dicts that the execution plan stores. `evaluate` runs inside the Temporal workflow
sandbox, so this module imports only the standard library and is deterministic.

Grammar (lowest precedence first)::

    condition  := and_cond ("or" and_cond)*
    and_cond   := not_cond ("and" not_cond)*
    not_cond   := "not" not_cond | "(" condition ")" | comparison
    comparison := operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | ["not"] "in" "[" literal ("," literal)* "]" ]
    operand    := literal | step_key "." field_key
    literal    := number | "string" | 'string' | true | false | null

Tree nodes (`op` names the kind):

    {"op": "lit", "value": "text" | true | false | null}
    {"op": "num", "value": "7.5"}                  number as canonical decimal text (exact)
    {"op": "ref", "step": "culture", "field": "od600"}   the compiler adds "type": <field type>
    {"op": "==", "left": node, "right": node}       also != < <= > >=
    {"op": "in", "left": node, "items": [literal nodes]}   also "not in"
    {"op": "and" | "or", "args": [node, node, ...]}
    {"op": "not", "arg": node}

Null semantics: a missing value (step skipped, field left empty, not reached yet) is null. Every
comparison with a null operand is false, except `x == null` / `x != null`, which test whether a value is
missing. `x in [...]` and `x not in [...]` are both false when x is null. A bare reference is true only
when its value is the boolean true. Inside a repeat, a reference reads the latest iteration's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Context, Decimal, InvalidOperation
from typing import Any

Expr = dict[str, Any]

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
NUMERIC_TYPES = frozenset({"number", "integer"})

MAX_SOURCE_LENGTH = 1000
MAX_DEPTH = 32  # nested parentheses / `not`; keeps the parser's recursion far from Python's limit

_WIDE = Context(prec=60)  # normalize without rounding any number a form or condition accepts
_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


class ExpressionError(ValueError):
    """A condition that cannot be parsed; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


def decimal_text(value: Decimal) -> str:
    """Canonical decimal text: no exponent, no trailing zeros, no negative zero ("7.50" -> "7.5")."""
    if value == 0:
        return "0"
    return format(value.normalize(_WIDE), "f")


def decimal_places(value: Decimal) -> int:
    """Decimal places the value needs: 7.50 -> 1, 7 -> 0, 1E+2 -> 0."""
    exponent = value.normalize(_WIDE).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


# --- tokenizer ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>[0-9]+(?:\.[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|-)
    """,
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'"}


class _Token:
    __slots__ = ("kind", "text", "pos")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind, self.text, self.pos = kind, text, pos


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            if source[pos] in "\"'":
                raise ExpressionError("unterminated string", pos)
            raise ExpressionError(f"unexpected character {source[pos]!r}", pos)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


def _unquote(token: _Token) -> str:
    body, out, i = token.text[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            escaped = body[i + 1]
            if escaped not in _ESCAPES:
                raise ExpressionError(f"unknown escape '\\{escaped}' in string", token.pos + i + 1)
            out.append(_ESCAPES[escaped])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def _is(self, text: str) -> bool:
        return self.token.kind in ("name", "punct") and self.token.text == text

    def _take(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def _expect(self, text: str) -> None:
        if not self._is(text):
            raise ExpressionError(f"expected '{text}', found {_describe(self.token)}", self.token.pos)
        self._take()

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep", self.token.pos)

    def parse(self) -> Expr:
        tree = self.condition()
        if self.token.kind != "end":
            raise ExpressionError(f"expected 'and', 'or' or the end, found {_describe(self.token)}", self.token.pos)
        return tree

    def condition(self) -> Expr:
        return self._chain("or", self.and_condition)

    def and_condition(self) -> Expr:
        return self._chain("and", self.not_condition)

    def _chain(self, op: str, parse_part: Callable[[], Expr]) -> Expr:
        args = [parse_part()]
        while self._is(op):
            self._take()
            args.append(parse_part())
        return args[0] if len(args) == 1 else {"op": op, "args": args}

    def not_condition(self) -> Expr:
        if self._is("not"):
            self._take()
            self._nest()
            arg = self.not_condition()
            self.depth -= 1
            return {"op": "not", "arg": arg}
        if self._is("("):
            self._take()
            self._nest()
            inner = self.condition()
            self._expect(")")
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        if self.token.kind == "punct" and self.token.text in COMPARISONS:
            op = self._take().text
            return {"op": op, "left": left, "right": self.operand()}
        if self._is("in") or self._is("not"):
            op = "in" if self._take().text == "in" else "not in"
            if op == "not in":
                self._expect("in")
            return {"op": op, "left": left, "items": self.literal_list()}
        return left

    def literal_list(self) -> list[Expr]:
        self._expect("[")
        items = [self.list_item()]
        while self._is(","):
            self._take()
            items.append(self.list_item())
        self._expect("]")
        return items

    def list_item(self) -> Expr:
        start = self.token
        item = self.operand()
        if item["op"] == "ref":
            raise ExpressionError("a list holds literals only", start.pos)
        if item["op"] == "lit" and item["value"] is None:
            raise ExpressionError("null cannot be in a list (use '== null')", start.pos)
        return item

    def operand(self) -> Expr:
        token = self.token
        if token.kind == "num" or self._is("-"):
            return self.number()
        if token.kind == "str":
            self._take()
            return {"op": "lit", "value": _unquote(token)}
        if token.kind == "name":
            self._take()
            if token.text in ("true", "false", "null"):
                return {"op": "lit", "value": {"true": True, "false": False, "null": None}[token.text]}
            if token.text in KEYWORDS:
                raise ExpressionError(f"expected a value, found '{token.text}'", token.pos)
            self._expect(".")
            field = self.token
            if field.kind != "name" or field.text in KEYWORDS:
                raise ExpressionError(f"expected a field key after '{token.text}.'", field.pos)
            self._take()
            return {"op": "ref", "step": token.text, "field": field.text}
        raise ExpressionError(f"expected a value, found {_describe(token)}", token.pos)

    def number(self) -> Expr:
        sign = ""
        if self._is("-"):
            self._take()
            sign = "-"
        if self.token.kind != "num":
            raise ExpressionError(f"expected a number, found {_describe(self.token)}", self.token.pos)
        return {"op": "num", "value": decimal_text(Decimal(sign + self._take().text))}


def _describe(token: _Token) -> str:
    return "the end" if token.kind == "end" else f"'{token.text}'"


def parse(source: str) -> Expr:
    """Parse a condition into its tree; raises ExpressionError (with a position) on any mistake."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"longer than {MAX_SOURCE_LENGTH} characters", MAX_SOURCE_LENGTH)
    if not source.strip():
        raise ExpressionError("empty condition", 0)
    return _Parser(source).parse()


# --- evaluation --------------------------------------------------------------------------------


def evaluate(tree: Mapping[str, Any], values: Mapping[str, Mapping[str, object]]) -> bool:
    """Evaluate a condition against the form values so far: {step_key: {field_key: value}}.

    Values may be typed (int, Decimal, float, bool, str) or normalized (numbers as decimal text):
    a reference the compiler typed as number/integer reads decimal text as a number.
    """
    op = tree["op"]
    if op == "or":
        return any(evaluate(arg, values) for arg in tree["args"])
    if op == "and":
        return all(evaluate(arg, values) for arg in tree["args"])
    if op == "not":
        return not evaluate(tree["arg"], values)
    if op in ("in", "not in"):
        left = _value(tree["left"], values)
        if left is None:
            return False
        found = any(_equal(left, _value(item, values)) for item in tree["items"])
        return found if op == "in" else not found
    if op in COMPARISONS:
        return _compare(op, tree["left"], tree["right"], values)
    if op in ("ref", "lit", "num"):
        return _value(tree, values) is True
    raise ValueError(f"not a condition node: {op!r}")


def _compare(op: str, left_node: Mapping[str, Any], right_node: Mapping[str, Any], values: Any) -> bool:
    left, right = _value(left_node, values), _value(right_node, values)
    if op in ("==", "!=") and (_is_null_literal(left_node) or _is_null_literal(right_node)):
        other = right if _is_null_literal(left_node) else left
        return (other is None) == (op == "==")
    if left is None or right is None:
        return False
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if not (isinstance(left, Decimal) and isinstance(right, Decimal)):
        return False  # ordering is defined for numbers only
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _is_null_literal(node: Mapping[str, Any]) -> bool:
    return node["op"] == "lit" and node["value"] is None


def _equal(left: object, right: object) -> bool:
    # Same kind only: true is not 1, "5" is not 5 (unless the compiler typed the field numeric).
    return type(left) is type(right) and left == right


def _value(node: Mapping[str, Any], values: Mapping[str, Mapping[str, object]]) -> object:
    op = node["op"]
    if op == "num":
        return Decimal(node["value"])
    if op == "lit":
        return node["value"]
    if op != "ref":
        raise ValueError(f"not an operand node: {op!r}")
    step_values = values.get(node["step"])
    raw = step_values.get(node["field"]) if isinstance(step_values, Mapping) else None
    if isinstance(raw, bool) or raw is None:
        return raw
    if isinstance(raw, int | float | Decimal) or (node.get("type") in NUMERIC_TYPES and isinstance(raw, str)):
        return read_number(raw)
    return raw if isinstance(raw, str) else None  # anything else cannot be compared: treat as missing


def read_number(raw: int | float | Decimal | str) -> Decimal | None:
    """A finite Decimal from a number or decimal text (floats via their shortest repr); else None."""
    if isinstance(raw, str):
        if _NUMBER_TEXT.fullmatch(raw.strip()) is None:
            return None
        raw = raw.strip()
    try:
        number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# --- inspection --------------------------------------------------------------------------------


def references(tree: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every `ref` node in the tree, in source order."""
    op = tree["op"]
    if op == "ref":
        return [tree]
    if op in ("and", "or"):
        return [ref for arg in tree["args"] for ref in references(arg)]
    if op == "not":
        return references(tree["arg"])
    if op in COMPARISONS:
        return references(tree["left"]) + references(tree["right"])
    if op in ("in", "not in"):
        return references(tree["left"])
    return []


def to_source(tree: Mapping[str, Any]) -> str:
    """Render a tree back to condition text; parse(to_source(t)) == t for parsed trees."""
    op = tree["op"]
    if op in ("and", "or"):
        return f" {op} ".join(_grouped(arg) for arg in tree["args"])
    if op == "not":
        return f"not {_grouped(tree['arg'])}"
    if op in COMPARISONS:
        return f"{to_source(tree['left'])} {op} {to_source(tree['right'])}"
    if op in ("in", "not in"):
        items = ", ".join(to_source(item) for item in tree["items"])
        return f"{to_source(tree['left'])} {op} [{items}]"
    if op == "ref":
        return f"{tree['step']}.{tree['field']}"
    if op == "num":
        return str(tree["value"])
    value = tree["value"]
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _grouped(tree: Mapping[str, Any]) -> str:
    text = to_source(tree)
    return f"({text})" if tree["op"] in ("and", "or") else text
