"""Compare the working tree with another commit, benchmark by benchmark, on the same machine in one run.

`make bench-compare BASE=<git ref>` runs this under one pair of throwaway servers (scripts/services.py). BASE is
checked out beside the working tree (var/bench-compare/<sha>, sharing .venv) with the working tree's benchmarks/
copied over it, so both sides run the same measurement against their own code. Each benchmark then runs A B A B ...
(the working tree first), each run on a fresh database of the same PostgreSQL and a flushed Redis, and every figure
the benchmarks report through benchmarks/figures.py is printed for both sides with the ratio of the medians and
its spread (the smallest and largest ratio of the runs paired round by round).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"ingest": "bench_ingest.py", "webhooks": "bench_webhooks.py", "delivery": "bench_delivery.py"}
SLOWER_THAN = 1.1


def base_tree(ref: str) -> Path:
    """BASE checked out under var/bench-compare/, with this tree's benchmarks/ and virtualenv."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = ROOT / "var" / "bench-compare" / sha[:12]
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=ROOT, check=True)
    shutil.rmtree(tree / "benchmarks", ignore_errors=True)
    shutil.copytree(ROOT / "benchmarks", tree / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tree / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")
    return tree


def fresh_database(run: int) -> str:
    """A new empty database on the running PostgreSQL, its URL; and Redis flushed."""
    import psycopg
    import redis

    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"bench_compare_{os.getpid()}_{run}"
    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushall()
    return urlunsplit(url._replace(path=f"/{name}"))


def run_once(*, tree: Path, script: str, run: int, extra_env: dict[str, str]) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        figures_path = out.name
    env = dict(os.environ, BENCH_FIGURES=figures_path, DATABASE_URL=fresh_database(run), **extra_env)
    env["PATH"] = f"{tree / '.venv' / 'bin'}:{env.get('PATH', '')}"
    completed = subprocess.run([sys.executable, f"benchmarks/{script}"], cwd=tree, env=env)
    lines = Path(figures_path).read_text().splitlines()
    os.unlink(figures_path)
    if completed.returncode:
        print(f"  ! {script} in {tree.name} exited {completed.returncode}", flush=True)
    return [json.loads(line) for line in lines]


def report(name: str, head: list[dict], base: list[dict]) -> bool:
    """Print one benchmark's figures side by side; True when none is more than SLOWER_THAN worse."""
    names = list(dict.fromkeys(f["name"] for f in head + base))
    ok = True
    print(f"\n{name}: figure | working tree (median; runs) | base | ratio (spread) ")
    for figure in names:
        a = [f["value"] for f in head if f["name"] == figure]
        b = [f["value"] for f in base if f["name"] == figure]
        meta = next(f for f in head + base if f["name"] == figure)
        if not a or not b:
            print(f"  {figure}: working tree {a or 'n/a'}, base {b or 'n/a'} {meta['unit']}")
            continue
        ratio = statistics.median(a) / statistics.median(b) if statistics.median(b) else float("inf")
        pairs = [x / y for x, y in zip(a, b, strict=False) if y]
        worse = ratio > SLOWER_THAN if meta["better"] == "lower" else ratio < 1 / SLOWER_THAN
        ok = ok and not worse
        print(
            f"  {figure}: {statistics.median(a):.4g} ({', '.join(f'{x:.4g}' for x in a)}) | "
            f"{statistics.median(b):.4g} ({', '.join(f'{x:.4g}' for x in b)}) {meta['unit']} | "
            f"{ratio:.3f}x ({min(pairs):.3f}-{max(pairs):.3f}){'  WORSE' if worse else ''}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a git ref: the code to compare the working tree with")
    parser.add_argument("--benches", default="ingest,webhooks,delivery")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = base_tree(args.base)
    verdict = True
    run = 0
    for name in [b.strip() for b in args.benches.split(",") if b.strip()]:
        script = SCRIPTS[name]
        sides: dict[str, list[dict]] = {"head": [], "base": []}
        for round_ in range(args.rounds):
            for side, tree in (("head", ROOT), ("base", base)):
                run += 1
                print(f"== {name} round {round_ + 1}/{args.rounds}: {side} ({tree})", flush=True)
                sides[side] += run_once(tree=tree, script=script, run=run, extra_env={})
        verdict = report(name, sides["head"], sides["base"]) and verdict
    print(f"\nno figure more than {SLOWER_THAN}x worse than the base" if verdict else "\nsome figure is worse (WORSE)")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
