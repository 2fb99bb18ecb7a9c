"""The benchmark report: gathers what `scripts/bench.sh` ran into one JSON file, BENCHMARKS.md
and one PNG per plot.

    .venv/bin/python bench/report.py gather --runs-file RUNS.tsv --date 2026-12-02 [--quick]
    .venv/bin/python bench/report.py has-miss RESULT.json   # exit 0 when a target is MISS

`RUNS.tsv` (written by bench.sh) has one line per benchmark invocation, tab-separated: kind
(`run`, or `profile` for a re-run with `--profile` after a miss), name, exit status (a number,
or `absent` when the script does not exist on this branch), seconds, command, the JSON file it
was asked to write, its log file. Each benchmark's JSON follows the contract of
bench/common.py `Target`: "targets" (PASS/MISS records) and "series" (lines to plot, grouped
into figures by "plot"); the rest of a document is free-form, and the report shows every
statistics record in it (a dict with median, min and max: bench/common.py `Stats.as_dict`).

Nothing is dropped silently: a benchmark that is absent, failed (exit status not 0) or wrote
no readable JSON is a row of its own in the summary, and a missed target names the profile
recorded for it or says that none was. This module uses only the standard library and, for
the plots, matplotlib (Agg backend, no display); without matplotlib the report says that the
plots were not drawn.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAT_KEYS = ("median", "min", "max")
MAX_STAT_ROWS = 40  # per benchmark: the JSON file has everything, the page stays readable
PROFILE_LINES = 8  # lines of a profile summary quoted under a missed target


@dataclass
class Benchmark:
    """One benchmark of the run: how its invocation went and the document it wrote."""

    name: str
    status: str  # "ok", "failed", "absent", "no results"
    exit_code: int | None
    seconds: float
    command: str
    log: str
    document: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # why it is not "ok", in words
    profiled: dict[str, Any] = field(default_factory=dict)  # the --profile re-run's document
    profile_run: str = ""  # how the --profile re-run went, when there was one

    @property
    def targets(self) -> list[dict[str, Any]]:
        targets = self.document.get("targets")
        return [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []

    @property
    def series(self) -> list[dict[str, Any]]:
        series = self.document.get("series")
        return [s for s in series if isinstance(s, dict)] if isinstance(series, list) else []

    def profile_of(self, target: dict[str, Any]) -> str | None:
        """The profile recorded for a missed target: its own, the document's, or the re-run's."""
        if isinstance(target.get("profile"), str):
            return str(target["profile"])
        if isinstance(self.document.get("profile"), str):
            return str(self.document["profile"])
        for other in self.profiled.get("targets") or []:
            same = isinstance(other, dict) and other.get("name") == target.get("name")
            if same and isinstance(other.get("profile"), str):
                return str(other["profile"])
        if isinstance(self.profiled.get("profile"), str):
            return str(self.profiled["profile"])
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "seconds": self.seconds,
            "command": self.command,
            "log": self.log,
            "problem": self.problem,
            "document": self.document,
            "profiled": self.profiled,
            "profile_run": self.profile_run,
        }


def _read_document(path: str) -> tuple[dict[str, Any], str]:
    if not path or not Path(path).is_file():
        return {}, "wrote no JSON results"
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return {}, f"its JSON results could not be read ({exc})"
    if not isinstance(document, dict):
        return {}, "its JSON results are not an object"
    return document, ""


def load_runs(runs_file: Path) -> list[Benchmark]:
    """The benchmarks of a run, in the order bench.sh ran them, re-runs merged in."""
    benchmarks: dict[str, Benchmark] = {}
    with runs_file.open(newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 7 or row[0].startswith("#"):
                continue
            kind, name, status, seconds, command, json_path, log = row[:7]
            if kind == "profile":
                if name in benchmarks:
                    first = benchmarks[name]
                    first.profiled = _read_document(json_path)[0]
                    first.profile_run = f"the --profile re-run exited with status {status}"
                continue
            document, problem = _read_document(json_path)
            if status == "absent":
                bench = Benchmark(name, "absent", None, 0.0, command, "", problem="not present")
            else:
                code = int(status)
                bench = Benchmark(name, "ok", code, float(seconds), command, log, document)
                if code != 0:
                    bench.status = "failed"
                    bench.problem = f"exited with status {code}" + (
                        " (timed out)" if code == 124 else ""
                    )
                elif problem:
                    bench.status, bench.problem = "no results", problem
            benchmarks[name] = bench
    return list(benchmarks.values())


def has_miss(document: dict[str, Any]) -> bool:
    targets = document.get("targets")
    return isinstance(targets, list) and any(
        isinstance(t, dict) and not t.get("passed") for t in targets
    )


# -- text -------------------------------------------------------------------------------------


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def _cell(value: object) -> str:
    return _number(value).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def machine_text(machine: dict[str, Any]) -> str:
    if not machine:
        return "machine not recorded"
    parts = [
        str(machine.get("host", "?")),
        f"{machine.get('cpus', '?')} CPUs",
        f"load {machine.get('load_avg_1m', '?')}",
        f"Python {machine.get('python', '?')}",
        f"etcd {machine.get('etcd', '?')}",
    ]
    if machine.get("date"):
        parts.insert(0, str(machine["date"]))
    return ", ".join(parts)


def stat_rows(document: dict[str, Any]) -> list[list[object]]:
    """Every statistics record in a document (runs, median, p90, min, max), labelled by where
    it sits; lists are labelled by an element's size, name, label or kind when it has one."""
    rows: list[list[object]] = []

    def label_of(item: object, index: int) -> str:
        if isinstance(item, dict):
            for key in ("name", "label", "segment", "variant"):
                if key in item and not isinstance(item[key], dict | list):
                    return str(item[key])
            for key in ("size", "kind"):
                if key in item and not isinstance(item[key], dict | list):
                    return f"{key} {item[key]}"
        return f"#{index + 1}"

    def walk(node: object, path: list[str]) -> None:
        if isinstance(node, dict):
            if all(isinstance(node.get(key), int | float) for key in STAT_KEYS):
                label = " / ".join(path) or "(document)"
                rows.append(
                    [
                        label,
                        node.get("runs"),
                        node.get("median"),
                        node.get("p90"),
                        node.get("min"),
                        node.get("max"),
                        node.get("unit", "s"),
                    ]
                )
                return
            for key, value in node.items():
                if key in ("machine", "targets", "series"):
                    continue
                # A top-level "stats" list is the benchmark's own table: its names suffice.
                walk(value, path if key == "stats" and not path else [*path, str(key)])
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, [*path, label_of(item, index)])

    walk(document, [])
    return rows


