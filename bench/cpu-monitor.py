#!/usr/bin/env python3
"""CPU used on this machine by processes that are NOT part of a benchmark run.

The rig pins the contestant to CPU 1 and dnsperf + NSD to CPU 0, but nothing stops other work
on the machine (a `cargo build` in another checkout, ...) from landing on those CPUs. That
work steals cycles from the contestant or from the load generator and makes a trial slower
for reasons that have nothing to do with it. This tool records it so disturbed trials can be
spotted and re-run.

  cpu-monitor.py watch --root PID --out FILE [--interval 1] [--max-seconds N]
      every interval: total busy CPU (all CPUs, from /proc/stat) minus the CPU of PID and all
      its descendants = "foreign" CPU, in % of one CPU (2 CPUs busy = 200%), plus the busiest
      foreign processes. Exits when PID is gone or after --max-seconds.
  cpu-monitor.py wait-quiet --seconds N --timeout T [--below PCT]
      returns 0 once the machine has had < PCT % busy CPU (all of it foreign: call this before
      starting anything) for N consecutive seconds; 1 after T seconds.
  cpu-monitor.py filter RESULT_DIR [--monitor FILE] [--max-foreign PCT]
      the lines of RESULT_DIR/results.jsonl whose dnsperf run saw < PCT % foreign CPU on
      average (for report.py summary); lines without a dnsperf run pass.
  cpu-monitor.py annotate RESULT_DIR [--monitor FILE]
      for every dnsperf run in RESULT_DIR/logs (start = mtime of TAG.dnsperf.cmd, end = mtime
      of TAG.dnsperf), the mean and max foreign CPU during the run.
"""
import argparse
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def read_procs():
    """{pid: (ppid, cpu_ticks, comm)} for every process visible now."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        r = s.rfind(")")
        comm = s[s.find("(") + 1:r]
        f = s[r + 2:].split()
        # fields after comm: state ppid ... utime(11) stime(12). Not cutime/cstime: they jump by
        # a child's whole lifetime when it is reaped. So the CPU of our short-lived processes
        # (dig, ps) that exit between samples counts as foreign: a few % at most.
        out[int(d)] = (int(f[1]), int(f[11]) + int(f[12]), comm)
    return out


def total_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal. irq/softirq are left out: loopback DNS
    # traffic at tens of kQPS is mostly softirq time that no process is charged with (with
    # IRQ time accounting), i.e. it is ours, not foreign. steal is reported separately.
    return v[0] + v[1] + v[2], v[7]


def tree(procs, root):
    kids = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, stack = set(), [root]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        stack.extend(kids.get(p, []))
    return seen


def cmd_watch(a):
    me = os.getpid()
    prev_p, (prev_b, prev_st), prev_t = read_procs(), total_busy(), time.time()
    deadline = prev_t + a.max_seconds
    with open(a.out, "w", buffering=1) as out:
        out.write("# epoch\tforeign_cpu_pct\tsteal_pct\tours_cpu_pct\ttop_foreign\n")
        while time.time() < deadline:
            time.sleep(a.interval)
            procs, (busy, st), t = read_procs(), total_busy(), time.time()
            dt = max(t - prev_t, 1e-3)
            ours = tree(procs, a.root) | {me}
            ours_ticks = 0
            foreign = []
            for pid, (_, ticks, comm) in procs.items():
                d = ticks - prev_p[pid][1] if pid in prev_p else 0
                if d <= 0:
                    continue
                if pid in ours:
                    ours_ticks += d
                else:
                    foreign.append((d, comm, pid))
            foreign_pct = max(0.0, (busy - prev_b - ours_ticks) * 100.0 / HZ / dt)
            foreign.sort(reverse=True)
            top = ",".join(f"{c}:{d * 100.0 / HZ / dt:.0f}" for d, c, _ in foreign[:3])
            out.write(f"{t:.1f}\t{foreign_pct:.0f}\t{(st - prev_st) * 100.0 / HZ / dt:.0f}\t"
                      f"{ours_ticks * 100.0 / HZ / dt:.0f}\t{top}\n")
            prev_p, prev_b, prev_st, prev_t = procs, busy, st, t
            if a.root not in procs:
                break


def cmd_wait_quiet(a):
    deadline = time.time() + a.timeout
    quiet = 0.0
    prev_b, prev_t = total_busy()[0], time.time()
    while time.time() < deadline:
        time.sleep(1.0)
        b, t = total_busy()[0], time.time()
        pct = (b - prev_b) * 100.0 / HZ / max(t - prev_t, 1e-3)
        quiet = quiet + (t - prev_t) if pct < a.below else 0.0
        prev_b, prev_t = b, t
        if quiet >= a.seconds:
            return 0
    return 1


def load_monitor(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            p = line.rstrip("\n").split("\t")
            rows.append((float(p[0]), float(p[1]), p[4] if len(p) > 4 else ""))
    return rows


def windows(result_dir, rows):
    """[(tag, mean foreign %, max row)] for every dnsperf run of result_dir, in run order."""
    logs = os.path.join(result_dir, "logs")
    tags = sorted((os.path.getmtime(os.path.join(logs, n)), n[:-len(".dnsperf.cmd")])
                  for n in os.listdir(logs) if n.endswith(".dnsperf.cmd"))
    out = []
    for _, tag in tags:
        t0 = os.path.getmtime(os.path.join(logs, tag + ".dnsperf.cmd"))
        t1 = os.path.getmtime(os.path.join(logs, tag + ".dnsperf"))
        w = [r for r in rows if t0 + 0.5 < r[0] <= t1 + 0.5]
        if w:
            out.append((tag, sum(r[1] for r in w) / len(w), max(w, key=lambda r: r[1])))
        else:
            out.append((tag, None, None))
    return out


def cmd_filter(a):
    """Prints the records of RESULT_DIR/results.jsonl whose dnsperf run had < max-foreign %
    foreign CPU on average (records without a dnsperf run pass)."""
    import json
    mon = a.monitor or os.path.join(a.result_dir, "cpu-monitor.tsv")
    foreign = {tag: m for tag, m, _ in windows(a.result_dir, load_monitor(mon))}
    with open(os.path.join(a.result_dir, "results.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("phase") == "qps":
                tag = f"{r['contestant']}-{r['size']}-qps-{r['scenario'].replace('@', '_')}-r{r['rep']}"
                m = foreign.get(tag)
                if m is None or m >= a.max_foreign:
                    continue
            sys.stdout.write(line)


def cmd_annotate(a):
    mon = a.monitor or os.path.join(a.result_dir, "cpu-monitor.tsv")
    print(f"\nForeign CPU (% of one CPU; other work on the machine) during the dnsperf runs of {a.result_dir}:\n")
    print("| trial | foreign CPU % mean | max | busiest foreign (at max) |")
    print("|---|---:|---:|---|")
    for tag, mean, mx in windows(a.result_dir, load_monitor(mon)):
        if mean is None:
            print(f"| {tag} | - | - | no samples |")
        else:
            print(f"| {tag} | {mean:.0f} | {mx[1]:.0f} | {mx[2]} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--root", type=int, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--interval", type=float, default=1.0)
    w.add_argument("--max-seconds", type=float, default=6 * 3600)
    q = sub.add_parser("wait-quiet")
    q.add_argument("--seconds", type=float, required=True)
    q.add_argument("--timeout", type=float, required=True)
    q.add_argument("--below", type=float, default=15.0)
    fl = sub.add_parser("filter")
    fl.add_argument("result_dir")
    fl.add_argument("--monitor")
    fl.add_argument("--max-foreign", type=float, default=25.0)
    n = sub.add_parser("annotate")
    n.add_argument("result_dir")
    n.add_argument("--monitor")
    a = ap.parse_args()
    return {"watch": cmd_watch, "wait-quiet": cmd_wait_quiet, "annotate": cmd_annotate, "filter": cmd_filter}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
