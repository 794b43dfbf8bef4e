"""Logging throughput from Python: 10 floats a step, like the peers' harness.

    python bench/python_log.py [--steps 100000 1000000]

Each case runs in a fresh interpreter so its peak RSS (``resource.getrusage``) is its own:

- ``build``: building the step's dict of 10 floats, nothing else (the loop's own cost);
- ``floor``: building it and reading every key and value once (what any logger must do);
- ``jsonl``: a plain JSON-lines writer (``json.dumps`` + ``write`` per step);
- ``tidelog``: ``tidelog.log(row)`` into an offline run, ``finish()`` included;
- ``busy``: ``tidelog`` while another Python thread computes (a data-loading thread): shows
  what ``log()`` costs when the GIL is contended.

Scalars/s counts 10 per step over the whole loop (wall clock); "net" subtracts the ``build``
time; "per CPU-s" divides by the process's CPU time (all its threads, the interpreter's start
included), which stays meaningful on a shared machine.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def rows(n):
    for i in range(n):
        x = i * 1e-3
        yield {"loss": x, "acc": x + 1, "lr": x + 2, "grad_norm": x + 3, "m4": x + 4,
               "m5": x + 5, "m6": x + 6, "m7": x + 7, "m8": x + 8, "m9": x + 9}


def case(name, n, workdir):
    t0 = time.perf_counter()
    size = 0
    if name == "build":
        for row in rows(n):
            pass
    elif name == "floor":
        acc = 0.0
        for row in rows(n):
            for k, v in row.items():
                acc += v
    elif name == "jsonl":
        path = os.path.join(workdir, "log.jsonl")
        with open(path, "w") as f:
            for step, row in enumerate(rows(n)):
                row["_step"] = step
                f.write(json.dumps(row) + "\n")
        size = os.path.getsize(path)
    elif name in ("tidelog", "busy"):
        import threading

        import tidelog

        stop = threading.Event()

        def spin():
            x = 0
            while not stop.is_set():
                x += 1

        if name == "busy":
            threading.Thread(target=spin, daemon=True).start()
        run = tidelog.init(project="bench", dir=workdir, mode="offline")
        t0 = time.perf_counter()
        log = tidelog.log
        for row in rows(n):
            log(row)
        run.finish()
        stop.set()
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(run.dir) for f in fs)
    else:
        raise SystemExit(f"unknown case {name}")
    elapsed = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"case": name, "steps": n, "seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "bytes": size, "peak_rss_mib": usage.ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--case")
    a = ap.parse_args()
    if a.case:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(case(a.case, a.steps[0], d)))
        return
    print(f"{'case':<8} {'steps':>9} {'seconds':>8} {'scalars/s':>11} {'net/s':>11} {'per CPU-s':>11} "
          f"{'bytes':>11} {'peak RSS':>9}")
    for n in a.steps:
        build = None
        for name in ("build", "floor", "jsonl", "tidelog", "busy"):
            out = subprocess.run([sys.executable, __file__, "--case", name, "--steps", str(n)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            if name == "build":
                build = r["seconds"]
            net = 10 * n / (r["seconds"] - build) if name != "build" and r["seconds"] > build else float("nan")
            print(f"{name:<8} {n:>9} {r['seconds']:>8.3f} {10 * n / r['seconds']:>11,.0f} {net:>11,.0f} "
                  f"{10 * n / r['cpu_seconds']:>11,.0f} "
                  f"{r['bytes']:>11,} {r['peak_rss_mib']:>7.1f}Mi")


if __name__ == "__main__":
    main()
