"""Plots of how cost grows, drawn from the benchmarks' result JSON, so they can be drawn
again without running anything (matplotlib: the ``bench`` extra of pyproject.toml).

    .venv/bin/python bench/plots.py [--results bench/results] [--out DIR] [--note TEXT]

Every result in ``--results`` of a kind below is drawn as ``<its name>.png`` in ``--out``
(default: beside it). The benchmarks draw theirs beside their JSON when they finish
(`draw_beside`; without matplotlib they say so and go on).

* fan-out (`bench/fanout.py`): delivery p99 at the offered rate and server CPU per
  delivery versus subscribers, for each server of the run (ours and the bare broadcast);
* storage sweep (`bench/storage_sweep.py`): append rate, append latency, page and
  search latency versus log size;
* controller (`bench/sessions.py` part b): events/s versus steps.

Each title says the machine, when the run finished, the load average at its start and
end, and the run's shape (``--note`` adds a line, e.g. that a run was a quick one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __name__ == "__main__":  # as `python bench/plots.py`: see bench/fanout.py
    sys.path.pop(0)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.common import RESULTS, log
from bench.plots_figures import controller, fanout, storage_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Plotter = Callable[[dict[str, Any], str], "Figure"]


def kind_of(result: dict[str, Any]) -> Plotter | None:
    """The plotter for a result, from what it holds (``None``: nothing to plot)."""
    config = result.get("config", {})
    if "points" in result and "per_conversation" in config:
        return storage_sweep
    if "subscribers" in config and "servers" in config and "deployments" not in config:
        return fanout
    if "controller" in config and any(key.startswith("controller.") for key in result["median"]):
        return controller
    return None


def draw(result: dict[str, Any], out: Path, note: str = "") -> bool:
    """Draw ``result`` into the PNG ``out``; False when it is of no plotted kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotter = kind_of(result)
    if plotter is None:
        return False
    figure = plotter(result, note)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    log(f"plotted {out}")
    return True


def draw_beside(json_path: Path, result: dict[str, Any]) -> None:
    """A benchmark's plot, beside its JSON (a warning instead without matplotlib)."""
    try:
        draw(result, json_path.with_suffix(".png"))
    except ModuleNotFoundError as error:
        log(f"no plot ({error.name} is missing: pip install -e '.[bench]')")


def redraw(results: Path, out: Path | None, note: str, names: Sequence[str] = ()) -> list[Path]:
    """Every plottable result in ``results`` (or those of ``names``) drawn into ``out``."""
    drawn = []
    paths = [results / f"{name}.json" for name in names] or sorted(results.glob("*.json"))
    for path in paths:
        result = orjson.loads(path.read_bytes())
        target = (out or path.parent) / f"{path.stem}.png"
        if draw(result, target, note):
            drawn.append(target)
    return drawn


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="result names (default: every JSON there)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON is")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: beside)")
    parser.add_argument("--note", default="", help="a line added to every title")
    args = parser.parse_args(argv)
    if not redraw(args.results, args.out, args.note, args.names):
        raise SystemExit(f"nothing to plot in {args.results}")


if __name__ == "__main__":
    main()
