"""``local.atomic_file.replace_text``: the state files of the local parts are old or new,
never half written."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.atomic_file import replace_text


def test_replaces_the_text_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state" / "checkpoint.json"
    replace_text(target, '{"a": 1}\n')
    replace_text(target, '{"a": 2, "name": "zoë"}\n')
    assert target.read_text(encoding="utf-8") == '{"a": 2, "name": "zoë"}\n'
    assert [p.name for p in target.parent.iterdir()] == ["checkpoint.json"]


def test_a_failed_write_keeps_the_old_text_and_removes_its_temporary_file(
        tmp_path: Path) -> None:
    target = tmp_path / "stack.json"
    replace_text(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        replace_text(target, "half \ud800 written")  # a lone surrogate has no UTF-8 form
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["stack.json"]
