"""LaBo's concept selection: conceptlab's native greedy against a from-scratch greedy and apricot.

Three implementations choose the same k concepts per class (see
``conceptlab.concepts.selection``):

- **ours**: ``submodular_select`` -- incremental gains, one (n × m) numpy pass per greedy step;
- **reference**: ``greedy_reference`` -- the textbook greedy that evaluates F(S ∪ {i}) from
  scratch for every candidate at every step (vectorised numpy inside F);
- **apricot** (``pip install apricot-select``; not a conceptlab dependency): exactly as LaBo calls
  it -- ``MixtureSelection([CustomSelection(MI), FacilityLocationSelection(metric='cosine')],
  optimizer='naive')`` on the augmented matrix [scale·mi, features] -- which our
  ``coverage="labo-code"`` reproduces; and, for the cosine facility location alone
  (``mi_scale=0``), ``FacilityLocationSelection(metric='precomputed', optimizer='naive')`` on the
  cosine matrix. Unpatched apricot refuses negative inputs (LaBo#1), so the benchmark's text
  features are made non-negative (|x|) for every method alike. apricot's numba functions are
  compiled in a warm-up call that is not timed.

Inputs are synthetic (sizes like LaBo's CIFAR-10 run: 10 classes, ~450 candidates each, d = 768,
k = 50); every run also checks that the three selections agree (facility location often has exact
ties -- two mutual nearest neighbours gain the same -- which ours and the reference break to the
lowest index and apricot breaks by rounding, so "agree" can be below 100% there).

Run: ``python benchmarks/labo_select.py`` (about a minute), ``--help`` for options.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from conceptlab.concepts.selection import clip_scores, coverage_matrix, greedy_reference, labo_objective, mi_scores, submodular_select


def make_problem(classes: int, candidates: int, dim: int, images: int, seed: int):
    rng = np.random.default_rng(seed)
    T = np.abs(rng.normal(size=(classes * candidates, dim)) + 0.3 * rng.normal(size=(1, dim)))
    c2c = np.repeat(np.arange(classes), candidates)
    y = rng.integers(0, classes, images)
    X = np.abs(rng.normal(size=(images, dim))) + 0.5 * np.eye(classes, dim)[y]
    return X, y, T, c2c


def run_reference(X, y, T, c2c, k, mi_scale, w2, coverage):
    classes = int(c2c.max()) + 1
    mi, _ = mi_scores(clip_scores(X, y, T, classes))
    out = {}
    for cls in range(classes):
        cand = np.flatnonzero(c2c == cls)
        G = coverage_matrix(T[cand], mi[cand], mi_scale, coverage)
        local, _ = greedy_reference(labo_objective(mi[cand], G, mi_scale, w2), len(cand), k)
        out[cls] = cand[local].tolist()
    return out


def run_apricot(X, y, T, c2c, k, mi_scale, w2, coverage):
    import apricot

    classes = int(c2c.max()) + 1
    mi, _ = mi_scores(clip_scores(X, y, T, classes))
    out = {}
    for cls in range(classes):
        cand = np.flatnonzero(c2c == cls)
        if coverage == "labo-code":
            weights = np.array([0.0 if mi_scale == 0 else 1.0, w2])
            selector = apricot.MixtureSelection(
                k, functions=[apricot.CustomSelection(k, lambda Z: Z[:, 0].sum()), apricot.FacilityLocationSelection(k, metric="cosine")],
                weights=weights, optimizer="naive", verbose=False,
            ).fit(np.hstack([mi_scale * mi[cand, None], T[cand]]))
        else:
            S = np.clip(coverage_matrix(T[cand], mi[cand], mi_scale, "facility"), 0.0, None)
            selector = apricot.FacilityLocationSelection(k, metric="precomputed", optimizer="naive").fit(S)
        out[cls] = cand[np.asarray(selector.ranking)].tolist()
    return out


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def agreement(a: dict, b: dict) -> float:
    same = sum(a[c] == b[c] for c in a)
    return same / len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=450, help="candidates per class")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=50, help="concepts kept per class")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow from-scratch greedy")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover
        pass

    X, y, T, c2c = make_problem(args.classes, args.candidates, args.dim, args.images, args.seed)
    print(f"LaBo selection: {args.classes} classes x {args.candidates} candidates, d={args.dim}, k={args.k}, {args.images} images, {args.threads} thread(s)")
    try:
        import apricot  # noqa: F401

        have_apricot = True
        warm = make_problem(2, 12, 8, 40, 1)
        start = time.perf_counter()
        for coverage, scale in (("labo-code", 1e7), ("facility", 0.0)):
            run_apricot(*warm, 3, scale, 1.0, coverage)
        print(f"apricot-select installed; numba warm-up (not timed below): {time.perf_counter() - start:.1f}s")
    except ImportError:
        have_apricot = False
        print("apricot-select is not installed (pip install apricot-select): its column is left empty")

    configs = [
        ("facility, w=[1e7, 5] (CIFAR-10)", 1e7, 5.0, "facility"),
        ("facility only, w=[0, 1]", 0.0, 1.0, "facility"),
        ("labo-code, w=[1e7, 5]", 1e7, 5.0, "labo-code"),
        ("labo-code, w=[1e7, 0.1] (CUB)", 1e7, 0.1, "labo-code"),
    ]
    header = f"{'configuration':34s} {'ours':>8s} {'reference':>10s} {'apricot':>9s} {'=ref':>6s} {'=apricot':>9s}"
    print(header)
    print("-" * len(header))
    for label, scale, w2, coverage in configs:
        result, t_ours = timed(submodular_select, X, y, T, c2c, args.k, None, scale, w2, coverage)
        ours = {c: v for c, v in result.per_class.items()}
        ref_cell, ref_agree = "-", "-"
        if not args.no_reference:
            ref, t_ref = timed(run_reference, X, y, T, c2c, args.k, scale, w2, coverage)
            ref_cell, ref_agree = f"{t_ref:9.2f}s", f"{agreement(ours, ref):5.0%}"
        ap_cell, ap_agree = "-", "-"
        comparable = coverage == "labo-code" or scale == 0
        if have_apricot and comparable:
            ap, t_ap = timed(run_apricot, X, y, T, c2c, args.k, scale, w2, coverage)
            ap_cell, ap_agree = f"{t_ap:8.2f}s", f"{agreement(ours, ap):8.0%}"
        elif have_apricot:
            ap_agree = "n/a"  # apricot cannot mix MI with a cosine facility location (see the module docstring)
        print(f"{label:34s} {t_ours:7.2f}s {ref_cell:>10s} {ap_cell:>9s} {ref_agree:>6s} {ap_agree:>9s}")
    print("agreement = share of classes whose k selected concepts (in greedy order) are identical")


if __name__ == "__main__":
    main()
