"""local.ports: listening ports are picked outside the kernel's ephemeral range, where an
outgoing connection cannot take them between the pick and the server's bind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from local import ports
from local.ports import LOWEST_PORT, ephemeral_range, free_port, listening_candidates


def test_a_free_port_is_outside_the_ephemeral_range_and_can_be_listened_on() -> None:
    low, high = ephemeral_range()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high
        assert port >= LOWEST_PORT
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_the_candidates_leave_out_the_configured_range(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("20000\t50000\n")
    spans = listening_candidates(ephemeral_range(setting))
    assert spans == [range(LOWEST_PORT, 20000), range(50001, 65536)]
    # A range that starts below LOWEST_PORT leaves only what lies above it
    assert listening_candidates((1024, 65535)) == []
    assert listening_candidates((5000, 40000)) == [range(40001, 65536)]


def test_an_unreadable_setting_means_linuxs_default_range(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    garbled = tmp_path / "garbled"
    garbled.write_text("not ports")
    assert ephemeral_range(garbled) == (32768, 60999)


def test_with_no_room_outside_the_range_the_kernel_picks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", free_port()))
