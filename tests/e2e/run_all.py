#!/usr/bin/python3
"""Run every end-to-end test module (tests/e2e/test_*.py) in one nested machine.

    tests/nested/run -- /usr/bin/python3 tests/e2e/run_all.py [MODULE...]

Each module runs in its own process (its tests print PASS/FAIL); this prints a summary and
exits 1 if any module failed.
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = sys.argv[1:]
    modules = sorted(p for p in HERE.glob("test_*.py") if not wanted or p.stem in wanted)
    results = []
    for module in modules:
        print(f"=== {module.stem}", flush=True)
        start = time.monotonic()
        status = subprocess.run([sys.executable, str(module)], cwd=HERE.parents[1]).returncode
        results.append((module.stem, status, time.monotonic() - start))
    print("=== summary")
    for name, status, seconds in results:
        print(f"{'ok  ' if status == 0 else 'FAIL'} {name} ({seconds:.0f} s)")
    return 0 if all(status == 0 for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
