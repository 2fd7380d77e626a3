"""Rewrite Redshift SQL into PostgreSQL 15 SQL with the same effect.

Only what PostgreSQL lacks is rewritten, always on tokens so string literals are never
touched:

- table and column attributes that only matter to Redshift's storage are dropped:
  ``DISTSTYLE``, ``DISTKEY``, ``[COMPOUND|INTERLEAVED] SORTKEY``, ``SORTKEY AUTO``,
  ``ENCODE``, ``BACKUP``; ``ALTER TABLE ... ALTER DISTKEY|SORTKEY|DISTSTYLE|ENCODE`` and
  ``VACUUM`` become no-ops;
- types: ``VARCHAR(MAX)`` -> ``VARCHAR(65535)``, ``NVARCHAR``/``NCHAR`` -> ``VARCHAR``/``CHAR``;
  in DDL, a ``VARCHAR``/``TEXT`` without length is ``VARCHAR(256)`` and a ``DECIMAL`` without
  precision is ``NUMERIC(18,0)``, as on Redshift (so too-long or fractional values behave as
  they would there); table columns of ``VARCHAR(n)`` use the domain ``public.rs_varchar_<n>``
  (created on demand by the executor) that also limits the value to n UTF-8 bytes;
- quoted identifiers are folded to lower case, as Redshift does by default
  (``enable_case_sensitive_identifier`` off);
- PRIMARY KEY, UNIQUE and FOREIGN KEY constraints are dropped: Redshift does not enforce
  them, so duplicates must be possible here too;
- ``IDENTITY(seed, step)`` -> a PostgreSQL identity column (``GENERATED ALWAYS``, because
  Redshift refuses explicit values for an IDENTITY column too);
- ``SUPER`` is ``jsonb`` and ``JSON_PARSE(x)`` a cast to it (reported as ``super``);
- ``VARBYTE``/``VARBINARY``/``BINARY VARYING`` ``[(n)]`` is ``bytea``; table columns use the
  domain ``public.rs_varbyte_<n>`` that holds at most n bytes (n defaults to 64,000, as on
  Redshift: "VARBYTE type"); ``FROM_HEX(x)`` -> ``decode(x, 'hex')``; ``TIME`` is PostgreSQL's;
- functions: ``GETDATE()`` (statement time, whole seconds, ``timestamp``), ``SYSDATE``
  (transaction start, ``timestamp``), ``NVL(`` -> ``COALESCE(``, ``LEN(`` -> ``LENGTH(``,
  ``QUOTE_LITERAL(x)`` (Redshift's never returns PostgreSQL's ``E'...'`` form);
- ``MERGE ... REMOVE DUPLICATES`` -> ``DELETE ... USING`` + ``INSERT ... SELECT *``;
- SUPER navigation ``alias.column.attribute`` (PartiQL dot notation; the first name is not a
  schema) -> ``(alias.column -> 'attribute')``, and ``->>`` (the unquoted text, as Redshift's
  cast of a SUPER string to VARCHAR gives) when the value is cast to VARCHAR/CHAR;
  ``LISTAGG(`` -> ``string_agg(``, ``TO_VARBYTE(`` -> ``decode(`` (hex, base64);
- the body of ``CREATE PROCEDURE ... AS $$ ... $$`` is translated the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from local.redshift_data_api.lexer import Kind, Token, split_statements, tokenize, top_level_word

Schemas = Callable[[], frozenset[str]]

_DDL_START = ("CREATE", "ALTER")
_DIST_STYLES = ("ALL", "EVEN", "KEY", "AUTO")
# Table columns of VARCHAR(n) get the domain public.rs_varchar_<n>: a VARCHAR(n) that also
# holds at most n bytes, as Redshift measures VARCHAR lengths in bytes, not characters.
BYTES_DOMAIN = "rs_varchar_"
# Table columns of VARBYTE(n) get the domain public.rs_varbyte_<n>: a bytea of at most n bytes.
VARBYTE_DOMAIN = "rs_varbyte_"
VARBYTE_DEFAULT_LENGTH = 64000
_GETDATE = "CAST(date_trunc('second', statement_timestamp()) AS timestamp)"
# Redshift's QUOTE_LITERAL doubles quotes and backslashes; PostgreSQL's would return E'...'.
_QUOTE_LITERAL = (
    "(chr(39) || replace(replace(({arg})::text, chr(92), chr(92) || chr(92)), chr(39), "
    "chr(39) || chr(39)) || chr(39))"
)


def _next_sig(tokens: list[Token], i: int) -> int | None:
    for j in range(i + 1, len(tokens)):
        if tokens[j].significant:
            return j
    return None


def _prev_sig(tokens: list[Token], i: int) -> int | None:
    for j in range(i - 1, -1, -1):
        if tokens[j].significant:
            return j
    return None


def matching_paren(tokens: list[Token], i: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``i`` (or the last index if unbalanced)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].is_op("("):
            depth += 1
        elif tokens[j].is_op(")"):
            depth -= 1
            if depth == 0:
                return j
    return len(tokens) - 1


def _tok(tokens: list[Token], i: int | None) -> Token | None:
    return None if i is None else tokens[i]


def strip_attributes(tokens: list[Token]) -> list[Token]:
    """Drop Redshift-only storage attributes from a CREATE/ALTER statement's tokens."""
    sig = [t for t in tokens if t.significant]
    if not sig or not sig[0].is_word(*_DDL_START):
        return tokens
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        j = _next_sig(tokens, i)
        nxt = _tok(tokens, j)
        skip_to: int | None = None  # index of the last token to drop
        if tok.kind is Kind.WORD and nxt is not None and j is not None:
            word = tok.upper
            if word == "DISTSTYLE" and nxt.is_word(*_DIST_STYLES):
                skip_to = j
            elif word in ("DISTKEY", "SORTKEY") and nxt.is_op("("):
                skip_to = matching_paren(tokens, j)
            elif word == "SORTKEY" and nxt.is_word("AUTO"):
                skip_to = j
            elif word in ("COMPOUND", "INTERLEAVED") and nxt.is_word("SORTKEY"):
                skip_to = i
            elif (word == "ENCODE" and nxt.kind is Kind.WORD) or (
                word == "BACKUP" and nxt.is_word("YES", "NO")
            ):
                skip_to = j
        if tok.is_word("DISTKEY", "SORTKEY") and skip_to is None:
            skip_to = i  # column attribute: "id INT DISTKEY SORTKEY"
        if skip_to is None:
            out.append(tok)
            i += 1
        else:
            i = skip_to + 1
    return out


