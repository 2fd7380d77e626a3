"""Checkpoints of a mapping, one JSON file per (stream, function) in the state directory.

Lambda keeps, per event source mapping and shard, the sequence number up to which the
function is done; a restarted poller resumes after it, so what was in flight when it stopped
comes again (at least once). The file is replaced atomically on every checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.atomic_file import replace_text

FORMAT_VERSION = 1


@dataclass
class ShardCheckpoint:
    sequence_number: str | None = None  # the last record the mapping is done with
    ended: bool = False  # the shard is closed and every record of it is done


@dataclass
class MappingState:
    stream_arn: str
    function_arn: str
    created_at: float  # epoch seconds: where LATEST pointed when the mapping was created
    starting_position: str
    initial_shards: list[str] = field(default_factory=list)  # shards at creation
    shards: dict[str, ShardCheckpoint] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "streamArn": self.stream_arn,
            "functionArn": self.function_arn,
            "createdAt": self.created_at,
            "startingPosition": self.starting_position,
            "initialShards": self.initial_shards,
            "shards": {
                shard_id: {"sequenceNumber": c.sequence_number, "ended": c.ended}
                for shard_id, c in sorted(self.shards.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MappingState:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported checkpoint file version {data.get('version')!r}")
        return cls(
            stream_arn=data["streamArn"],
            function_arn=data["functionArn"],
            created_at=float(data["createdAt"]),
            starting_position=data["startingPosition"],
            initial_shards=list(data["initialShards"]),
            shards={
                shard_id: ShardCheckpoint(c["sequenceNumber"], bool(c["ended"]))
                for shard_id, c in data["shards"].items()
            },
        )


def state_file(state_dir: Path, stream_name: str, function_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{stream_name}--{function_name}")
    return state_dir / f"{safe}.checkpoints.json"


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> MappingState | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return MappingState.from_json(json.loads(text))

    def save(self, state: MappingState) -> None:
        """Replace the file atomically: a crash leaves the old or the new checkpoints,
        never half a file."""
        self.write(state.to_json())

    def write(self, snapshot: dict[str, Any]) -> None:
        """Save a snapshot taken with ``MappingState.to_json`` (so a caller can take it under
        its lock and write it, with its fsync, outside)."""
        replace_text(self.path, json.dumps(snapshot, indent=2))
