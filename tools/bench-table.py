#!/usr/bin/env python3
"""One markdown table from several benchmark reports (JSON from `vkprompt bench` or
tools/peer/peer_bench.py, docs/benchmarks.md), one row per report, in the order given.

  python3 tools/bench-table.py results/*.json > table.md

"vs peer" is the peer's median step time over this row's, for a VkPrompt row that has a peer
row on the same device, shape, batch, lengths, weight precision, TF32 and recompute setting: above
1 means VkPrompt is faster. Where several peer rows match (eager and torch.compile), the fastest
is the one compared; a TF32 peer row (--tf32) is compared with no VkPrompt row, whose fp32 is
strict. A peer row's implementation says what the peer did: its num_transformer_submodules (1:
the prompt on the encoder only; reports from before it was recorded say PEFT's default, 2),
torch.compile with its compile time, and TF32. VkPrompt keeps activations in fp32 whatever its weights are stored as,
while the peer's bf16 computes in bf16 too; the "weights / activations" column shows both. The
"attention" column is VkPrompt's --attention setting and what each attention ran as under it; a
VkPrompt run whose products were tuned first says VKPROMPT_MATMUL_TUNE=1 after its version.

  python3 tools/bench-table.py --breakdown vk.json peer.json > breakdown.md

--breakdown sets the reports' GPU time per step side by side instead, one column per report
(named by its file), by op category and by phase: VkPrompt's kernels mapped into the categories
by vkprompt_category, the peer's already so counted by peer_bench.py --profile (its
CATEGORIES). Python's standard library only.
"""
import json
import os
import sys

COLUMNS = ["implementation", "device", "model", "batch x (input + prompt) -> target", "weights / activations", "attention",
           "step ms: median (min-max)", "examples/s", "tokens/s", "TFLOP/s", "peak memory GiB", "vs peer"]


def key(r):
    """What two runs must share to be compared."""
    b = r["batch"]
    return (r["device"]["name"], r["model"]["shape"], b["batchSize"], b["inputLength"], b["targetLength"],
            b["promptLength"], r["precision"], r.get("tf32", False), r["recompute"])


def is_peer(r):
    return not r["implementation"].startswith("vkprompt")


def peer_settings(r):
    """What the peer did, after its versions."""
    settings = [f"num_transformer_submodules={r['numTransformerSubmodules']}" if "numTransformerSubmodules" in r
                else "num_transformer_submodules unset (PEFT's default, 2)"]
    if r.get("compile"):
        seconds = r.get("compileSeconds")
        settings.append("torch.compile" + ("" if seconds is None else f" ({seconds:.0f} s to compile)"))
    if r.get("tf32"):
        settings.append("TF32")
    return ", ".join(settings)


