"""A parametric simulator slowed down on purpose, importable by dask workers (on PYTHONPATH).

It has the parametric model's name and output, so its files equal the parametric ones; each
chunk leaves a marker ``<marker_dir>/started-<pid>`` and sleeps ``delay`` seconds, which
gives a test time to kill the worker running it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import awkward as ak

from hepfastsim.simulators.base import GenEvents, Simulator
from hepfastsim.simulators.parametric import ParametricSimulator


class SlowSimulator(Simulator):
    name = ParametricSimulator.name
    output_fields = ParametricSimulator.output_fields

    def __init__(self, marker_dir: str, delay: float) -> None:
        self.marker_dir = marker_dir
        self.delay = delay
        self._inner = ParametricSimulator()

    def simulate(self, events: GenEvents) -> ak.Array:
        Path(self.marker_dir, f"started-{os.getpid()}").touch()
        time.sleep(self.delay)
        return self._inner.simulate(events)


class CrashOnceSimulator(Simulator):
    """Kills its own process (as a segfault or the OOM killer would) on the first chunk of the
    whole run, marked by ``<marker_dir>/crashed``; behaves as the parametric model after."""

    name = ParametricSimulator.name
    output_fields = ParametricSimulator.output_fields

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir
        self._inner = ParametricSimulator()

    def simulate(self, events: GenEvents) -> ak.Array:
        marker = Path(self.marker_dir, "crashed")
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return self._inner.simulate(events)
        os._exit(3)


class InterruptingSimulator(Simulator):
    """Raises KeyboardInterrupt (Ctrl-C) at its ``after``-th chunk; parametric otherwise."""

    name = ParametricSimulator.name
    output_fields = ParametricSimulator.output_fields

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self._inner = ParametricSimulator()

    def simulate(self, events: GenEvents) -> ak.Array:
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self._inner.simulate(events)
