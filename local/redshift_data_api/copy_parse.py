"""Parse a Redshift ``COPY ... FROM 's3://...'`` statement into a :class:`CopyCommand`."""

from __future__ import annotations

from dataclasses import dataclass

from local.redshift_data_api.errors import RedshiftSqlError
from local.redshift_data_api.lexer import Kind, LexError, Token, string_value, tokenize

# Options accepted and ignored: they tune Redshift internals, not what gets loaded.
_IGNORED_FLAGS = ("ACCEPTANYDATE", "FILLRECORD", "TRIMBLANKS", "ROUNDEC", "EXPLICIT_IDS")
_IGNORED_WITH_VALUE = ("COMPUPDATE", "STATUPDATE", "MAXERROR", "COMPROWS")


@dataclass
class CopyCommand:
    table: str  # quoted, e.g. "s"."t"
    table_label: str  # for error texts, e.g. s.t
    columns: list[str] | None
    source: str
    fmt: str = "TEXT"  # JSON | CSV | PARQUET | TEXT (pipe-delimited: not supported)
    json_ignorecase: bool = False
    delimiter: str | None = None
    quote: str = '"'
    ignore_header: int = 0
    compression: str | None = None  # GZIP | BZIP2
    null_as: str | None = None
    manifest: bool = False
    region: str | None = None
    truncate_columns: bool = False
    blanks_as_null: bool = False
    empty_as_null: bool = False
    ignore_blank_lines: bool = False


def _err(message: str) -> RedshiftSqlError:
    return RedshiftSqlError(f"ERROR: {message}")