def _column_list(tokens: list[Token]) -> tuple[int, int] | None:
    """Indexes of the parentheses around CREATE TABLE's column list, if it has one."""
    sig = [k for k, t in enumerate(tokens) if t.significant]
    words = [tokens[k] for k in sig]
    try:
        at = next(n for n, t in enumerate(words[:6]) if t.is_word("TABLE"))
    except StopIteration:
        return None
    if not words[0].is_word("CREATE"):
        return None
    n = at + 1
    if n + 2 < len(words) and words[n].is_word("IF"):
        n += 3  # IF NOT EXISTS
    n += 1  # table name
    while n + 1 < len(words) and words[n].is_op("."):
        n += 2
    if n >= len(words) or not words[n].is_op("("):
        return None
    return sig[n], matching_paren(tokens, sig[n])


def _skip_reference(element: list[Token], name_at: int) -> int:
    """Index just past ``name[.name] [(cols)]`` whose first part is at ``name_at``."""
    last = name_at
    while (dot := _next_sig(element, last)) is not None and element[dot].is_op("."):
        last = _next_sig(element, dot) or dot
    after = _next_sig(element, last)
    if after is not None and element[after].is_op("("):
        return matching_paren(element, after) + 1
    return last + 1


def _column_constraint_free(element: list[Token]) -> list[Token]:
    out: list[Token] = []
    k = 0
    while k < len(element):
        tok = element[k]
        j = _next_sig(element, k)
        nxt = _tok(element, j)
        if tok.is_word("CONSTRAINT") and j is not None:
            k = j + 1  # the constraint's name; what follows is dropped (or kept) below
            continue
        if tok.is_word("PRIMARY") and nxt is not None and nxt.is_word("KEY") and j is not None:
            k = j + 1
            continue
        if tok.is_word("UNIQUE"):
            k += 1
            continue
        if tok.is_word("REFERENCES") and j is not None:
            k = _skip_reference(element, j)
            continue
        out.append(tok)
        k += 1
    return out


