#!/usr/bin/env python3
"""The summary of one tools/device-bench.sh call: every run's exit and time with its report in one
JSON file (the device tool brings back 8 files, so not one per report), and a short account of
where issue 22's acceptance stands, printed.

  python3 tools/bench-summary.py RESULTS_DIR --json results.json

RESULTS_DIR is the device script's folder of reports: runs.tsv (name, exit status, seconds and
limit of each run, as its bench() wrote them), NAME.json reports (vkprompt bench, bench peak,
bench matmul, peer_bench.py) and NAME.txt logs (check-golden.py). What it prints:
- each golden check's exit (0: every case within its tolerance);
- the peer's construction: every peer report must say numTransformerSubmodules 1, promptRows P
  and a decoder length of T, or the summary says which does not (their times are void then);
- per model and weight precision: VkPrompt at each activation precision, the peer eager and
  compiled (with its compile time), VkPrompt's ratio to the faster peer against the goal of 1.5
  (saying so where no compiled peer was timed, the goal being against the faster of the two),
  and peak memory beside the peer's;
- bench peak's rate, and for each bench matmul report the share of the step's product FLOPs in
  products at half of it or more;
- the runs that failed, timed out (exit 124) or were skipped.
Exits 0 whatever the results (they are for a person to read), 2 on bad arguments.
Python's standard library only.
"""
import argparse
import csv
import json
import os
import sys

GOAL = 1.5  # issue 22: VkPrompt's bf16 step against the faster of the eager and compiled peer


