"""bench/report.py (the report of `scripts/bench.sh`) and bench/profiling.py's summary, on sample
documents: PASS and MISS rendered, one summary row per target, failed, empty and absent
benchmarks shown rather than dropped, the PNGs written.

The bench scripts are not a package (each runs as `python bench/X.py`), so the two modules are
loaded from their files; neither imports anything of the benchmarks' own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.bench_modules import load_bench_module

report = load_bench_module("report")
profiling = load_bench_module("profiling")


def _target(name: str, value: float | None, limit: float, passed: bool, **extra: Any) -> dict:
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "unit": "s",
        "better": "lower",
        "baseline": "raw etcd median 0.30 s",
        "passed": passed,
        **extra,
    }


MACHINE = {"date": "2026-12-02T12:00:00Z", "host": "h", "cpus": 2, "load_avg_1m": 1.0}


def _write_runs(tmp_path: Path) -> Path:
    """Four benchmarks: one ran (a PASS, a MISS with a profile, a MISS without), one failed
    without results, one exited 0 without results, one is not on the branch; plus a profile
    re-run of the first."""
    work = tmp_path / "work"
    work.mkdir()
    profile = tmp_path / "bench" / "results" / "profiles" / "join-1.txt"
    profile.parent.mkdir(parents=True)
    profile.write_text("120 samples; % of samples, own time:\n  40.0%  verify (cnm/auth.py:10)\n")
    join = {
        "machine": MACHINE,
        "cnm": {"runs": 5, "median": 0.12, "p90": 0.2, "min": 0.1, "max": 0.3},
        "floor": {"runs": 5, "median": 0.05, "p90": 0.06, "min": 0.04, "max": 0.07},
        "targets": [
            _target("join median at 10 nodes", 0.12, 0.3, True),
            _target("join median at 100 nodes", 0.41, 0.3, False),
            _target("3 voters after the third join", None, 1.0, False),
        ],
        "series": [
            {
                "plot": "join_latency",
                "label": "cnm",
                "x": [2, 10, 100],
                "y": [0.1, 0.12, 0.41],
                "x_label": "cluster size",
                "y_label": "join median, s",
            },
            {
                "plot": "join_latency",
                "label": "store floor",
                "x": [2, 10, 100],
                "y": [0.04, 0.05, 0.06],
                "x_label": "cluster size",
                "y_label": "join median, s",
            },
        ],
    }
    (work / "join.json").write_text(json.dumps(join))
    profiled = {
        "targets": [
            _target(
                "join median at 100 nodes",
                0.5,
                0.3,
                False,
                profile="bench/results/profiles/join-1.txt",
            )
        ]
    }
    (work / "join.profile.json").write_text(json.dumps(profiled))
    (work / "empty.json").write_text("")  # exited 0 but wrote nothing readable
    long_line = "shutil.Error: " + "kept/" * 2000  # a traceback line of 10 kB
    (work / "broken.log").write_text(f"run 1\n{long_line}\nRuntimeError: etcd did not start\n")
    rows = [
        [
            "run",
            "bench_join",
            "0",
            "30",
            "python bench/bench_join.py",
            str(work / "join.json"),
            str(work / "join.log"),
        ],
        [
            "profile",
            "bench_join",
            "0",
            "35",
            "python bench/bench_join.py --profile",
            str(work / "join.profile.json"),
            str(work / "join-profile.log"),
        ],
        [
            "run",
            "bench_broken",
            "1",
            "4",
            "python bench/bench_broken.py",
            str(work / "none.json"),
            str(work / "broken.log"),
        ],
        [
            "run",
            "bench_empty",
            "0",
            "2",
            "python bench/bench_empty.py",
            str(work / "empty.json"),
            str(work / "empty.log"),
        ],
        ["run", "bench_status", "absent", "0", "bench/bench_status.py", "", ""],
    ]
    runs = work / "runs.tsv"
    runs.write_text("".join("\t".join(row) + "\n" for row in rows))
    return runs


def _gather(tmp_path: Path, *extra: str) -> int:
    runs = _write_runs(tmp_path)
    argv = ["gather", "--runs-file", str(runs), "--date", "2026-12-02", "--root", str(tmp_path)]
    return int(report.main([*argv, *extra]))


def _summary_rows(page: str) -> list[str]:
    summary = page.split("## Summary", 1)[1].split("## Plots", 1)[0]
    return [line for line in summary.splitlines() if line.startswith("| bench_")]


def test_every_target_and_every_broken_benchmark_has_a_summary_row(tmp_path: Path) -> None:
    assert _gather(tmp_path) == 0
    page = (tmp_path / "BENCHMARKS.md").read_text()
    rows = _summary_rows(page)
    assert len(rows) == 6, rows  # 3 targets, failed, no results, not present
    by_target = {row.split("|")[2].strip(): row for row in rows}
    assert by_target["join median at 10 nodes"].rstrip(" |").endswith("PASS")
    assert "0.120 s" in by_target["join median at 10 nodes"]
    assert "≤ 0.300 s" in by_target["join median at 10 nodes"]
    assert "raw etcd median 0.30 s" in by_target["join median at 10 nodes"]
    assert by_target["join median at 100 nodes"].rstrip(" |").endswith("**MISS**")
    # Not measured at all is a MISS.
    assert by_target["3 voters after the third join"].rstrip(" |").endswith("**MISS**")
    assert "| not measured |" in by_target["3 voters after the third join"]
    assert any(r.startswith("| bench_broken |") and "**FAILED**" in r for r in rows)
    assert any("exited with status 1" in r for r in rows)
    assert any(r.startswith("| bench_empty |") and "**NO RESULTS**" in r for r in rows)
    assert any(r.startswith("| bench_status |") and "NOT PRESENT" in r for r in rows)
    assert "1 PASS, 2 MISS; failed: bench_broken, bench_empty; not present: bench_status" in page
    # A failed benchmark's section says why, with the end of its log.
    broken = page.split("## bench_broken", 1)[1].split("## bench_empty", 1)[0]
    assert "**FAILED**: exited with status 1" in broken
    assert "RuntimeError: etcd did not start" in broken
    assert "shutil.Error: kept/" in broken
    assert max(len(line) for line in broken.splitlines()) < 400  # cut, not quoted whole


def test_a_miss_names_its_profile_or_says_there_is_none(tmp_path: Path) -> None:
    assert _gather(tmp_path) == 0
    page = (tmp_path / "BENCHMARKS.md").read_text()
    section = page.split("## bench_join", 1)[1].split("## bench_broken", 1)[0]
    hundred = section.split("MISS `join median at 100 nodes`", 1)[1].split("- MISS", 1)[0]
    assert "bench/results/profiles/join-1.txt" in hundred  # from the --profile re-run
    assert "40.0%  verify (cnm/auth.py:10)" in hundred  # its summary quoted
    voters = section.split("MISS `3 voters after the third join`", 1)[1]
    assert voters.splitlines()[1].strip() == (
        "no profile recorded (the --profile re-run exited with status 0)"
    )
    # The statistics of the document, baseline included, are tabled.
    assert "| cnm | 5 | 0.120 |" in section
    assert "| floor | 5 | 0.050 |" in section


def test_results_json_keeps_every_benchmark_and_its_status(tmp_path: Path) -> None:
    assert _gather(tmp_path) == 0
    document = json.loads((tmp_path / "bench" / "results" / "2026-12-02.json").read_text())
    status = {b["name"]: b["status"] for b in document["benchmarks"]}
    assert status == {
        "bench_join": "ok",
        "bench_broken": "failed",
        "bench_empty": "no results",
        "bench_status": "absent",
    }
    join = document["benchmarks"][0]
    assert join["document"]["targets"][1]["value"] == 0.41  # the run without the profiler
    assert join["profiled"]["targets"][0]["profile"].endswith("join-1.txt")


def test_a_plot_per_name_with_a_line_per_label(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib draws the plots (pip install .[dev])")
    assert _gather(tmp_path) == 0
    png = tmp_path / "bench" / "results" / "2026-12-02" / "join_latency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "BENCHMARKS.md").read_text()
    assert "![join_latency](bench/results/2026-12-02/join_latency.png)" in page
    assert not (tmp_path / "bench" / "results" / "2026-12-02-quick").exists()


def test_a_quick_run_is_labelled_and_leaves_benchmarks_md_alone(tmp_path: Path) -> None:
    assert _gather(tmp_path, "--quick") == 0
    assert not (tmp_path / "BENCHMARKS.md").exists()
    page = (tmp_path / "bench" / "results" / "2026-12-02-quick" / "BENCHMARKS.md").read_text()
    assert "QUICK SMOKE RUN" in page.split("## Summary", 1)[0]
    assert (tmp_path / "bench" / "results" / "2026-12-02-quick.json").is_file()


def test_has_miss(tmp_path: Path) -> None:
    missed = tmp_path / "missed.json"
    missed.write_text(json.dumps({"targets": [_target("a", 2.0, 1.0, False)]}))
    met = tmp_path / "met.json"
    met.write_text(json.dumps({"targets": [_target("a", 0.5, 1.0, True)]}))
    assert report.main(["has-miss", str(missed)]) == 0
    assert report.main(["has-miss", str(met)]) == 1
    assert report.main(["has-miss", str(tmp_path / "absent.json")]) == 1


def test_profile_summary_counts_own_time_and_cnm_functions() -> None:
    raw = "\n".join(
        [
            "main (cnm/daemon.py:1);handle (cnm/api/app.py:5);verify (argon2/x.py:9) 30",
            "main (cnm/daemon.py:1);handle (cnm/api/app.py:5) 10",
            "main (cnm/daemon.py:1);select (selectors.py:468) 60",
        ]
    )
    text = profiling.summarize(raw)
    assert text.startswith("100 samples")
    own, ours = text.split("cnm's functions", 1)
    assert "60.0%  select (selectors.py:468)" in own
    assert "30.0%  verify (argon2/x.py:9)" in own
    assert "100.0%  main (cnm/daemon.py:1)" in ours
    assert "40.0%  handle (cnm/api/app.py:5)" in ours
    assert "selectors.py" not in ours
    assert profiling.summarize("").startswith("no samples")
