"""Free TCP ports on the loopback interface, for the local servers to listen on.

A port is picked now and bound later, by a server process that takes a second or so to start.
A port from the kernel's ephemeral range (``net.ipv4.ip_local_port_range``, what binding port
0 hands out) can meanwhile become the local end of an outgoing connection: the boto3 clients
of a busy test run open hundreds a second (the moto server closes each), and a server that
then finds its port taken exits at start-up. So ports are picked outside that range, where
the kernel never assigns a connection's local port ("ip_local_port_range", Linux kernel
documentation, networking/ip-sysctl).
"""

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000  # above the well-known and most registered services' ports
PICKS = 200


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default 32768-60999 where it cannot be read)."""
    try:
        low, high = (int(value) for value in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def listening_candidates(ephemeral: tuple[int, int]) -> list[range]:
    """Port ranges a server may listen on: from LOWEST_PORT up, minus the ephemeral range."""
    low, high = ephemeral
    spans = [range(LOWEST_PORT, min(low, 65536)), range(max(high + 1, LOWEST_PORT), 65536)]
    return [span for span in spans if len(span) > 0]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the ephemeral range (see above)."""
    spans = listening_candidates(ephemeral_range())
    if spans:
        for _ in range(PICKS):
            span = random.choices(spans, weights=[len(s) for s in spans])[0]
            port = random.randrange(span.start, span.stop)
            if _bindable(port):
                return port
    # No room outside the range, or every pick taken: a port the kernel chooses.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)
