"""How often does the gate promote a candidate no better than the champion? Today's rule against DeLong's test.

    uv run python benchmarks/gate_equal_candidates.py               # 1,100 reps per size and case, a few minutes
    uv run python benchmarks/gate_equal_candidates.py --reps 300 --sizes 5000 40000

Two models are simulated on one holdout by the binormal model: each row is positive with probability 0.1;
a model's score is its class's mean plus unit normal noise, the positives' mean set so that the model's ROC
AUC is the one asked for (sqrt(2) * Phi^-1(AUC)), and the two models' noise correlated 0.8 within each
class, as two models trained on the same features are. Per holdout size and case (an equal candidate, AUC
0.80 against 0.80, and a better one, 0.81 against 0.80) it prints the share of reps promoted by

- today's rule: candidate AUC > champion AUC + margin, margins 0.0 and 0.005 (``GatePolicy.min_margin``);
- DeLong's one-sided superiority test at 5% (``pipelines.paired_tests.delong_test``, margin 0),

with the simulation's 95% error, and the median holdout rows DeLong's test says a +0.01 AUC would need for
80% power. Then times the tests at 100k rows (DeLong, and the paired bootstrap of PR AUC and F1 with 1,000
resamples).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from pipelines import paired_tests  # noqa: E402

PREVALENCE = 0.1
CORRELATION = 0.8
CHAMPION_AUC = 0.80
ALPHA = 0.05
MARGINS = (0.0, 0.005)


def simulate(rows: int, auc_candidate: float, auc_champion: float, rng: np.random.Generator):
    """Truth and the two models' scores on one holdout (binormal, noise correlated within each class)."""
    positive = rng.random(rows) < PREVALENCE
    first, second = rng.standard_normal(rows), rng.standard_normal(rows)
    noise_champion = CORRELATION * first + math.sqrt(1 - CORRELATION ** 2) * second
    shift = [math.sqrt(2) * stats.norm.ppf(auc) for auc in (auc_candidate, auc_champion)]
    return positive.astype(int), shift[0] * positive + first, shift[1] * positive + noise_champion


def run_case(rows: int, auc_candidate: float, reps: int, rng: np.random.Generator) -> dict[str, float]:
    promoted = {f"AUC > champion + {margin:g}": 0 for margin in MARGINS} | {"DeLong 5%": 0}
    needed = []
    for _ in range(reps):
        positive, candidate, champion = simulate(rows, auc_candidate, CHAMPION_AUC, rng)
        result = paired_tests.delong_test(positive, candidate, champion, alpha=ALPHA, effect=0.01)
        for margin in MARGINS:
            promoted[f"AUC > champion + {margin:g}"] += result.candidate > result.champion + margin
        promoted["DeLong 5%"] += result.passed
        needed.append(result.rows_needed)
    shares = {rule: count / reps for rule, count in promoted.items()}
    shares["rows for +0.01"] = float(np.median(needed))
    return shares


def time_tests(rows: int = 100_000, seed: int = 1) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    positive, candidate, champion = simulate(rows, 0.81, CHAMPION_AUC, rng)
    probability = [1 / (1 + np.exp(-(s - 2))) for s in (candidate, champion)]
    timings = []
    for label, call in [
        ("DeLong (roc_auc)", lambda: paired_tests.delong_test(positive, candidate, champion)),
        ("paired z (log_loss)", lambda: paired_tests.loss_test("log_loss", positive, *probability)),
        ("paired bootstrap, 1,000 resamples (pr_auc)",
         lambda: paired_tests.bootstrap_test("pr_auc", positive, *probability, resamples=1000)),
        ("paired bootstrap, 1,000 resamples (f1)",
         lambda: paired_tests.bootstrap_test("f1", positive, *probability, threshold=0.3, resamples=1000)),
    ]:
        start = time.perf_counter()
        call()
        timings.append((label, time.perf_counter() - start))
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1100, help="reps per size and case (1,100: a 50%% share is "
                        "known within +-3 points at 95%%)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 100_000])
    parser.add_argument("--better", type=float, default=0.01, help="the better candidate's AUC gain")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    cases = [("equal (0.80 vs 0.80)", CHAMPION_AUC), (f"better (+{args.better:g})", CHAMPION_AUC + args.better)]
    rules = [f"AUC > champion + {margin:g}" for margin in MARGINS] + ["DeLong 5%"]
    started = time.perf_counter()
    table = []
    for rows in args.sizes:
        for name, auc in cases:
            shares = run_case(rows, auc, args.reps, rng)
            table.append((rows, name, shares))
            print(f"  {rows:>7,} rows, {name}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr)

    print(f"Share of {args.reps:,} reps promoted (prevalence {PREVALENCE:.0%}, score correlation {CORRELATION}, "
          f"champion AUC {CHAMPION_AUC}); +- the simulation's 95% error")
    header = f"{'holdout rows':>12}  {'candidate':<21}" + "".join(f"{rule:>24}" for rule in rules)
    print(header + f"{'DeLong rows for +0.01':>24}")
    print("-" * (len(header) + 24))
    for rows, name, shares in table:
        cells = "".join(f"{f'{shares[r]:.1%} +- {1.96 * math.sqrt(shares[r] * (1 - shares[r]) / args.reps):.1%}':>24}"
                        for r in rules)
        print(f"{rows:>12,}  {name:<21}{cells}{shares['rows for +0.01']:>24,.0f}")
    print(f"(simulation: {time.perf_counter() - started:.0f} s)")

    if not args.skip_timing:
        print("\nTime of one test at 100,000 rows:")
        for label, seconds in time_tests():
            print(f"  {label:<45} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
