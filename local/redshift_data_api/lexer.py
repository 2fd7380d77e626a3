"""A small SQL tokenizer that follows Redshift's lexical rules.

Everything that rewrites or inspects SQL text (parameter binding, the grammar check, the
DDL translation, the COPY parser) works on these tokens so that it never touches the inside
of a string literal, a quoted identifier or a comment.

Redshift lexes string literals like PostgreSQL 8.0 with ``standard_conforming_strings`` off:
a backslash escapes the next character and ``''`` is a quote, so ``'O''Brien\\\\'`` is the
text ``O'Brien\\``. The tokenizer also recognises syntax Redshift does not have (dollar
quoting, ``$1`` placeholders) so that the grammar check can reject it precisely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    WS = "ws"
    COMMENT = "comment"
    STRING = "string"  # '...'
    IDENT = "ident"  # "..."
    WORD = "word"  # keyword or unquoted identifier
    NUMBER = "number"
    PARAM = "param"  # :name (Data API named parameter)
    POSITIONAL = "positional"  # $1 (PostgreSQL only)
    DOLLAR_QUOTE = "dollar_quote"  # $tag$...$tag$ (PostgreSQL, and Redshift UDF bodies)
    OP = "op"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_word(self, *words: str) -> bool:
        return self.kind is Kind.WORD and self.text.upper() in words

    def is_op(self, *ops: str) -> bool:
        return self.kind is Kind.OP and self.text in ops

    @property
    def significant(self) -> bool:
        return self.kind not in (Kind.WS, Kind.COMMENT)


class LexError(ValueError):
    """The SQL text cannot be tokenized (an unterminated literal or comment)."""


_WS = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_PARAM = re.compile(r":[0-9A-Za-z_]+")
_POSITIONAL = re.compile(r"\$\d+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_OPERATORS = ("::", "<=", ">=", "<>", "!=", "||")


def _string_end(sql: str, start: int) -> int:
    """Index just past the single-quoted literal starting at ``start``."""
    i = start + 1
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            if i + 1 < n and sql[i + 1] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    raise LexError(f'unterminated quoted string at or near "{sql[start:start + 20]}"')


def _quoted_ident_end(sql: str, start: int) -> int:
    i = start + 1
    while True:
        j = sql.find('"', i)
        if j < 0:
            raise LexError(f'unterminated quoted identifier at or near "{sql[start:start + 20]}"')
        if sql.startswith('""', j):
            i = j + 2
            continue
        return j + 1


def _block_comment_end(sql: str, start: int) -> int:
    depth = 0
    i = start
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise LexError("unterminated /* comment")


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens; concatenating their texts gives ``sql`` back."""
    tokens: list[Token] = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        kind: Kind
        if c.isspace():
            m = _WS.match(sql, i)
            assert m is not None
            end, kind = m.end(), Kind.WS
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            end, kind = (n if j < 0 else j), Kind.COMMENT
        elif sql.startswith("/*", i):
            end, kind = _block_comment_end(sql, i), Kind.COMMENT
        elif c == "'":
            end, kind = _string_end(sql, i), Kind.STRING
        elif c == '"':
            end, kind = _quoted_ident_end(sql, i), Kind.IDENT
        elif c == "$":
            if m := _POSITIONAL.match(sql, i):
                end, kind = m.end(), Kind.POSITIONAL
            elif m := _DOLLAR_TAG.match(sql, i):
                close = sql.find(m.group(0), m.end())
                if close < 0:
                    raise LexError(f'unterminated dollar-quoted string at or near "{m.group(0)}"')
                end, kind = close + len(m.group(0)), Kind.DOLLAR_QUOTE
            else:
                end, kind = i + 1, Kind.OP
        elif c == ":" and not sql.startswith("::", i) and (m := _PARAM.match(sql, i)):
            end, kind = m.end(), Kind.PARAM
        elif m := _WORD.match(sql, i):
            end, kind = m.end(), Kind.WORD
        elif (c.isdigit() or (c == "." and i + 1 < n and sql[i + 1].isdigit())) and (
            m := _NUMBER.match(sql, i)
        ):
            end, kind = m.end(), Kind.NUMBER
        else:
            op = next((o for o in _OPERATORS if sql.startswith(o, i)), c)
            end, kind = i + len(op), Kind.OP
        tokens.append(Token(kind, sql[i:end], i))
        i = end
    return tokens


def significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.significant]


def top_level_word(tokens: list[Token], *words: str) -> int | None:
    """Index of the first of ``words`` outside any parentheses, or None."""
    depth = 0
    for k, tok in enumerate(tokens):
        if tok.is_op("("):
            depth += 1
        elif tok.is_op(")"):
            depth -= 1
        elif depth == 0 and tok.is_word(*words):
            return k
    return None


def split_statements(tokens: list[Token]) -> list[list[Token]]:
    """Split at top-level semicolons; statements with no significant token are dropped."""
    statements: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.is_op(";"):
            statements.append([])
        else:
            statements[-1].append(tok)
    return [s for s in statements if any(t.significant for t in s)]


def string_value(literal: str) -> str:
    """The text a Redshift string literal token denotes (``'a''b\\\\c'`` -> ``a'b\\c``)."""
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        elif c == "'" and body.startswith("''", i):
            out.append("'")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def quote_literal(value: str) -> str:
    """A Redshift string literal for ``value`` (like Redshift's QUOTE_LITERAL)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def join(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens)
