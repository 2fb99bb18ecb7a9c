"""The cost of a fault point when CNM_FAILPOINTS is unset, beside an empty function call.

Interleaved rounds in one process: the point as the product calls it (`failpoint(name)`, the
no-op chosen at import), the same call with another point enabled (a dict lookup), and an empty
function of the same signature as the baseline. Prints ns per call and the ratio to the baseline.

Target (the module's promise: unset, `failpoint` "returns at once: no lookup, no allocation"):
the unset point costs at most 1.5 x the empty call, median against median (timeit noise on a
shared machine is a few tens of percent; a lookup would cost more than that).
"""

from __future__ import annotations

import os
import sys
import timeit

from cnm import failpoints
from common import Stats, Target, base_parser, finish, machine_info, table, target_lines

TARGET_RATIO = 1.5


def empty(name: str) -> None:
    """The baseline: a call that does nothing."""


def main() -> int:
    parser = base_parser(__doc__ or "", default_runs=7)
    args = parser.parse_args()
    info = machine_info()
    if os.environ.get(failpoints.ENV_VAR):
        print(f"{failpoints.ENV_VAR} is set: unset it to measure the production case")
        return 2
    other = failpoints._make({"voter.after_promote": "error"})
    calls = 200_000
    candidates = {
        "empty function (baseline)": empty,
        "failpoint, unset": failpoints.failpoint,
        "failpoint, another enabled": other,
    }
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.runs):
        for name, fn in candidates.items():
            seconds = timeit.timeit(lambda fn=fn: fn("join.after_admission"), number=calls)
            samples[name].append(seconds / calls * 1e9)
    baseline = Stats.of(samples["empty function (baseline)"]).median
    rows = [
        [name, Stats.of(values).median, min(values), Stats.of(values).median / baseline]
        for name, values in samples.items()
    ]
    print(table(["call", "median ns", "min ns", "ratio to baseline"], rows, decimals=1))
    unset = Stats.of(samples["failpoint, unset"]).median
    target = Target(
        "unset failpoint, ratio to an empty call",
        unset / baseline,
        TARGET_RATIO,
        "ratio",
        baseline=f"empty function call: {baseline:.1f} ns",
    )
    print(target_lines([target]))
    document = {
        "machine": info,
        "calls_per_sample": calls,
        "ns_per_call": samples,
        "stats": [
            {"name": name, **Stats.of(values).as_dict(), "unit": "ns"}
            for name, values in samples.items()
        ],
        "targets": [target.as_dict()],
    }
    return finish(args.json, document, [])


if __name__ == "__main__":
    sys.exit(main())
