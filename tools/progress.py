"""Progress bars for the long steps (full load, catch-up, reconcile), on a terminal only.

The bars are tqdm's, written to stderr with ``disable=None``: tqdm then turns a bar off when
its output is not a TTY (tqdm documentation, parameter ``disable``: "If set to None, disable
on non-TTY"), so logs, pipes and CI get no bar lines; stdout keeps only the commands' results.

``watch`` follows work that runs elsewhere (a counter another part updates: records loaded,
records consumed) from a thread of its own; ``steps`` counts steps the caller reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Never

from tqdm import tqdm

# (done, total or None when unknown, a short note shown after the bar)
Reading = tuple[int, int | None, str]


def _bar(desc: str, unit: str, total: int | None = None) -> tqdm[Never]:
    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=True,
                dynamic_ncols=True, mininterval=0.2)


@contextmanager
def watch(desc: str, read: Callable[[], Reading], unit: str = "records",
          interval: float = 0.3) -> Iterator[None]:
    """A bar that shows ``read()`` every ``interval`` seconds while the block runs, and once
    more at its end. ``read`` is called from another thread: it must only read counters."""
    bar = _bar(desc, unit)
    if bar.disable:
        bar.close()
        yield
        return
    stop = threading.Event()

    def show() -> None:
        done, total, note = read()
        bar.total = max(total, done) if total is not None else None
        bar.n = done
        if note:
            bar.set_postfix_str(note, refresh=False)
        bar.refresh()

    def loop() -> None:
        while not stop.wait(interval):
            show()

    thread = threading.Thread(target=loop, name=f"progress-{desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show()
        bar.close()


@contextmanager
def steps(desc: str, total: int, unit: str = "tables") -> Iterator[Callable[[str], None]]:
    """A bar of ``total`` steps; the block calls the yielded function with each step's name
    once that step is done."""
    bar = _bar(desc, unit, total)

    def step(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update()

    try:
        yield step
    finally:
        bar.close()
