"""OCI runtime for the project's local dockerd: runc, with every container on the host network.

``sam local invoke`` creates its Lambda container on Docker's default network and publishes the
runtime interface emulator's port (container 8080 -> a free host port it picked), then calls
``http://127.0.0.1:<host port>``. The project's dockerd runs without a bridge and without
touching the host's iptables (scripts/lambda_docker.sh), so the default network is only a
loopback, and the local stack listens on the host's 127.0.0.1 only. This runtime closes that
gap, as ``--network host`` would:

- ``create``: drop the network namespace (and the net.* sysctls Docker sets for one) from the
  bundle's OCI config, so the container shares the host's network namespace (its 127.0.0.1 is
  the host's);
- a container whose entrypoint is the runtime interface emulator (``aws-lambda-rie``) and that
  publishes port 8080 gets told to listen where Docker would have published it
  (``--runtime-interface-emulator-address <host ip>:<host port>``), and gets a free loopback
  port for its internal Runtime API (``--runtime-api-address``; its default, 127.0.0.1:9001,
  would collide between two containers sharing one network namespace).

Everything else is runc as Docker calls it. dockerd passes ``--docker-root DIR`` first (the
runtime's ``runtimeArgs`` in daemon.json), where the container's hostconfig.json tells its port
bindings. Standard library only: it runs under whichever python3 set it up.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

RUNC = os.environ.get("HOST_NETWORK_RUNTIME_RUNC", "/usr/sbin/runc")
RIE_NAME = "aws-lambda-rie"
RIE_PORT = "8080/tcp"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def published_rie_address(docker_root: Path, container_id: str) -> str | None:
    """``ip:port`` Docker was asked to publish the emulator's port on, if it was."""
    hostconfig = docker_root / "containers" / container_id / "hostconfig.json"
    if not hostconfig.is_file():
        return None
    bindings = json.loads(hostconfig.read_text()).get("PortBindings") or {}
    for binding in bindings.get(RIE_PORT) or []:
        if binding.get("HostPort"):
            return f"{binding.get('HostIp') or '127.0.0.1'}:{binding['HostPort']}"
    return None


def host_network_config(config: dict[str, Any], rie_address: str | None) -> dict[str, Any]:
    """The OCI config with the host's network namespace and, for the emulator, its addresses."""
    linux = config.setdefault("linux", {})
    linux["namespaces"] = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
    # Docker sets net.* sysctls for a private network namespace (unprivileged ports, ping);
    # runc refuses them in the host's.
    sysctl = linux.get("sysctl") or {}
    linux["sysctl"] = {k: v for k, v in sysctl.items() if not k.startswith("net.")}
    process = config.get("process") or {}
    args = list(process.get("args") or [])
    if (rie_address and args and Path(args[0]).name == RIE_NAME
            and "--runtime-interface-emulator-address" not in args):
        process["args"] = [
            args[0],
            "--runtime-interface-emulator-address", rie_address,
            "--runtime-api-address", f"127.0.0.1:{free_loopback_port()}",
            *args[1:],
        ]
    return config


def rewrite_bundle(argv: list[str], docker_root: Path) -> None:
    bundle = None
    for flag in ("--bundle", "-b"):
        if flag in argv:
            bundle = Path(argv[argv.index(flag) + 1])
    if bundle is None:
        bundle = Path.cwd()
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    rie_address = published_rie_address(docker_root, argv[-1])
    config_path.write_text(json.dumps(host_network_config(config, rie_address)))


def main(argv: list[str]) -> int:
    docker_root = Path("/var/lib/docker")
    if argv[:1] == ["--docker-root"]:
        docker_root, argv = Path(argv[1]), argv[2:]
    if "create" in argv or "run" in argv:
        rewrite_bundle(argv, docker_root)
    os.execv(RUNC, [RUNC, *argv])
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