def strip_constraints(tokens: list[Token]) -> list[Token]:
    """Drop PRIMARY KEY, UNIQUE and FOREIGN KEY / REFERENCES from CREATE TABLE.

    Redshift accepts them but does not enforce them (they only inform the planner), so a
    duplicate key is stored, not refused; PostgreSQL would refuse it.
    """
    span = _column_list(tokens)
    if span is None:
        return tokens
    start, end = span
    elements: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens[start + 1:end]:
        if tok.is_op("("):
            depth += 1
        elif tok.is_op(")"):
            depth -= 1
        if depth == 0 and tok.is_op(","):
            elements.append([])
        else:
            elements[-1].append(tok)
    kept: list[list[Token]] = []
    for element in elements:
        sig = [t for t in element if t.significant]
        head = sig[2:] if sig and sig[0].is_word("CONSTRAINT") else sig
        if head and head[0].is_word("PRIMARY", "UNIQUE", "FOREIGN"):
            continue  # a table constraint
        kept.append(_column_constraint_free(element))
    comma = Token(Kind.OP, ",", -1)
    body = [tok for n, element in enumerate(kept) for tok in ([comma] if n else []) + element]
    return tokens[:start + 1] + body + tokens[end:]


def _is_alter_storage_only(sig: list[Token]) -> bool:
    """``ALTER TABLE t ALTER DISTKEY c`` and friends, which PostgreSQL has no notion of."""
    if len(sig) < 4 or not (sig[0].is_word("ALTER") and sig[1].is_word("TABLE")):
        return False
    words = [t.upper for t in sig]
    for k in range(2, len(sig) - 1):
        if words[k] == "ALTER" and words[k + 1] in (
            "DISTKEY", "DISTSTYLE", "SORTKEY", "COMPOUND", "INTERLEAVED", "ENCODE"
        ):
            return True
        if words[k] == "ALTER" and words[k + 1] == "COLUMN" and "ENCODE" in words[k + 2:]:
            return True
        # Informational constraints (see strip_constraints) come and go without effect.
        if words[k] == "ADD" and words[k + 1] in ("CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN"):
            return True
        if words[k] == "DROP" and words[k + 1] == "CONSTRAINT":
            return True
    return False


def _in_type_position(tokens: list[Token], i: int) -> bool:
    prev = _tok(tokens, _prev_sig(tokens, i))
    return prev is not None and (prev.kind in (Kind.WORD, Kind.IDENT) or prev.is_op("::"))


def _varchar(tokens: list[Token], i: int, j: int | None, ddl: bool,
             domains: bool) -> tuple[str, int]:
    """The PostgreSQL type for the VARCHAR-like type name at ``i``; the index after it."""
    nxt = _tok(tokens, j)
    if nxt is not None and nxt.is_op("(") and j is not None:
        close = matching_paren(tokens, j)
        inner = [t for t in tokens[j + 1:close] if t.significant]
        size = inner[0].upper if len(inner) == 1 else ""
        if size == "MAX":
            length = 65535
        elif size.isdigit():
            length = int(size)
        else:  # malformed: PostgreSQL reports it
            return "VARCHAR" + "".join(t.text for t in tokens[j:close + 1]), close + 1
        end = close + 1
    elif ddl:
        length, end = 256, i + 1
    else:
        return ("TEXT" if tokens[i].is_word("TEXT") else "VARCHAR"), i + 1
    if domains:
        return f"public.{BYTES_DOMAIN}{length}", end
    return f"VARCHAR({length})", end


def _varbyte(tokens: list[Token], i: int, j: int | None, ddl: bool,
             domains: bool) -> tuple[str, int]:
    """The PostgreSQL type for the VARBYTE-like type name ending at ``i``; the index after."""
    nxt = _tok(tokens, j)
    length, end = VARBYTE_DEFAULT_LENGTH, i + 1
    if nxt is not None and nxt.is_op("(") and j is not None:
        close = matching_paren(tokens, j)
        inner = [t for t in tokens[j + 1:close] if t.significant]
        if len(inner) != 1 or not inner[0].upper.isdigit():
            return "bytea" + "".join(t.text for t in tokens[j:close + 1]), close + 1
        length, end = int(inner[0].upper), close + 1
    if domains and ddl:
        return f"public.{VARBYTE_DOMAIN}{length}", end
    return "bytea", end


