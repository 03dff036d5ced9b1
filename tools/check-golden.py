#!/usr/bin/env python3
"""Checks a vkprompt binary on one device against the golden references of ../shared/golden.

For every golden model and case, at each weight precision and activation storage (--activations): `vkprompt score` with and without the case's
prompt and `vkprompt grad`, compared with scores.json, scores_noprompt.json, loss.json and
grad.safetensors within the tolerances of tests/Model/GoldenTests.cs (int8: the cases of
cases-int8/, computed with int8 weights, within those of tests/Model/GoldenInt8Tests.cs). It exists for machines
without the .NET SDK (a GPU lent for a benchmark gets the self-contained binary, not the test
suite), so that the kernels a device selects for itself, the matrix-units ones included,
are checked there before they are timed. The cases run side by side (--jobs), since each of
vkprompt's processes spends most of its time starting. Only the Python standard library is needed.

  python3 tools/check-golden.py --vkprompt .publish/vkprompt --golden ../shared/golden

Exits 0 when every check passes, 1 when one fails, 2 on bad arguments.
"""
import argparse
import concurrent.futures
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

# tests/Model/GoldenTests.cs: docs/numerics.md's fp32 tolerances; 16-bit weights scale theirs with the unit
# roundoff u of the storage (u/2 relative for log-likelihoods and the loss, 8u for the gradient).
# On matrix units activations are rounded to fp16 too, within the same bounds; with every
# product there (VKPROMPT_MATRIX_UNITS=all, alone or with an extension: nv2,all) the gradient's bound
# adds 32 fp16 u.
# int8 weights are exact wherever they are read; on matrix units the forward's activations are
# rounded to fp16, which GoldenInt8Tests bounds as fp16 weights (u/2) and, for the gradient, as
# every product there (8u + 32u): those bounds here, since a device's use of its units is its own.
UNIT_ROUNDOFF = {"fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
ALL_PRODUCTS_GRADIENT = 32 * 2.0 ** -11 if "all" in os.environ.get("VKPROMPT_MATRIX_UNITS", "").lower().replace(" ", "").split(",") else 0.0


# tests/Model/ActivationPrecisionTests.cs: activations kept in 16 bits (--activations) move
# log-likelihoods and the loss by up to u/2 of the activations' storage and the gradient by up to 24u
# (docs/numerics.md, "16-bit activations"); with 16-bit weights too, the two errors add.


def weight_tolerances(precision):
    if precision == "int8":
        u = 2.0 ** -11
        return u / 2, 8 * u + 32 * u
    u = UNIT_ROUNDOFF.get(precision)
    return (1e-4, 1e-3) if u is None else (u / 2, 8 * u + ALL_PRODUCTS_GRADIENT)


# Where the device's plan puts bf16 fragments on the matrix units (DevicePlan.MatrixUnitsOperands,
# which a context decides once whatever a run's --activations), every product there rounds both
# operands to bf16 unless they are bf16 already: the bounds of bf16 weights and bf16 activations
# added (ActivationPrecisionTests.Bf16FragmentsStayNearGolden, docs/numerics.md section 8), u/2 + u/2
# and 8u + 24u with u = 2^-8, hold every product with a 16-bit or int8 weight; with every product
# there, the fp16 fragments' 32 fp16 u for attention's products becomes 32 bf16 u (derived from
# the same scaling with u, not yet measured).
BF16_U = 2.0 ** -8


def tolerances(precision, activations, bf16_fragments=False):
    score_tol, grad_tol = weight_tolerances(precision)
    all_products = ALL_PRODUCTS_GRADIENT * (BF16_U / 2.0 ** -11 if bf16_fragments else 1)
    if bf16_fragments and (precision != "fp32" or all_products):
        score_tol, grad_tol = max(score_tol, BF16_U), max(grad_tol, 32 * BF16_U + all_products)
    u = UNIT_ROUNDOFF.get(activations)
    if u is None:
        return score_tol, grad_tol
    # The fp32 bounds are fp32 summation's; 16-bit activations replace them rather than add to them.
    if precision == "fp32":
        score_tol, grad_tol = 0.0, all_products
    elif bf16_fragments:
        # bf16 activations are already in those bounds (fp16 ones, rounded again to bf16, too).
        return score_tol, grad_tol
    return score_tol + u / 2, grad_tol + 24 * u


def bf16_fragments(vkprompt, device):
    """Whether the plan of the device `--device` picks multiplies bf16 fragments (vkprompt devices --json):
    the index or name given, else auto's order (discrete, integrated, virtual, CPU)."""
    try:
        devices = json.loads(run([vkprompt, "devices", "--json"]))
    except (RuntimeError, ValueError) as e:
        print(f"check-golden: vkprompt devices failed ({e}); taking fp16 fragments", file=sys.stderr)
        return False
    if device.isdigit():
        chosen = [d for d in devices if d.get("index") == int(device)]
    elif device.startswith("auto"):
        order = ["discrete", "integrated", "virtual", "cpu"]
        chosen = sorted(devices, key=lambda d: order.index(d["deviceType"]) if d.get("deviceType") in order else len(order))
    else:
        chosen = [d for d in devices if device.lower() in d.get("name", "").lower()]
    plan = (chosen[0].get("plan") or {}) if chosen else {}
    return plan.get("matrixUnitsOperands") == "bf16"


def read_tensor(path, key):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    entry = json.loads(data[8:8 + n])[key]
    start, end = entry["data_offsets"]
    code = {"F32": "f", "F64": "d"}[entry["dtype"]]
    raw = data[8 + n + start:8 + n + end]
    return list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(code), code), raw))