class _Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.k = 0

    def peek(self) -> Token | None:
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise _err("syntax error at end of input")
        self.k += 1
        return tok

    def take_word(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.is_word(*words):
            self.k += 1
            return True
        return False

    def string(self, option: str) -> str:
        self.take_word("AS")
        tok = self.take()
        if tok.kind is not Kind.STRING:
            raise _err(f'syntax error at or near "{tok.text}" ({option} takes a quoted string)')
        return string_value(tok.text)

    def integer(self, option: str) -> int:
        self.take_word("AS")
        tok = self.take()
        if tok.kind is not Kind.NUMBER or not tok.text.isdigit():
            raise _err(f'syntax error at or near "{tok.text}" ({option} takes an integer)')
        return int(tok.text)


def _ident(tok: Token) -> str:
    """The identifier's name; quoted ones are folded to lower case too, as on Redshift."""
    name = tok.text[1:-1].replace('""', '"') if tok.kind is Kind.IDENT else tok.text
    return name.lower()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'



def _table_and_columns(cur: _Cursor) -> tuple[str, str, list[str] | None]:
    parts = [cur.take()]
    while cur.peek() is not None and cur.peek().is_op("."):  # type: ignore[union-attr]
        cur.take()
        parts.append(cur.take())
    for tok in parts:
        if tok.kind not in (Kind.WORD, Kind.IDENT):
            raise _err(f'syntax error at or near "{tok.text}"')
    table = ".".join(_quoted(_ident(t)) for t in parts)
    label = ".".join(_ident(t) for t in parts)
    columns: list[str] | None = None
    nxt = cur.peek()
    if nxt is not None and nxt.is_op("("):
        cur.take()
        columns = []
        while True:
            tok = cur.take()
            if tok.kind not in (Kind.WORD, Kind.IDENT):
                raise _err(f'syntax error at or near "{tok.text}"')
            columns.append(_ident(tok))
            sep = cur.take()
            if sep.is_op(")"):
                break
            if not sep.is_op(","):
                raise _err(f'syntax error at or near "{sep.text}"')
    return table, label, columns


def _format(cur: _Cursor, cmd: CopyCommand, word: str) -> None:
    if word == "JSON":
        cmd.fmt = "JSON"
        nxt = cur.peek()
        if nxt is not None and (nxt.kind is Kind.STRING or nxt.is_word("AS")):
            spec = cur.string("JSON").strip().lower()
            if spec not in ("auto", "auto ignorecase"):
                raise _err(
                    "JSON jsonpaths files are not supported by the stand-in; use 'auto' or "
                    "'auto ignorecase'"
                )
            cmd.json_ignorecase = spec == "auto ignorecase"
        else:
            raise _err("syntax error at or near \"JSON\" (JSON needs 'auto' or a jsonpaths file)")
    elif word == "CSV":
        cmd.fmt = "CSV"
        if cur.take_word("QUOTE"):
            cmd.quote = cur.string("QUOTE")
    elif word == "PARQUET":
        cmd.fmt = "PARQUET"
    else:
        raise _err(f"COPY format {word} is not supported by the stand-in")


def _option(cur: _Cursor, cmd: CopyCommand, seen_auth: list[bool]) -> None:
    tok = cur.take()
    word = tok.upper if tok.kind is Kind.WORD else ""
    if word == "IAM_ROLE":
        if not cur.take_word("DEFAULT"):
            cur.string("IAM_ROLE")
        seen_auth.append(True)
    elif word in ("CREDENTIALS", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"):
        cur.string(word)
        seen_auth.append(True)
    elif word == "FORMAT":
        cur.take_word("AS")
        fmt = cur.take()
        _format(cur, cmd, fmt.upper)
    elif word in ("JSON", "CSV", "PARQUET", "AVRO", "ORC", "FIXEDWIDTH", "SHAPEFILE"):
        _format(cur, cmd, word)
    elif word == "DELIMITER":
        cmd.delimiter = cur.string(word)
    elif word == "QUOTE":
        cmd.quote = cur.string(word)
    elif word == "IGNOREHEADER":
        cmd.ignore_header = cur.integer(word)
    elif word in ("GZIP", "BZIP2"):
        cmd.compression = word
    elif word in ("ZSTD", "LZOP"):
        raise _err(f"{word} compression is not supported by the stand-in")
    elif word == "NULL":
        cmd.null_as = cur.string("NULL AS")
    elif word in ("TIMEFORMAT", "DATEFORMAT"):
        cur.string(word)  # PostgreSQL's input functions read the usual formats
    elif word == "MANIFEST":
        cmd.manifest = True
    elif word == "REGION":
        cmd.region = cur.string(word)
    elif word == "TRUNCATECOLUMNS":
        cmd.truncate_columns = True
    elif word == "BLANKSASNULL":
        cmd.blanks_as_null = True
    elif word == "EMPTYASNULL":
        cmd.empty_as_null = True
    elif word == "IGNOREBLANKLINES":
        cmd.ignore_blank_lines = True
    elif word == "ACCEPTINVCHARS":
        nxt = cur.peek()
        if nxt is not None and (nxt.is_word("AS") or nxt.kind is Kind.STRING):
            cur.string(word)
    elif word in _IGNORED_FLAGS:
        pass
    elif word in _IGNORED_WITH_VALUE:
        cur.take_word("AS")
        cur.take()
    else:
        raise _err(f'syntax error at or near "{tok.text}"')


def parse_copy(sql: str) -> CopyCommand:
    """Parse ``sql``; raise :class:`RedshiftSqlError` for what Redshift (or we) reject."""
    try:
        tokens = [t for t in tokenize(sql) if t.significant]
    except LexError as exc:
        raise _err(str(exc)) from None
    while tokens and tokens[-1].is_op(";"):
        tokens.pop()
    cur = _Cursor(tokens)
    if not cur.take_word("COPY"):
        raise _err("not a COPY statement")
    table, label, columns = _table_and_columns(cur)
    if not cur.take_word("FROM"):
        raise _err(f'syntax error at or near "{cur.take().text}"')
    src = cur.take()
    if src.kind is not Kind.STRING:
        raise _err(f'syntax error at or near "{src.text}"')
    source = string_value(src.text)
    if not source.startswith("s3://"):
        raise _err("the stand-in only supports COPY from 's3://...'")
    cmd = CopyCommand(table=table, table_label=label, columns=columns, source=source)
    seen_auth: list[bool] = []
    cur.take_word("WITH")
    while cur.peek() is not None:
        _option(cur, cmd, seen_auth)
    if not seen_auth:
        raise _err(
            "Invalid credentials. Must be of the format: credentials 'aws_iam_role=...' or "
            "'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'"
        )
    if cmd.fmt == "TEXT":
        raise _err(
            "the stand-in supports COPY with FORMAT JSON, CSV or PARQUET only (not the "
            "default pipe-delimited text)"
        )
    return cmd