def _name_chain(tokens: list[Token], i: int) -> list[int]:
    """Indexes of the names of a dotted chain ``a.b.c...`` starting at ``i``."""
    names = [i]
    j = i
    while True:
        dot = _next_sig(tokens, j)
        if dot is None or not tokens[dot].is_op("."):
            return names
        name = _next_sig(tokens, dot)
        if name is None or tokens[name].kind not in (Kind.WORD, Kind.IDENT):
            return names
        names.append(name)
        j = name


def _name(tok: Token) -> str:
    return tok.text[1:-1].replace('""', '"').lower() if tok.kind is Kind.IDENT else tok.text.lower()


def _cast_to_text(tokens: list[Token], after: int | None) -> bool:
    """Whether the expression ending before ``after`` is cast to a character type
    (``CAST(x AS VARCHAR...)`` or ``x::VARCHAR``)."""
    first = _tok(tokens, after)
    if first is None or not (first.is_word("AS") or first.is_op("::")):
        return False
    assert after is not None
    kind = _tok(tokens, _next_sig(tokens, after))
    return kind is not None and kind.is_word("VARCHAR", "CHAR", "CHARACTER", "TEXT", "NVARCHAR",
                                             "BPCHAR", "NCHAR")


def _super_navigation(tokens: list[Token], i: int,
                      schemas: Schemas | None) -> tuple[str, int] | None:
    """``(a.b -> 'c' ...)`` for a chain ``a.b.c...`` whose first name is not a schema."""
    if schemas is None:
        return None
    prev = _tok(tokens, _prev_sig(tokens, i))
    if prev is not None and prev.is_op("."):
        return None
    chain = _name_chain(tokens, i)
    if len(chain) < 3 or _name(tokens[i]) in schemas():
        return None
    after = _next_sig(tokens, chain[-1])
    text = _name(tokens[chain[0]]) + "." + _name(tokens[chain[1]])
    for k, index in enumerate(chain[2:], start=3):
        arrow = "->>" if k == len(chain) and _cast_to_text(tokens, after) else "->"
        text = f"({text} {arrow} '{_name(tokens[index])}')"
    # A JSON null casts to NULL on Redshift; PostgreSQL refuses to cast jsonb null.
    return f"NULLIF({text}, 'null'::jsonb)" if arrow == "->" else text, chain[-1] + 1


# A CREATE TEMP TABLE ... AS statement of a procedure body, up to its ';' (the bodies the
# pipeline creates have no ';' inside a statement).
_NAME = r"(?:\"[^\"]+\"|\w+)"
_CTAS = re.compile(rf"(CREATE\s+TEMP(?:ORARY)?\s+TABLE\s+({_NAME}(?:\.{_NAME})?)\s+AS\s[^;]*;)",
                   re.IGNORECASE)


def _procedure_body(tok: Token, schemas: Schemas | None) -> str:
    """A dollar-quoted procedure body, translated. Each table a ``CREATE TEMP TABLE ... AS``
    makes is analyzed right after: Redshift keeps table statistics itself ("Analyzing tables",
    Amazon Redshift Database Developer Guide: the service updates them automatically), while
    PostgreSQL's autovacuum never sees temp tables, and a plan from no statistics turns the
    join of a few affected keys with a big replica into a scan of the replica."""
    tag_end = tok.text.index("$", 1) + 1
    tag = tok.text[:tag_end]
    inner = tok.text[tag_end:-tag_end]
    try:
        translated = _rewrite_types_and_functions(tokenize(inner), ddl=False, schemas=schemas)
    except ValueError:
        return tok.text
    return tag + _CTAS.sub(lambda m: f"{m.group(1)} ANALYZE {m.group(2)};", translated) + tag