def target_row(target: dict[str, Any]) -> list[object]:
    """target, value, limit, baseline, verdict."""
    sign = "≥" if target.get("better") == "higher" else "≤"
    unit = target.get("unit", "")
    value = target.get("value")
    limit = target.get("limit")
    return [
        target.get("name", "?"),
        "not measured" if value is None else f"{_number(value)} {unit}".strip(),
        f"{sign} {_number(limit)} {unit}".strip(),
        target.get("baseline", "") or "-",
        "PASS" if target.get("passed") else "**MISS**",
    ]


def _link(path: str, markdown: Path, root: Path) -> str:
    """`path` (absolute, or relative to the repository `root`) relative to the page."""
    target = Path(path)
    if not target.is_absolute():
        target = root / target
    try:
        return os.path.relpath(target, markdown.parent)
    except ValueError:
        return str(target)


def _log_tail(log: str, lines: int = 15, width: int = 300) -> list[str]:
    """The last lines of a log, each cut to `width` characters (a traceback may hold a line of
    many kilobytes)."""
    try:
        tail = Path(log).read_text(errors="replace").splitlines()[-lines:] if log else []
    except OSError:
        return []
    return [line if len(line) <= width else line[:width] + " …" for line in tail]


def _profile_lines(path: str, markdown: Path, root: Path) -> list[str]:
    """A missed target's profile: a link and, for a text summary, its first lines."""
    lines = [f"  - profile: [{path}]({_link(path, markdown, root)})"]
    file = Path(path) if Path(path).is_absolute() else root / path
    if file.suffix == ".txt" and file.is_file():
        head = file.read_text(errors="replace").splitlines()[:PROFILE_LINES]
        lines += ["", "    ```", *(f"    {line}" for line in head), "    ```", ""]
    return lines


