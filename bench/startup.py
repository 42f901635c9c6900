"""How long does `sharedctx` take to start? `--help` and `case list` beside a bare `python -c pass` (issue 13).

    python bench/startup.py                     # 11 runs of each, interleaved
    python bench/startup.py --quick             # 5 runs of each
    python bench/startup.py --baseline /path/to/an/older/checkout   # the same commands on that source tree

Each command is a fresh interpreter, run exactly as the console script runs it (`from sharedctx.cli import
main; main()`), in a scratch folder holding a default journal with a few cases, so `case list` opens the
store, the backends and the redactor like a user's command does. Runs are interleaved (one of each, then
again) so that load from other processes on a shared machine falls on every command alike; one warm-up
round goes first (bytecode caches, page cache; PYTHONDONTWRITEBYTECODE is not passed on). The figures are
medians; the load average before and after is printed with them, because on a loaded machine every number
moves.

Targets (issue 13): `--help` ≤ 0.25 s and `case list` ≤ 0.4 s (median), printed with PASS or MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stats import fmt_ms, fmt_ratio, print_table, verdict

MAIN = "import sys; sys.argv[0] = 'sharedctx'; from sharedctx.cli import main; sys.exit(main())"
TARGETS = {"sharedctx --help": 0.25, "sharedctx case list": 0.4}


def commands() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import sharedctx'": [py, "-c", "import sharedctx"],
        "sharedctx --help": [py, "-c", MAIN, "--help"],
        "sharedctx case --help": [py, "-c", MAIN, "case", "--help"],
        "sharedctx case list": [py, "-c", MAIN, "case", "list"],
    }


# Not passed on: SHAREDCTX_CONFIG (the scratch journal is the default one) and PYTHONDONTWRITEBYTECODE, set on
# some of this project's machines, which would make every run compile sharedctx from source (~0.1 s more per
# command) and defeat the warm-up; an installed `sharedctx` runs from its bytecode cache.
_NOT_PASSED = ("SHAREDCTX_CONFIG", "PYTHONDONTWRITEBYTECODE")


def _env(source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED} | {"COLUMNS": "100"}
    if source is not None:  # this source tree's `sharedctx` package wins over the installed one
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _time_once(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:]) or argv[-1]} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def measure(runs: int, folder: Path, source: Path | None) -> dict[str, list[float]]:
    env = _env(source)
    cmds = commands()
    for argv in cmds.values():  # warm-up: compile bytecode, fill the page cache
        _time_once(argv, folder, env)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            samples[name].append(_time_once(argv, folder, env))
    return samples


def prepare(folder: Path, cases: int) -> None:
    """A default journal (no sharedctx.toml: the SQLite file and the local Markdown backend) with some cases."""
    env = _env(None)
    script = ("from sharedctx import SharedContext\n"
              "with SharedContext.open(worker=False) as ctx:\n"
              f"    for i in range({cases}):\n"
              "        ctx.open_case(f'checkout 5xx spike {i}', service='checkout', fingerprint=f'fp-{i}')\n")
    subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, check=True)


def report(samples: dict[str, list[float]], label: str, load: tuple[str, str]) -> dict[str, dict[str, float]]:
    floor = statistics.median(samples["python -c pass"])
    rows, out = [], {}
    for name, values in samples.items():
        med = statistics.median(values)
        target = TARGETS.get(name)
        rows.append([name, fmt_ms(med), fmt_ms(min(values)), fmt_ratio(med / floor),
                     f"≤ {target:g} s {verdict(med <= target)}" if target else ""])
        out[name] = {"median_s": med, "min_s": min(values), "ratio_to_python": med / floor, "runs": len(values)}
    print_table(f"CLI start-up{label}: median of {len(samples['python -c pass'])} runs each",
                ["command", "median", "min", "× python -c pass", "target"], rows,
                caption=f"load average (1, 5, 15 min) before: {load[0]} · after: {load[1]} · {os.cpu_count()} CPUs")
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11, help="timed runs of each command (default 11)")
    ap.add_argument("--quick", action="store_true", help="5 runs of each")
    ap.add_argument("--cases", type=int, default=20, help="cases in the scratch journal (default 20)")
    ap.add_argument("--baseline", type=Path, help="also measure this source tree (a checkout holding sharedctx/)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    runs = 5 if args.quick else args.runs
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="sctx-startup-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.cases)
        trees: list[tuple[str, Path | None]] = [("", None)]
        if args.baseline is not None:
            trees.append((f" (baseline: {args.baseline})", args.baseline.resolve()))
        for label, source in trees:
            before = _load()
            samples = measure(runs, folder, source)
            results[label.strip() or "this tree"] = report(samples, label, (before, _load()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