def _rewrite_types_and_functions(tokens: list[Token], ddl: bool, domains: bool = False,
                                 schemas: Schemas | None = None) -> str:
    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.kind in (Kind.IDENT, Kind.WORD):
            navigation = _super_navigation(tokens, i, schemas)
            if navigation is not None:
                out.append(navigation[0])
                i = navigation[1]
                continue
        if tok.kind is Kind.DOLLAR_QUOTE:
            out.append(_procedure_body(tok, schemas))
            i += 1
            continue
        if tok.kind is Kind.IDENT:
            out.append(tok.text.lower())  # Redshift folds quoted identifiers too
            i += 1
            continue
        if tok.kind is not Kind.WORD:
            out.append(tok.text)
            i += 1
            continue
        word = tok.upper
        j = _next_sig(tokens, i)
        nxt = _tok(tokens, j)
        prev = _tok(tokens, _prev_sig(tokens, i))
        after_dot = prev is not None and prev.is_op(".")
        typed = _in_type_position(tokens, i)
        # CHARACTER VARYING is one type name spread over two words.
        if word == "CHARACTER" and nxt is not None and nxt.is_word("VARYING") and j is not None:
            word, i, typed = "VARCHAR", j, True
            j = _next_sig(tokens, i)
            nxt = _tok(tokens, j)
        if word in ("VARCHAR", "NVARCHAR", "TEXT") and typed and not after_dot:
            text, i = _varchar(tokens, i, j, ddl, domains)
            out.append(text)
            continue
        # BINARY VARYING is one type name spread over two words, as VARBYTE and VARBINARY.
        if word == "BINARY" and nxt is not None and nxt.is_word("VARYING") and j is not None:
            word, i, typed = "VARBYTE", j, True
            j = _next_sig(tokens, i)
            nxt = _tok(tokens, j)
        if word in ("VARBYTE", "VARBINARY") and typed and not after_dot:
            text, i = _varbyte(tokens, i, j, ddl, domains)
            out.append(text)
            continue
        if word == "FROM_HEX" and nxt is not None and nxt.is_op("(") and j is not None \
                and not after_dot:
            close = matching_paren(tokens, j)
            arg = _rewrite_types_and_functions(tokens[j + 1:close], ddl, domains, schemas)
            out.append(f"decode(({arg}), 'hex')")
            i = close + 1
            continue
        if word == "NCHAR" and typed:
            out.append("CHAR")
        elif word == "BPCHAR" and typed and ddl and not (nxt is not None and nxt.is_op("(")):
            out.append("CHAR(256)")
        elif word in ("DECIMAL", "NUMERIC") and typed and ddl and not (
            nxt is not None and nxt.is_op("(")
        ):
            out.append("NUMERIC(18,0)")
        elif word == "IDENTITY" and nxt is not None and nxt.is_op("(") and j is not None:
            close = matching_paren(tokens, j)
            args = "".join(t.text for t in tokens[j + 1:close]).split(",")
            seed, step = (args[0].strip(), args[1].strip()) if len(args) == 2 else ("1", "1")
            spec = f"IDENTITY (START WITH {seed} INCREMENT BY {step})"
            out.append(spec if prev is not None and prev.is_word("AS")
                       else "GENERATED ALWAYS AS " + spec)
            i = close + 1
            continue
        elif word == "GETDATE" and nxt is not None and nxt.is_op("(") and j is not None:
            close = matching_paren(tokens, j)
            out.append(_GETDATE)
            i = close + 1
            continue
        elif word == "QUOTE_LITERAL" and nxt is not None and nxt.is_op("(") and j is not None:
            close = matching_paren(tokens, j)
            arg = _rewrite_types_and_functions(tokens[j + 1:close], ddl, domains, schemas)
            out.append(_QUOTE_LITERAL.format(arg=arg))
            i = close + 1
            continue
        elif word == "JSON_PARSE" and nxt is not None and nxt.is_op("(") and j is not None:
            close = matching_paren(tokens, j)
            arg = _rewrite_types_and_functions(tokens[j + 1:close], ddl, domains, schemas)
            out.append(f"CAST(({arg}) AS jsonb)")
            i = close + 1
            continue
        elif word == "SUPER" and typed and not after_dot:
            out.append("jsonb")
        elif word == "SYSDATE" and not after_dot and not (nxt is not None and nxt.is_op("(")):
            out.append("LOCALTIMESTAMP")
        elif word == "NVL" and nxt is not None and nxt.is_op("(") and not after_dot:
            out.append("COALESCE")
        elif word == "LEN" and nxt is not None and nxt.is_op("(") and not after_dot:
            out.append("LENGTH")
        elif word == "LISTAGG" and nxt is not None and nxt.is_op("(") and not after_dot:
            out.append("string_agg")
        elif word == "TO_VARBYTE" and nxt is not None and nxt.is_op("(") and not after_dot:
            out.append("decode")
        else:
            out.append(tok.text)
        i += 1
    return "".join(out)


