#!/usr/bin/env python3
"""Write the sample Kinesis events (``make events``): events/<name>.json, reproducibly.

    python scripts/make_events.py [--out DIR]

The events and the order to apply them in are described in local/sample_events.py and
events/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local.sample_events import EVENTS_DIR, write_events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=EVENTS_DIR, help=f"default: {EVENTS_DIR}")
    args = parser.parse_args(argv)
    for path in write_events(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
