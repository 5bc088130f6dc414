#!/usr/bin/env python3
"""Ratio tables: one contestant (default iocdns) against every other, from rig results.

  compare.py [--base iocdns] [--clean CLEAN.jsonl] [--lat-max-gen-cpu PCT] RESULTS.jsonl [...]

For every @max scenario: median and best QPS over the repeats (other work on a shared machine
only ever lowers throughput, so the best run is the least disturbed estimate), the median
over the undisturbed runs only (--clean: a cpu-monitor.py filter output, e.g. a run-iocdns.sh
OUT/clean.jsonl), and base/peer ratios. Server CPU µs/query (the contestant's
CPU time over the run / queries answered) still compares contestants when dnsperf is the
bottleneck (dnsperf CPU near 100%: QPS is then the rig's ceiling, not the contestant's). For
fixed-rate scenarios: median p50/p99/p99.9 latency. Then load time and memory. Only trials with status ok are used.
"""
import argparse
import json
import statistics
from collections import defaultdict


def load(paths):
    recs = []
    for p in paths:
        with open(p) as f:
            recs.extend(json.loads(line) for line in f if line.strip())
    return [r for r in recs if r.get("status") == "ok"]


def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def med(v):
    return statistics.median(v) if v else None


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--base", default="iocdns")
    ap.add_argument("--clean")
    ap.add_argument("--lat-max-gen-cpu", type=float, default=None,
                    help="fixed-rate runs: keep only those where dnsperf used at most this %% CPU "
                         "(at 2000 QPS it needs ~10%%; more means the whole VM was slow then)")
    a = ap.parse_args()
    recs = load(a.results)
    clean = load([a.clean]) if a.clean else []
    qps = defaultdict(list)
    cqps = defaultdict(list)
    cpu_us = defaultdict(list)
    lat = defaultdict(list)
    for r in recs:
        d = r.get("dnsperf")
        if r["phase"] != "qps" or not d:
            continue
        key = (r["scenario"], r["contestant"])
        if r["scenario"].endswith("@max"):
            qps[key].append(d["qps"])
            if r.get("server_cpu_pct") and d.get("qps"):
                cpu_us[key].append(r["server_cpu_pct"] * 1e4 / d["qps"])
        elif "p50_latency_s" in d:
            if a.lat_max_gen_cpu is not None and (r.get("loadgen_cpu_pct") or 0) > a.lat_max_gen_cpu:
                continue
            lat[key].append((d["p50_latency_s"] * 1e3, d["p99_latency_s"] * 1e3, d["p999_latency_s"] * 1e3))
    for r in clean:
        d = r.get("dnsperf")
        if r["phase"] == "qps" and d and r["scenario"].endswith("@max"):
            cqps[(r["scenario"], r["contestant"])].append(d["qps"])
    contestants = list(dict.fromkeys(r["contestant"] for r in recs))
    scenarios = list(dict.fromkeys(r["scenario"] for r in recs if r["phase"] == "qps"))
    base = a.base

    print("Throughput (QPS); ratio = base / peer\n")
    print(f"| scenario | contestant | n | median QPS | best QPS | clean median (n) | {base}/peer median | {base}/peer best | {base}/peer clean | server CPU µs/query | {base}/peer CPU per query |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in scenarios:
        if not s.endswith("@max"):
            continue
        b = qps.get((s, base), [])
        bc = cqps.get((s, base), [])
        for c in contestants:
            v = qps.get((s, c), [])
            if not v:
                continue
            cv = cqps.get((s, c), [])
            same = c == base
            print(f"| {s} | {c} | {len(v)} | {fmt_int(med(v))} | {fmt_int(max(v))} | "
                  f"{fmt_int(med(cv))} ({len(cv)}) | "
                  f"{'-' if same else ratio(med(b), med(v))} | {'-' if same else ratio(max(b) if b else None, max(v))} | "
                  f"{'-' if same else ratio(med(bc), med(cv))} | "
                  f"{'-' if not cpu_us.get((s, c)) else f'{med(cpu_us[(s, c)]):.1f}'} | "
                  f"{'-' if same else ratio(med(cpu_us.get((s, base), [])), med(cpu_us.get((s, c), [])))} |")
    filt = "" if a.lat_max_gen_cpu is None else f"; only runs with dnsperf CPU <= {a.lat_max_gen_cpu:g}%"
    print(f"\nLatency at a fixed rate (ms, median over repeats{filt})\n")
    print(f"| scenario | contestant | n | p50 | p99 | p99.9 | {base}/peer p50 | {base}/peer p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in scenarios:
        if s.endswith("@max"):
            continue
        b = lat.get((s, base), [])
        bp50, bp99 = med([x[0] for x in b]), med([x[1] for x in b])
        for c in contestants:
            v = lat.get((s, c), [])
            if not v:
                continue
            p50, p99, p999 = (med([x[i] for x in v]) for i in range(3))
            same = c == base
            print(f"| {s} | {c} | {len(v)} | {p50:.3f} | {p99:.3f} | {p999:.3f} | "
                  f"{'-' if same else ratio(bp50, p50)} | {'-' if same else ratio(bp99, p99)} |")
    print("\nLoad time (start -> last list entry blocked) and memory, every start of the contestant\n")
    print(f"| contestant | list | n | load s median (min–max) | RSS after load MiB | peak RSS at ready MiB | RSS end of mix@max MiB | {base}/peer load | {base}/peer RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by = defaultdict(list)
    for r in recs:
        by[(r["contestant"], r["size"])].append(r)
    sizes = sorted({r["size"] for r in recs})
    for size in sizes:
        bl = by.get((base, size), [])
        bload = med([r["load_s"] for r in bl])
        brss = med([r["rss_ready_kb"] for r in bl])
        for c in contestants:
            rs = by.get((c, size), [])
            if not rs:
                continue
            loads = [r["load_s"] for r in rs]
            rss = med([r["rss_ready_kb"] for r in rs])
            hwm = med([r["hwm_ready_kb"] for r in rs])
            end = med([r["rss_end_kb"] for r in rs if r["scenario"] == "mix@max"])
            same = c == base
            print(f"| {c} | {size:,} | {len(rs)} | {med(loads):.2f} ({min(loads):.2f}–{max(loads):.2f}) | "
                  f"{rss / 1024:.0f} | {hwm / 1024:.0f} | {'-' if end is None else f'{end / 1024:.0f}'} | "
                  f"{'-' if same else ratio(bload, med(loads))} | {'-' if same else ratio(brss, rss)} |")


if __name__ == "__main__":
    main()
