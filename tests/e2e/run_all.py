#!/usr/bin/python3
"""Run every end-to-end test module (tests/e2e/test_*.py) in one nested machine.

    tests/nested/run -- /usr/bin/python3 tests/e2e/run_all.py [MODULE...]

Each module runs in its own process; its tests print PASS, FAIL or FLAKY (passed when run once
more after the nested machine stalled or reset its guest, see harness.run_tests). This prints a
summary of every test with its time (also written to $SAFFRON_RESULTS/e2e-summary.txt) and
exits 1 if any test or module failed. FLAKY tests do not fail the run but are always listed.

Each finished module's outcome is recorded in $SAFFRON_RESULTS/e2e-modules/MODULE (its exit
status, then its summary lines). With --resume, modules already recorded there are not run
again (their recorded outcome is reused): tests/run-all uses it when the nested machine itself
died in the middle of a run. Without --resume the records are cleared first.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("SAFFRON_RESULTS", HERE.parents[1] / "build" / "nested-results"))
RESULT_LINE = re.compile(r"^(PASS|FAIL|FLAKY) (\S+)(?: \(passed on retry\))? \(([\d.]+) s\)$")


def run_module(module: Path) -> tuple[int, list[tuple[str, str, float]]]:
    """Runs one module, echoing its output; its exit status and (verdict, test, seconds)."""
    proc = subprocess.Popen([sys.executable, str(module)], cwd=HERE.parents[1],
                            stdout=subprocess.PIPE, text=True, errors="replace")
    results = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = RESULT_LINE.match(line.strip())
        if match:
            results.append((match.group(1), match.group(2), float(match.group(3))))
    return proc.wait(), results


def recorded(record: Path) -> tuple[int, list[str]] | None:
    """A finished module's (exit status, summary lines), if recorded."""
    try:
        first, *lines = record.read_text().splitlines()
        return int(first), lines
    except (OSError, ValueError):
        return None


def main() -> int:
    args = sys.argv[1:]
    resume = "--resume" in args
    wanted = [a for a in args if a != "--resume"]
    records = RESULTS / "e2e-modules"
    if not resume and records.exists():
        for old in records.iterdir():
            old.unlink()
    records.mkdir(parents=True, exist_ok=True)
    modules = sorted(p for p in HERE.glob("test_*.py") if not wanted or p.stem in wanted)
    summary, failed = [], False
    for module in modules:
        record = records / module.stem
        done = recorded(record) if resume else None
        if done is not None:
            status, lines = done
            print(f"=== {module.stem}: finished in an earlier run (status {status})", flush=True)
        else:
            print(f"=== {module.stem}", flush=True)
            start = time.monotonic()
            status, results = run_module(module)
            seconds = time.monotonic() - start
            lines = [f"{verdict:5} {module.stem}.{test} ({test_seconds:.0f} s)"
                     for verdict, test, test_seconds in results]
            if status != 0 and not any(v == "FAIL" for v, _, _ in results):
                lines.append(f"FAIL  {module.stem} (exit status {status} after {seconds:.0f} s)")
            record.write_text("\n".join([str(status), *lines]) + "\n")
        summary += lines
        failed |= status != 0
    counts = {v: sum(line.startswith(v) for line in summary) for v in ("PASS", "FLAKY", "FAIL")}
    summary.append(f"{counts['PASS']} passed, {counts['FLAKY']} flaky (passed on retry), "
                   f"{counts['FAIL']} failed")
    print("=== summary")
    print("\n".join(summary), flush=True)
    (RESULTS / "e2e-summary.txt").write_text("\n".join(summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