def load(directory):
    """([run], {name: report}, {name: log}) of a results folder; a run is {name, exit, seconds, limit}."""
    runs = []
    path = os.path.join(directory, "runs.tsv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            for name, code, seconds, limit in csv.reader(f, delimiter="\t"):
                runs.append({"name": name, "exit": None if code == "skipped" else int(code),
                             "seconds": int(seconds), "limit": int(limit)})
    reports, logs = {}, {}
    for file in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(file)
        if ext == ".txt":
            with open(os.path.join(directory, file), errors="replace") as f:
                logs[stem] = f.read()
        elif ext == ".json" and stem != "devices":
            with open(os.path.join(directory, file)) as f:
                try:
                    reports[stem] = json.load(f)
                except json.JSONDecodeError as e:  # a run killed while writing
                    reports[stem] = {"schema": "unreadable", "error": str(e)}
    return runs, reports, logs


def is_step(r):
    return r.get("schema") == "vkprompt-bench/1"


def is_peer(r):
    return is_step(r) and not r["implementation"].startswith("vkprompt")


def median(r):
    return (r.get("stepMs") or {}).get("median")


def peer_construction(r):
    """None where a peer report shows the prompt on the encoder only, else what is wrong."""
    b = r["batch"]
    expected = {"numTransformerSubmodules": 1, "promptRows": b["promptLength"], "decoderLength": b["targetLength"],
                "encoderLength": b["promptLength"] + b["inputLength"]}
    wrong = [f"{k} {r.get(k)} (expected {v})" for k, v in expected.items() if r.get(k) != v]
    return ", ".join(wrong) or None


def ms(value):
    return "-" if value is None else f"{value:.1f}"


def gib(value):
    return "-" if value is None else f"{value / 2**30:.1f}"


def summarize(runs, reports):
    """(lines to print, the comparisons as data)."""
    lines, comparisons = [], []
    for run in runs:
        if run["name"].startswith("check-golden"):
            verdict = "skipped" if run["exit"] is None else "pass" if run["exit"] == 0 else f"FAIL (exit {run['exit']})"
            lines.append(f"golden {run['name']}: {verdict}")

    peers = {name: r for name, r in reports.items() if is_peer(r)}
    bad = {name: peer_construction(r) for name, r in peers.items() if peer_construction(r)}
    lines.append(f"peer construction (prompt on the encoder only): {len(peers) - len(bad)} of {len(peers)} peer reports ok"
                 + "".join(f"\n  VOID {name}: {why}" for name, why in sorted(bad.items())))

    # One comparison per model, weight precision and recompute setting, where VkPrompt ran.
    def key(r):
        return r["model"]["shape"], r["precision"], r["recompute"]
    for k in sorted({key(r) for r in reports.values() if is_step(r) and not is_peer(r)}):
        vk = {n: r for n, r in reports.items() if is_step(r) and not is_peer(r) and key(r) == k}
        # The peer of the same step: strict fp32 only (a TF32 peer is shown, not compared), and
        # only where its construction is right.
        same = [(n, r) for n, r in peers.items() if key(r) == k and n not in bad]
        timed = [r for _, r in same if median(r) is not None and not r.get("tf32")]
        best = min(timed, key=median) if timed else None
        # The goal is against the faster of eager and compiled: with no compiled peer timed (its
        # compile failed, or the budget cut it) a ratio says so rather than claim the goal.
        compiled = any(r.get("compiled") for r in timed)
        shape, precision, recompute = k
        row = {"shape": shape, "precision": precision, "recompute": recompute,
               "vkprompt": {n: {"activations": r["activationPrecision"], "ms": median(r), "peakMemoryBytes": r.get("peakMemoryBytes"),
                                "error": r.get("error")} for n, r in vk.items()},
               "peer": {n: {"ms": median(r), "compiled": r.get("compiled", False), "compileSeconds": r.get("compileSeconds"),
                            "tf32": r.get("tf32", False), "peakMemoryBytes": r.get("peakMemoryBytes"), "error": r.get("error")}
                        for n, r in same},
               "fasterPeer": next((n for n, r in same if r is best), None), "compiledPeerTimed": compiled}
        head = f"{shape} {precision}{' recompute' if recompute else ''}:"
        for n, r in sorted(vk.items()):
            ratio = median(best) / median(r) if best and median(r) else None
            row["vkprompt"][n]["vsFasterPeer"] = ratio
            verdict = "" if ratio is None or precision != "bf16" else \
                f" (goal 1.5x: {'met' if ratio >= GOAL else 'not met'}{'' if compiled else ' against the eager peer alone, no compiled peer timed'})"
            lines.append(f"{head} VkPrompt, activations {r['activationPrecision']} ({n}): {ms(median(r))} ms, {gib(r.get('peakMemoryBytes'))} GiB"
                         + (f", {ratio:.2f}x the faster peer{verdict}" if ratio else "") + (f"; error: {r['error']}" if r.get("error") else ""))
        for n, r in sorted(same):
            what = ("compiled" + (f", compile {r['compileSeconds']:.0f} s" if r.get("compileSeconds") is not None else "")
                    if r.get("compiled") else "TF32" if r.get("tf32") else "eager")
            lines.append(f"{head} peer {what} ({n}): {ms(median(r))} ms, {gib(r.get('peakMemoryBytes'))} GiB"
                         + (f"; error: {r['error']}" if r.get("error") else "") + (" (the faster)" if r is best else ""))
        comparisons.append(row)

    peak = next((r for r in reports.values() if r.get("schema") == "vkprompt-bench-peak/1"), None)
    peak_tflops = max((run["tflops"] for run in peak["runs"] if run["ok"]), default=None) if peak else None
    if peak:
        lines.append("bench peak: " + ", ".join(f"{run['fragments']} {run['tflops']:.0f} TFLOP/s{'' if run['ok'] else ' WRONG'}"
                                                 for run in peak["runs"]))
    for name, r in sorted(reports.items()):
        if r.get("schema") != "vkprompt-bench-matmul/1" or not peak_tflops:
            continue
        measured = [p for p in r["products"] if p.get("tflops")]
        flops = sum(p["flops"] * p["count"] for p in measured)
        at_half = sum(p["flops"] * p["count"] for p in measured if p["tflops"] >= peak_tflops / 2)
        lines.append(f"{name}: products {r['step']['tflops']:.1f} TFLOP/s over the step; {at_half / flops:.0%} of their FLOPs "
                     f"in products at half of bench peak ({peak_tflops / 2:.0f} TFLOP/s) or more" if flops else f"{name}: no product timed")

    failed = [f"{run['name']} ({'skipped' if run['exit'] is None else 'timed out' if run['exit'] == 124 else 'exit ' + str(run['exit'])})"
              for run in runs if run["exit"] != 0]
    lines.append("runs not ok: " + (", ".join(failed) if failed else "none"))
    return lines, comparisons


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="the device script's folder of reports")
    p.add_argument("--json", help="where to write every run and report as one JSON file")
    args = p.parse_args(argv)
    if not os.path.isdir(args.results):
        p.error(f"{args.results} is no folder")
    runs, reports, logs = load(args.results)
    lines, comparisons = summarize(runs, reports)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"schema": "vkprompt-device-bench/1", "runs": runs, "comparisons": comparisons, "summary": lines,
                       "reports": reports, "logs": logs}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