def render(
    benchmarks: list[Benchmark],
    *,
    date: str,
    quick: bool,
    markdown: Path,
    root: Path,
    results_json: Path,
    plots: dict[str, Path],
    plot_problem: str,
) -> str:
    """BENCHMARKS.md: summary of every target, plots, then one section per benchmark."""
    out = ["# Benchmarks", ""]
    if quick:
        out += [
            "> **QUICK SMOKE RUN** (`bash scripts/bench.sh --quick`): one or two runs, small "
            "cluster sizes. It shows that the benchmarks run, not how fast cnm is: do not "
            "compare these numbers with anything.",
            "",
        ]
    total = sum(b.seconds for b in benchmarks)
    machine = next((b.document["machine"] for b in benchmarks if b.document.get("machine")), {})
    out += [
        f"Made by `bash scripts/bench.sh{' --quick' if quick else ''}` on {date} "
        f"({total / 60:.1f} min of benchmarks). Machine: {machine_text(machine)}.",
        "",
        f"All results: [{results_json.name}]({_link(str(results_json), markdown, root)}). "
        "Each benchmark measures its baseline in the same run, interleaved with the measured "
        "runs: compare a target with its baseline, not with numbers from "
        "another day. See bench/README.md for what each benchmark measures.",
        "",
        "## Summary",
        "",
    ]
    rows: list[list[object]] = []
    for bench in benchmarks:
        if bench.status in ("absent", "failed", "no results"):
            verdict = {"absent": "NOT PRESENT", "failed": "**FAILED**"}.get(
                bench.status, "**NO RESULTS**"
            )
            rows.append([bench.name, bench.problem, "-", "-", "-", verdict])
        for target in bench.targets:
            rows.append([bench.name, *target_row(target)])
        if bench.status == "ok" and not bench.targets:
            rows.append([bench.name, "no target recorded", "-", "-", "-", "-"])
    out += md_table(["benchmark", "target", "value", "limit", "baseline (same run)", ""], rows)
    passed = sum(1 for b in benchmarks for t in b.targets if t.get("passed"))
    missed = sum(1 for b in benchmarks for t in b.targets if not t.get("passed"))
    broken = [b.name for b in benchmarks if b.status in ("failed", "no results")]
    absent = [b.name for b in benchmarks if b.status == "absent"]
    out += [
        "",
        f"{passed} PASS, {missed} MISS; failed: {', '.join(broken) or 'none'}; "
        f"not present: {', '.join(absent) or 'none'}.",
        "",
        "## Plots",
        "",
    ]
    if plot_problem:
        out.append(f"Plots not drawn: {plot_problem}.")
    elif not plots:
        out.append("No benchmark recorded a series to plot.")
    for name, path in plots.items():
        link = _link(str(path), markdown, root)
        out += [f"### {name.replace('_', ' ')}", "", f"![{name}]({link})", ""]
    for bench in benchmarks:
        out += ["", *section(bench, markdown, root)]
    return "\n".join(out).rstrip() + "\n"


def section(bench: Benchmark, markdown: Path, root: Path) -> list[str]:
    out = [f"## {bench.name}", ""]
    if bench.status == "absent":
        return [*out, "Not present on this branch (no script to run).", ""]
    out += [f"`{bench.command}`: exit status {bench.exit_code}, {bench.seconds:.0f} s."]
    if bench.log:
        out[-1] += f" Log: [{Path(bench.log).name}]({_link(bench.log, markdown, root)})."
    out += ["", f"Machine: {machine_text(bench.document.get('machine') or {})}.", ""]
    if bench.problem:
        out += [f"**{bench.status.upper()}**: {bench.problem}.", ""]
        tail = _log_tail(bench.log)
        if tail:
            out += ["The end of its log:", "", "```", *tail, "```", ""]
    failures = bench.document.get("failures")
    if isinstance(failures, list) and failures:
        out += ["Failed runs:", "", *(f"- {failure}" for failure in failures), ""]
    stats = stat_rows(bench.document)
    if stats:
        shown = stats[:MAX_STAT_ROWS]
        out += md_table(["series", "runs", "median", "p90", "min", "max", "unit"], shown)
        if len(stats) > len(shown):
            out.append(f"({len(stats) - len(shown)} more in the JSON results)")
        out.append("")
    if bench.targets:
        out += md_table(
            ["target", "value", "limit", "baseline (same run)", ""],
            [target_row(target) for target in bench.targets],
        )
        out.append("")
        for target in bench.targets:
            if target.get("passed"):
                continue
            out.append(f"- MISS `{target.get('name', '?')}`: where the time goes:")
            profile = bench.profile_of(target)
            if profile:
                out += _profile_lines(profile, markdown, root)
            else:
                note = f" ({bench.profile_run})" if bench.profile_run else ""
                out.append(f"  no profile recorded{note}")
        out.append("")
    elif bench.status == "ok":
        out += ["No target recorded.", ""]
    for series in bench.series:
        xs, ys = series.get("x") or [], series.get("y") or []
        label = f"{series.get('plot', '?')}: {series.get('label', '?')}"
        out.append(
            f"- {label} ({series.get('x_label', 'x')} → {series.get('y_label', 'y')}): "
            + ", ".join(f"{_number(x)} → {_number(y)}" for x, y in zip(xs, ys, strict=False))
        )
    return [*out, ""]