def num(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"


def attention(r):
    """What ran, fused or unfused (per attention where they differ), after the setting when that was auto; "-" for the peer."""
    a = r.get("attention")
    if not a:
        return "-"
    sites = [("encoder self", a["encoderSelf"]), ("decoder self", a["decoderSelf"]), ("cross", a["cross"])]
    ran = sites[0][1] if len({kind for _, kind in sites}) == 1 else ", ".join(f"{name} {kind}" for name, kind in sites)
    return ran if a["setting"] == ran else f"{a['setting']}: {ran}"


def row(r, peers):
    b = r["batch"]
    step = r.get("stepMs")
    if r.get("error") or not step:
        timing = f"failed: {r.get('error', 'no timed step')}"
    else:
        timing = f"{num(step['median'], 1)} ({num(step['min'], 1)}-{num(step['max'], 1)})"
    peer = peers.get(key(r)) if not is_peer(r) else None
    ratio = "-"
    if peer and step and peer.get("stepMs"):
        ratio = f"{peer['stepMs']['median'] / step['median']:.2f}x"
    peak = r.get("peakMemoryBytes")
    model = r["model"]["shape"] + (" (recompute)" if r["recompute"] else "")
    implementation = r["implementation"] + (", " + peer_settings(r) if is_peer(r) else
                                            ", VKPROMPT_MATMUL_TUNE=1" if r.get("tuneMatMul") else "")
    return [implementation, r["device"]["name"], model,
            f"{b['batchSize']} x ({b['inputLength']} + {b['promptLength']}) -> {b['targetLength']}",
            f"{r['precision']} / {r.get('activationPrecision', r['precision'])}", attention(r), timing,
            num(r.get("examplesPerSecond"), 2), num(r.get("tokensPerSecond"), 1), num(r.get("tflops"), 3),
            "-" if peak is None else f"{peak / 2**30:.2f}", ratio]


# peer_bench.py's CATEGORIES and PHASES, in the same order (a test checks they agree).
CATEGORIES = ("matmul", "attention", "softmax", "norm", "elementwise", "copy", "loss", "optimizer", "other")
PHASES = ("encoder_forward", "decoder_forward", "lm_head_loss", "forward", "backward", "optimizer", "other")


def vkprompt_category(kernel):
    """The op category of one of VkPrompt's kernels (its breakdown's op name), as peer_bench.py
    counts the peer's: products (every matmul variant) apart from attention fused into one kernel,
    the softmax and its backward, RMSNorm, copies and casts (copy, to_half, fill), the loss, the
    optimizer, embeddings as other; every other kernel is one elementwise pass (dropout, the
    gated activations, relu, add)."""
    if kernel.startswith(("fused_attention", "flash_attention")):
        return "attention"
    if kernel.startswith("matmul"):
        return "matmul"
    if "softmax" in kernel:
        return "softmax"
    if kernel.startswith("rmsnorm"):
        return "norm"
    if kernel in ("copy", "fill") or kernel.startswith("to_"):
        return "copy"
    if kernel.startswith("cross_entropy"):
        return "loss"
    if kernel.startswith("adafactor"):
        return "optimizer"
    if kernel.startswith("embedding"):
        return "other"
    return "elementwise"


def breakdown_ms(r):
    """({category: ms}, {phase: ms}) per step of a report's breakdown, or None without one."""
    b = r.get("breakdown")
    if not b:
        return None
    if "categories" in b:
        categories = {c["name"]: c["ms"] for c in b["categories"]}
    else:
        categories = {}
        for op in b["ops"]:
            categories[vkprompt_category(op["name"])] = categories.get(vkprompt_category(op["name"]), 0.0) + op["ms"]
    # VkPrompt's backward/recompute (under --recompute) is part of its backward.
    phases = {}
    for p in b["phases"]:
        name = p["name"].split("/")[0]
        phases[name] = phases.get(name, 0.0) + p["ms"]
    return categories, phases


def breakdown_table(paths, reports):
    """The category and phase tables of --breakdown; reports without a breakdown are left out."""
    found = [(os.path.splitext(os.path.basename(p))[0], breakdown_ms(r)) for p, r in zip(paths, reports)]
    columns, found = [c for c, f in found if f], [f for _, f in found if f]
    lines = []
    for title, index, names in (("category", 0, CATEGORIES), ("phase", 1, PHASES)):
        used = [n for n in names if any(n in f[index] for f in found)]
        rows = [[n] + [num(f[index].get(n, 0.0), 1) for f in found] for n in used]
        rows.append(["GPU ms per step"] + [num(sum(f[index].values()), 1) for f in found])
        lines += ["| " + " | ".join([title] + columns) + " |", "|" + "---|" * (len(columns) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    return "\n".join(lines).rstrip("\n")


def main(argv):
    breakdown = argv[:1] == ["--breakdown"]
    paths = argv[1:] if breakdown else argv
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    reports = []
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        if report.get("schema") != "vkprompt-bench/1":
            print(f"bench-table: {path} is not a vkprompt-bench/1 report", file=sys.stderr)
            return 2
        reports.append(report)
    if breakdown:
        print(breakdown_table(paths, reports))
        return 0
    peers = {}
    for r in reports:  # the fastest peer of each key: the faster of eager and compiled
        if is_peer(r) and r.get("stepMs") and (key(r) not in peers or r["stepMs"]["median"] < peers[key(r)]["stepMs"]["median"]):
            peers[key(r)] = r
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row(r, peers)) + " |" for r in reports]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