def _remove_duplicates_merge(tokens: list[Token]) -> list[str] | None:
    """``MERGE INTO t USING s ON c REMOVE DUPLICATES`` as DELETE + INSERT, or None.

    Matched target rows (all duplicates of them) are replaced by the source rows and
    unmatched source rows are inserted, which is what the simplified MERGE does; it needs
    the source to have the target's columns in order, as on Redshift.
    """
    sig = [t for t in tokens if t.significant]
    if len(sig) < 2 or not sig[0].is_word("MERGE"):
        return None
    if not (sig[-2].is_word("REMOVE") and sig[-1].is_word("DUPLICATES")):
        return None
    body = sig[:-2]
    into = 1 if body[1].is_word("INTO") else 0
    using = top_level_word(body, "USING")
    on = top_level_word(body, "ON")
    if using is None or on is None or on < using:
        return None
    target = "".join(t.text + " " for t in body[1 + into:using]).strip()
    source = "".join(t.text + " " for t in body[using + 1:on]).strip()
    cond = "".join(t.text + " " for t in body[on + 1:]).strip()
    # The INSERT names the bare target table (without its alias).
    name: list[str] = []
    for t in body[1 + into:using]:
        if t.is_word("AS") or (name and not t.is_op(".") and name[-1] != "."):
            break
        name.append(t.text)
    table_name = "".join(name)
    return [
        f"DELETE FROM {target} USING {source} WHERE {cond}",
        f"INSERT INTO {table_name} SELECT * FROM {source}",
    ]


def _sort_key_index(sig: list[Token]) -> str | None:
    """For ``CREATE TABLE [IF NOT EXISTS] name (...) ... SORTKEY(cols)``: a PostgreSQL index
    on the sort key columns. Redshift reads a sort key's range through zone maps instead of
    scanning the table ("Working with sort keys", Amazon Redshift Database Developer Guide);
    without it a join of a small stage to a big replica would scan the replica here."""
    if len(sig) < 4 or not (sig[0].is_word("CREATE") and sig[1].is_word("TABLE")):
        return None
    start = 5 if sig[2].is_word("IF") else 2
    name_end = start
    while name_end + 2 < len(sig) and sig[name_end + 1].is_op("."):
        name_end += 2
    if name_end + 1 >= len(sig) or not sig[name_end + 1].is_op("("):
        return None
    for k in range(name_end + 1, len(sig) - 1):
        if sig[k].is_word("SORTKEY") and sig[k + 1].is_op("("):
            close = matching_paren(sig, k + 1)
            columns = "".join(t.text for t in sig[k + 2:close]).lower()
            table = "".join(t.text for t in sig[start:name_end + 1]).lower()
            digest = hashlib.sha256(table.encode()).hexdigest()[:16]
            return f"CREATE INDEX IF NOT EXISTS rs_sortkey_{digest} ON {table} ({columns})"
    return None


def translate_to_postgres(sql: str, schemas: Schemas | None = None) -> list[str]:
    """The PostgreSQL statements (zero or more) that do what Redshift ``sql`` does.

    ``sql`` holds one statement (the grammar check rejects more). Lexical errors are left
    to PostgreSQL: the SQL is then passed through unchanged. ``schemas`` returns the
    database's schema names (to tell ``schema.table.column`` from SUPER navigation); without
    it no navigation is rewritten.
    """
    try:
        statements = split_statements(tokenize(sql))
    except ValueError:
        return [sql]
    if len(statements) != 1:
        return [sql] if statements else []
    tokens = statements[0]
    sig = [t for t in tokens if t.significant]
    if sig[0].is_word("VACUUM") or _is_alter_storage_only(sig):
        return []
    merge = _remove_duplicates_merge(tokens)
    if merge is not None:
        return merge
    ddl = sig[0].is_word(*_DDL_START)
    domains = ddl and any(t.is_word("TABLE") for t in sig[1:5])
    index = _sort_key_index(sig)
    tokens = strip_constraints(strip_attributes(tokens))
    translated = _rewrite_types_and_functions(tokens, ddl, domains, schemas)
    return [translated, index] if index else [translated]