# -- plots ------------------------------------------------------------------------------------


def draw_plots(benchmarks: list[Benchmark], directory: Path) -> tuple[dict[str, Path], str]:
    """One PNG per "plot", a line per series; ({plot: path}, why none were drawn or "")."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in benchmarks:
        for series in bench.series:
            groups.setdefault(str(series.get("plot", bench.name)), []).append(series)
    if not groups:
        return {}, ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "matplotlib is not installed (pip install -e '.[bench]')"
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, lines in groups.items():
        figure, axes = plt.subplots(figsize=(7, 4.5))
        xs_all: list[float] = []
        for series in lines:
            points = [
                (float(x), float(y))
                for x, y in zip(series.get("x") or [], series.get("y") or [], strict=False)
                if isinstance(x, int | float) and isinstance(y, int | float)
            ]
            if not points:
                continue
            xs_all += [x for x, _ in points]
            axes.plot(*zip(*points, strict=True), marker="o", label=str(series.get("label", "")))
        # A log axis when x spans a factor of 10 or more (cluster sizes 2-100, concurrency
        # 1-64): the small sizes would be crowded into a corner otherwise.
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
            axes.set_xscale("log")
            ticks = sorted(set(xs_all))
            axes.set_xticks(ticks)
            axes.set_xticklabels([f"{t:g}" for t in ticks])
        axes.set_xlabel(str(lines[0].get("x_label", "x")))
        axes.set_ylabel(str(lines[0].get("y_label", "y")))
        axes.set_title(name.replace("_", " "))
        axes.grid(True, alpha=0.3)
        axes.legend()
        path = directory / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[name] = path
    return written, ""


# -- command line -----------------------------------------------------------------------------


def gather(args: argparse.Namespace) -> int:
    benchmarks = load_runs(args.runs_file)
    suffix = "-quick" if args.quick else ""
    results = args.root / "bench" / "results"
    results_json = results / f"{args.date}{suffix}.json"
    plot_dir = results / f"{args.date}{suffix}"
    # A smoke run's page stays beside its plots, so that it never replaces BENCHMARKS.md.
    markdown = plot_dir / "BENCHMARKS.md" if args.quick else args.root / "BENCHMARKS.md"
    plots, plot_problem = draw_plots(benchmarks, plot_dir)
    results.mkdir(parents=True, exist_ok=True)
    document = {
        "date": args.date,
        "quick": args.quick,
        "reported_on": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "plots": {name: str(path) for name, path in plots.items()},
        "benchmarks": [bench.as_dict() for bench in benchmarks],
    }
    results_json.write_text(json.dumps(document, indent=2) + "\n")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(
        render(
            benchmarks,
            date=args.date,
            quick=args.quick,
            markdown=markdown,
            root=args.root,
            results_json=results_json,
            plots=plots,
            plot_problem=plot_problem,
        )
    )
    print(f"report: {markdown}, {results_json}, {len(plots)} plot(s) in {plot_dir}")
    for bench in benchmarks:
        verdicts = ", ".join(
            f"{t.get('name')} {'PASS' if t.get('passed') else 'MISS'}" for t in bench.targets
        )
        print(f"  {bench.name}: {bench.problem or bench.status}; {verdicts or 'no targets'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("gather", help="write the JSON results, BENCHMARKS.md and plots")
    make.add_argument("--runs-file", type=Path, required=True)
    make.add_argument("--date", required=True, help="YYYY-MM-DD, names the results")
    make.add_argument("--quick", action="store_true", help="a smoke run: labelled as such")
    make.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    check = commands.add_parser("has-miss", help="exit 0 when the JSON has a MISS target")
    check.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "has-miss":
        return 0 if has_miss(_read_document(str(args.json))[0]) else 1
    return gather(args)


if __name__ == "__main__":
    sys.exit(main())