def norm_relative_error(expected, actual):
    num = sum((a - e) ** 2 for a, e in zip(actual, expected))
    den = sum(e * e for e in expected)
    return math.sqrt(num / den)


def run(cmd, timeout=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd)} did not finish in {timeout:g} s")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout


def check(args, fragments_bf16, tmp, index, model, case, precision, activations):
    """One golden case at one weight precision and activation storage: its checks as (ok, line)."""
    model_dir = os.path.join(args.golden, model)
    case_dir = os.path.join(model_dir, "cases-int8" if precision == "int8" else "cases", case)
    data, prompt = os.path.join(case_dir, "data.jsonl"), os.path.join(case_dir, "prompt0.safetensors")
    score_tol, grad_tol = tolerances(precision, activations, fragments_bf16)
    base = [args.vkprompt, "--model", model_dir, "--data", data, "--device", args.device, "--precision", precision,
            "--activations", activations]
    where = f"{model}/{case} {precision} weights, {activations} activations"
    results = []

    def expect(what, ok, detail):
        results.append((ok, f"{'ok  ' if ok else 'FAIL'} {where} {what}: {detail}"))

    try:
        for name, extra in (("scores", ["--prompt", prompt]), ("scores_noprompt", [])):
            with open(os.path.join(case_dir, name + ".json")) as f:
                gold = json.load(f)
            got = [json.loads(line)["logprob"] for line in run([base[0], "score"] + base[1:] + extra, args.timeout).splitlines() if line.strip()]
            same = len(got) == len(gold)
            ok = same and all(abs(g - e) <= 1e-3 + score_tol * abs(e) for g, e in zip(got, gold))
            worst = max(abs(g - e) for g, e in zip(got, gold)) if same else math.inf
            expect(name, ok, f"{len(got)} of {len(gold)} examples, max |difference| {worst:.2e} "
                             f"(allowed 1e-3 + {score_tol:.1e}·|golden|)")
        out = os.path.join(tmp, f"grad-{index}.safetensors")
        loss = json.loads(run([base[0], "grad"] + base[1:] + ["--prompt", prompt, "--output", out], args.timeout))["loss"]
        with open(os.path.join(case_dir, "loss.json")) as f:
            gold_loss = json.load(f)["loss"]
        expect("loss", abs(loss - gold_loss) <= 1e-3 + score_tol * gold_loss, f"{loss:.6f} vs {gold_loss:.6f}")
        err = norm_relative_error(read_tensor(os.path.join(case_dir, "grad.safetensors"), "prompt_gradient"),
                                  read_tensor(out, "prompt_gradient"))
        expect("prompt gradient", err <= grad_tol, f"relative error {err:.2e} (allowed {grad_tol:.1e})")
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        expect("run", False, str(e))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vkprompt", default="./vkprompt", help="the vkprompt executable (default ./vkprompt)")
    ap.add_argument("--golden", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "golden"),
                    help="the golden folder (default ../shared/golden beside the checkout)")
    ap.add_argument("--precision", default="fp32,fp16,bf16,int8", help="comma-separated precisions (default fp32,fp16,bf16,int8)")
    ap.add_argument("--device", default="auto", help="passed to vkprompt --device")
    ap.add_argument("--activations", default="fp32,bf16",
                    help="comma-separated activation storages passed to vkprompt --activations (default fp32,bf16: "
                         "the exact path and the one a GPU's plan chooses)")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="cases checked at once, each by its own vkprompt processes (default: the CPU count, at most 8)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds each vkprompt process may take before it is stopped and its case fails (default: no limit); "
                         "a hang then names its case")
    args = ap.parse_args()
    if not os.path.isdir(args.golden):
        print(f"check-golden: no golden folder at {args.golden}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"check-golden: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2

    started = time.monotonic()
    fragments_bf16 = bf16_fragments(args.vkprompt, args.device)
    if fragments_bf16:
        print("check-golden: the device's matrix units multiply bf16 fragments; their bounds apply (docs/numerics.md section 8)")
    units = []
    for model in sorted(os.listdir(args.golden)):
        for precision, activations in [(p, a) for p in args.precision.split(",") for a in args.activations.split(",")]:
            cases_dir = os.path.join(args.golden, model, "cases-int8" if precision == "int8" else "cases")
            if os.path.isdir(cases_dir):
                units += [(model, case, precision, activations) for case in sorted(os.listdir(cases_dir))
                          if os.path.isfile(os.path.join(cases_dir, case, "grad.safetensors"))]
    # A check's process spends most of its time starting (the runtime, the Vulkan device, its
    # pipelines) rather than computing on the tiny models: one at a time, the 66 processes of the
    # default checks took over a minute on lavapipe and would on a GPU. So the cases run side by
    # side, each with its own gradient file, and their lines come out in the cases' order all the same.
    checks, failures = 0, []
    with tempfile.TemporaryDirectory(prefix="check-golden-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for results in pool.map(lambda iu: check(args, fragments_bf16, tmp, iu[0], *iu[1]), enumerate(units)):
            for ok, line in results:
                checks += 1
                print(line, flush=True)
                if not ok:
                    failures.append(line)
    print(f"check-golden: {checks - len(failures)} of {checks} checks passed in {time.monotonic() - started:.0f} s "
          f"({len(units)} runs of a case, {args.jobs} at once)")
    return 1 if failures or checks == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
