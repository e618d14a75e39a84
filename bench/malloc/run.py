#!/usr/bin/env python3
"""bench/malloc runner: every workload under every allocator, in one run.

Each workload is a separate process; the allocator is swapped in with
LD_PRELOAD (glibc: no preload). Wall time and the child's peak RSS
(os.wait4 rusage ru_maxrss, which covers the child and the descendants it
waited for, e.g. gcc's cc1) are measured per run; repetitions are
interleaved (repetition outermost, allocator order rotated each time) so
that a noisy moment hits every allocator alike; the medians are reported,
as absolute numbers and as ratios to glibc, with the geometric means, and the
goals of issue 5 are checked for memkit.

    bench-malloc [--runs N] [--quick] [--only W1,W2] [--allocators A1,A2] [--json FILE]

(build/bin/bench-malloc is this script with --build-dir set.) See README.md.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
TRACES = "/work/shared/traces"
SEED = 12345
NEAR_BASELINE_MIB = 16  # "RSS back near baseline" after the large-block test
PEERS = ["glibc", "mimalloc", "jemalloc", "tcmalloc"]
ALL_ALLOCATORS = PEERS + ["memkit"]


# ---- allocators ---------------------------------------------------------------------

def find_allocators(build_dir):
    """name -> preload path ('' for glibc), None when not installed/built."""
    def first(pattern):
        hits = sorted(glob.glob(pattern))
        return hits[0] if hits else None
    return {
        "glibc": "",
        "mimalloc": first(f"{LIBDIR}/libmimalloc.so.2*"),
        "jemalloc": first(f"{LIBDIR}/libjemalloc.so.2"),
        "tcmalloc": first(f"{LIBDIR}/libtcmalloc_minimal.so.4"),
        "memkit": first(os.path.join(build_dir, "lib", "libmemkit-malloc.so")),
    }


# ---- running one process ---------------------------------------------------------------

class Result:
    def __init__(self):
        self.time = None  # seconds
        self.rss_kib = None  # peak RSS
        self.checksum = None
        self.error = None  # why the run failed (crash, timeout, damage, ...)
        self.extra = {}

    def to_json(self):
        return {"time": self.time, "rss_kib": self.rss_kib, "checksum": self.checksum,
                "error": self.error, **self.extra}


def describe_status(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"crashed ({name})"
    return f"exit {os.WEXITSTATUS(status)}"


def spawn(argv, env, stdout, stderr, cwd=None):
    return subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, cwd=cwd,
                            start_new_session=True)


def reap(proc, timeout):
    """Waits for proc with os.wait4 (so that we get its rusage); kills its
    process group after `timeout` seconds. Returns (status, rusage, timed_out)."""
    if proc.returncode is not None:  # already reaped by Popen.poll()
        rc = proc.returncode
        return (rc << 8 if rc >= 0 else -rc), None, False
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = 0  # reaped here: keep Popen from waiting again
    return status, usage, bool(timed_out)


def launch(ctx, argv, lib, env, stdout, stderr, cwd=None):
    """Starts argv through malloc-bench-exec (see spawn.c: a child forked
    from this Python process would count the runner's RSS in its peak), with
    LD_PRELOAD=lib for the program only. Returns (Popen, result file)."""
    fd, result_file = tempfile.mkstemp(prefix="bench-malloc-", suffix=".rusage",
                                       dir=ctx.data_dir)
    os.close(fd)
    os.unlink(result_file)
    proc = spawn([ctx.exec_bin, result_file, lib or ""] + argv, env, stdout, stderr, cwd)
    return proc, result_file


def collect(proc, result_file, timeout, res):
    """Waits for a launched program; fills res.time, res.rss_kib and
    res.error (crash, non-zero exit, timeout). Returns the exit status."""
    launcher_status, _, timed_out = reap(proc, timeout)
    fields = {}
    if os.path.exists(result_file):
        with open(result_file) as f:
            fields = parse_fields(f.read())
        os.unlink(result_file)
    if timed_out:
        res.error = f"timeout ({timeout:.0f}s)"
        return None
    if "status" not in fields:
        res.error = "launcher failed: " + describe_status(launcher_status)
        return None
    res.time = float(fields["wall_s"])
    res.rss_kib = int(fields["maxrss_kib"])
    status = int(fields["status"])
    if status != 0:
        res.error = describe_status(status)
    return status


def run_process(ctx, argv, lib, env, cwd=None):
    """Runs argv under the allocator lib; returns (Result, stdout text)."""
    res = Result()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc, result_file = launch(ctx, argv, lib, env, out, err, cwd)
        collect(proc, result_file, ctx.timeout, res)
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace")
        errtext = err.read().decode(errors="replace").strip()
    if res.error and errtext:
        res.error += ": " + errtext.splitlines()[-1][:120]
    return res, text


def parse_fields(text):
    fields = {}
    for line in text.splitlines():
        for word in line.split():
            if "=" in word:
                k, v = word.split("=", 1)
                fields[k] = v
    return fields


def clean_env(extra=None):
    """The environment without any preload or allocator tuning (the
    launcher adds LD_PRELOAD for the program alone)."""
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "MALLOC_CONF", "MIMALLOC_OPTIONS", "MEMKIT_OPTIONS"):
        env.pop(k, None)
    env.update(extra or {})
    return env


# ---- workloads ---------------------------------------------------------------------

class Workload:
    """A program run once per allocator and repetition."""

    def __init__(self, name, models):
        self.name, self.models = name, models

    def prepare(self, ctx):
        pass

    def run(self, ctx, alloc, lib):
        raise NotImplementedError


class SyntheticWorkload(Workload):
    """One of malloc-workload's workloads; checks that the preload is in effect."""

    def __init__(self, name, sub, models, scale, quick_scale, args=()):
        super().__init__(name, models)
        self.sub, self.scale, self.quick_scale, self.args = sub, scale, quick_scale, list(args)

    def argv(self, ctx):
        scale = self.quick_scale if ctx.quick else self.scale
        return [ctx.workload_bin, self.sub, "--seed", str(SEED), "--scale", str(scale)] + self.args

    def run(self, ctx, alloc, lib):
        res, text = run_process(ctx, self.argv(ctx), lib, clean_env())
        f = parse_fields(text)
        res.checksum = f.get("checksum")
        for k in ("baseline_kib", "after_free_kib", "settled_kib"):
            if k in f:
                res.extra[k] = int(f[k])
        provider = f.get("malloc", "")
        expect = os.path.realpath(lib) if lib else None
        if not res.error and res.checksum is None:
            res.error = "no checksum printed"
        if not res.error and expect and os.path.realpath(provider) != expect:
            res.error = f"preload not in effect (malloc from {provider})"
        if not res.error and not expect and "libc.so" not in provider:
            res.error = f"expected glibc's malloc, got {provider}"
        return res


class ReplayWorkload(SyntheticWorkload):
    """A recorded trace, turned once into malloc-workload's op file."""

    def __init__(self, name, trace, models):
        super().__init__(name, "replay", models, 3, 0.3)
        self.trace = trace

    def prepare(self, ctx):
        src = os.path.join(TRACES, self.trace)
        self.ops = os.path.join(ctx.data_dir, self.trace.replace(".trace.xz", ".ops"))
        if not os.path.exists(src):
            raise RuntimeError(f"trace {src} not found")
        if os.path.exists(self.ops) and os.path.getmtime(self.ops) >= max(
                os.path.getmtime(src), os.path.getmtime(ctx.workload_bin)):
            return
        log(f"preparing {self.trace} ...")
        tmp = self.ops + ".tmp"
        subprocess.run([ctx.workload_bin, "prep", "--file", src, "--out", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        os.replace(tmp, self.ops)

    def argv(self, ctx):
        return super().argv(ctx) + ["--file", self.ops]


class PythonWorkload(Workload):
    def run(self, ctx, alloc, lib):
        scale = "0.3" if ctx.quick else "1"
        env = clean_env({"PYTHONMALLOC": "malloc"})
        res, text = run_process(ctx, [ctx.python, os.path.join(HERE, "alloc_heavy.py"),
                                      "--scale", scale, "--seed", str(SEED)], lib, env)
        f = parse_fields(text)
        res.checksum = f.get("checksum")
        if not res.error and res.checksum is None:
            res.error = "no checksum printed"
        return res


class GccWorkload(Workload):
    def prepare(self, ctx):
        funcs = 60 if ctx.quick else 200
        self.src = os.path.join(ctx.data_dir, f"gcc-input-{funcs}.c")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_cfile.py"), self.src,
                        "--funcs", str(funcs), "--seed", str(SEED)], check=True)

    def run(self, ctx, alloc, lib):
        obj = os.path.join(ctx.data_dir, "gcc-output.o")
        if os.path.exists(obj):
            os.unlink(obj)
        res, _ = run_process(ctx, [ctx.gcc, "-O2", "-c", self.src, "-o", obj], lib,
                             clean_env(), cwd=ctx.data_dir)
        if not res.error:
            with open(obj, "rb") as f:
                res.checksum = hashlib.sha256(f.read()).hexdigest()[:16]
        return res


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_command(port, *words, timeout=5.0):
    """Sends one command (RESP) and returns the first reply line."""
    msg = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(msg.encode())
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip()


class RedisWorkload(Workload):
    """redis-server under the allocator, a bounded redis-benchmark (not
    preloaded) as the client. Time: the client's run; peak RSS: the server's.
    Debian's redis links jemalloc, so glibc needs the shim preload. The keys
    are random (redis-benchmark seeds from the clock), so no checksum: the
    server must answer and hold keys at the end."""

    TESTS = "set,get,incr,lpush,lpop,sadd,hset,zadd"

    def run(self, ctx, alloc, lib):
        lib = lib or ctx.glibc_shim
        port = free_port()
        res = Result()
        workdir = tempfile.mkdtemp(prefix="bench-malloc-redis-", dir=ctx.data_dir)
        log_path = os.path.join(workdir, "server.log")
        with open(log_path, "wb") as logf:
            launcher, result_file = launch(
                ctx, [ctx.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                      "--dir", workdir], lib, clean_env(), logf, subprocess.STDOUT)
        try:
            self.session(ctx, launcher, port, lib, res)
        finally:
            try:
                redis_command(port, "SHUTDOWN", "NOSAVE", timeout=2)
            except OSError:
                pass
            server = Result()
            collect(launcher, result_file, 20, server)
            res.rss_kib = server.rss_kib
            if server.error and (not res.error or res.error == "server did not start"):
                res.error = "server " + server.error
            shutil.rmtree(workdir, ignore_errors=True)
        return res

    def session(self, ctx, launcher, port, lib, res):
        server = launcher  # exits when the server does
        if not wait_for_redis(server, port):
            res.error = "server did not start"
            return
        if not preload_mapped(launcher.pid, lib):
            res.error = "preload not in effect"
            return
        n = "20000" if ctx.quick else "100000"
        t0 = time.perf_counter()
        bench = subprocess.run([ctx.redis_benchmark, "-h", "127.0.0.1", "-p", str(port), "-n", n,
                                "-q", "-P", "16", "-r", "100000", "-d", "64", "-t", self.TESTS],
                               env=clean_env(), capture_output=True, timeout=ctx.timeout)
        res.time = time.perf_counter() - t0
        if bench.returncode != 0 or server.poll() is not None:
            res.error = ("server died during the benchmark" if server.poll() is not None
                         else f"redis-benchmark exit {bench.returncode}")
            return
        dbsize = redis_command(port, "DBSIZE")
        res.extra["dbsize"] = dbsize
        if not dbsize.startswith(":") or int(dbsize[1:]) == 0:
            res.error = f"unexpected DBSIZE reply {dbsize!r}"


def preload_mapped(launcher_pid, lib):
    """Whether the launcher's child (the server) has lib mapped."""
    try:
        with open(f"/proc/{launcher_pid}/task/{launcher_pid}/children") as f:
            kids = f.read().split()
        with open(f"/proc/{kids[0]}/maps") as f:
            return os.path.realpath(lib) in f.read()
    except (OSError, IndexError):
        return False


def wait_for_redis(server, port, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            return False
        try:
            if redis_command(port, "PING", timeout=1) == "+PONG":
                return True
        except OSError:
            time.sleep(0.05)
    return False


WORKLOADS = [
    SyntheticWorkload("larson", "larson", "server: threads replace random blocks, arrays "
                      "passed between threads (cross-thread frees)", 1, 0.25),
    SyntheticWorkload("xmalloc", "xmalloc", "producer/consumer: 2 threads allocate, 2 others "
                      "free", 1, 0.25),
    SyntheticWorkload("scratch", "scratch", "passive false sharing (cache-scratch)", 1, 0.25),
    SyntheticWorkload("churn", "churn", "one thread: random malloc/calloc/realloc/free", 1, 0.25),
    SyntheticWorkload("large", "large", "256 KiB-32 MiB blocks come and go; RSS after free",
                      1, 0.25),
    ReplayWorkload("replay-python", "python-compile.trace.xz",
                   "trace of python compiling its stdlib (3 passes)"),
    ReplayWorkload("replay-gcc", "gcc-cc1.trace.xz", "trace of cc1 -O2 (3 passes)"),
    PythonWorkload("python", "PYTHONMALLOC=malloc python3 alloc_heavy.py"),
    RedisWorkload("redis", "redis-server + redis-benchmark -P 16 (8 commands)"),
    GccWorkload("gcc", "gcc -O2 -c on a generated 300 KB C file"),
]


# ---- the run -------------------------------------------------------------------------

def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Context:
    pass


def make_context(args):
    ctx = Context()
    ctx.quick = args.quick
    ctx.timeout = args.timeout
    ctx.build_dir = os.path.abspath(args.build_dir)
    ctx.workload_bin = os.path.join(ctx.build_dir, "bin", "malloc-workload")
    ctx.glibc_shim = os.path.join(ctx.build_dir, "lib", "libmalloc-glibc-shim.so")
    ctx.exec_bin = os.path.join(ctx.build_dir, "bin", "malloc-bench-exec")
    for path in (ctx.workload_bin, ctx.glibc_shim, ctx.exec_bin):
        if not os.path.exists(path):
            sys.exit(f"bench-malloc: {path} not found: build the malloc-workload, "
                     "malloc-bench-exec and malloc-glibc-shim targets first")
    ctx.data_dir = os.path.join(ctx.build_dir, "bench-malloc-data")
    os.makedirs(ctx.data_dir, exist_ok=True)
    # The system's python (Debian's), not a pyenv shim: a shell wrapper
    # would be preloaded too and a different build would be measured.
    ctx.python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    ctx.gcc = shutil.which("gcc")
    ctx.redis_server = shutil.which("redis-server")
    ctx.redis_benchmark = shutil.which("redis-benchmark")
    return ctx


def select(names, known, what):
    if not names:
        return list(known)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in chosen if n not in known]
    if bad:
        sys.exit(f"bench-malloc: unknown {what}: {', '.join(bad)} (known: {', '.join(known)})")
    return chosen


def usable_workloads(ctx, chosen):
    out = []
    for w in WORKLOADS:
        if w.name not in chosen:
            continue
        missing = {"gcc": not ctx.gcc, "redis": not (ctx.redis_server and ctx.redis_benchmark)}
        if missing.get(w.name):
            log(f"skipping {w.name}: program not installed")
            continue
        w.prepare(ctx)
        out.append(w)
    return out


def run_all(ctx, workloads, allocs, libs, runs, warmup):
    samples = {(w.name, a): [] for w in workloads for a in allocs}
    if warmup:  # page cache, CPU frequency: the first run of anything is slow
        for w in workloads:
            log(f"warm-up: {w.name}")
            w.run(ctx, "glibc", "")
    for rep in range(runs):
        order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
        for w in workloads:
            for a in order:
                res = w.run(ctx, a, libs[a])
                samples[(w.name, a)].append(res)
                status = res.error or f"{res.time:.3f}s {res.rss_kib / 1024:.1f}MiB"
                log(f"[{rep + 1}/{runs}] {w.name:14} {a:9} {status}")
    return samples


# ---- summary ---------------------------------------------------------------------

def median_of(results, key):
    vals = [getattr(r, key) if key in ("time", "rss_kib") else r.extra.get(key)
            for r in results if not r.error]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def failure(results):
    errs = [r.error for r in results if r.error]
    return f"FAILED {len(errs)}/{len(results)}: {errs[0]}" if errs else None


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt_cell(value, base, unit_fmt):
    if value is None:
        return "-"
    s = unit_fmt(value)
    if base:
        s += f" ({value / base:.2f}x)"
    return s


def table(title, workloads, allocs, samples, key, unit_fmt):
    lines = [f"### {title}", "", "| workload | " + " | ".join(allocs) + " |",
             "|---|" + "---:|" * len(allocs)]
    for w in workloads:
        base = median_of(samples[(w.name, "glibc")], key) if "glibc" in allocs else None
        cells = []
        for a in allocs:
            fail = failure(samples[(w.name, a)])
            v = median_of(samples[(w.name, a)], key)
            cells.append(fail if fail and v is None else
                         fmt_cell(v, base, unit_fmt) + (" !" if fail else ""))
        lines.append(f"| {w.name} | " + " | ".join(cells) + " |")
    return lines


def geomeans(workloads, allocs, samples):
    """Geometric means of time and peak RSS ratios to glibc, over the
    workloads every allocator in the run completed."""
    complete = [w.name for w in workloads
                if all(median_of(samples[(w.name, a)], "time") is not None for a in allocs)]
    out = {}
    for a in allocs:
        for key in ("time", "rss_kib"):
            ratios = [median_of(samples[(w, a)], key) / median_of(samples[(w, "glibc")], key)
                      for w in complete]
            out[(a, key)] = geomean(ratios)
    return out, complete


def checksum_report(workloads, allocs, samples):
    lines = []
    for w in workloads:
        seen = {}
        for a in allocs:
            for r in samples[(w.name, a)]:
                if r.checksum is not None:
                    seen.setdefault(r.checksum, set()).add(a)
        if len(seen) > 1:
            lines.append(f"- CHECKSUM MISMATCH in {w.name}: " + "; ".join(
                f"{c}: {','.join(sorted(s))}" for c, s in seen.items()))
    return lines or ["- checksums: every allocator produced the same results "
                     "(redis: no checksum, random keys)"]


def large_table(allocs, samples):
    if not any(("large", a) in samples for a in allocs):
        return []
    lines = ["### Large-block test: resident set after freeing everything (MiB, medians)", "",
             "| allocator | baseline | after free | settled (200 ms + 100 small ops) | "
             "settled - baseline | peak |", "|---|---:|---:|---:|---:|---:|"]
    for a in allocs:
        rs = samples.get(("large", a), [])
        b, af, st = (median_of(rs, k) for k in ("baseline_kib", "after_free_kib", "settled_kib"))
        pk = median_of(rs, "rss_kib")
        if b is None:
            lines.append(f"| {a} | {failure(rs) or '-'} | | | | |")
            continue
        lines.append(f"| {a} | {b / 1024:.1f} | {af / 1024:.1f} | {st / 1024:.1f} | "
                     f"{(st - b) / 1024:.1f} | {pk / 1024:.1f} |")
    return lines


def goals(workloads, allocs, samples, gm, complete, libs, build_dir):
    if "memkit" not in allocs:
        where = os.path.join(build_dir, "lib", "libmemkit-malloc.so")
        reason = ("memkit NOT FOUND at " + where) if not libs.get("memkit") else \
            "memkit not selected (--allocators)"
        return [f"- goals not checked: {reason}"]
    if "glibc" not in allocs:
        return ["- goals not checked: glibc not selected (--allocators); every goal compares with it"]
    lines = []

    def mark(ok):
        return "HOLDS" if ok else "MISSED"
    slower = []
    for w in workloads:
        m, g = (median_of(samples[(w.name, a)], "time") for a in ("memkit", "glibc"))
        if m is None or g is None:
            slower.append(f"{w.name} ({failure(samples[(w.name, 'memkit')]) or 'no glibc'})")
        elif m > g:
            slower.append(f"{w.name} {m / g:.2f}x")
    lines.append(f"- memkit no slower than glibc on any workload: {mark(not slower)}"
                 + (f" (slower or failed: {', '.join(slower)})" if slower else ""))
    peers = [a for a in allocs if a != "memkit" and gm.get((a, "time"))]
    mt = gm.get(("memkit", "time"))
    if mt and peers:
        best = min(peers, key=lambda a: gm[(a, "time")])
        lines.append(f"- geomean time no worse than the best peer ({best} {gm[(best, 'time')]:.3f}):"
                     f" {mark(mt <= gm[(best, 'time')])} (memkit {mt:.3f})")
    else:
        lines.append("- geomean time no worse than the best peer: MISSED (no geomean)")
    mr = gm.get(("memkit", "rss_kib"))
    lines.append(f"- geomean peak RSS no worse than glibc's: "
                 + (f"{mark(mr <= 1.0)} (memkit {mr:.4f}x glibc)" if mr else "MISSED (no geomean)"))
    left_out = [w.name for w in workloads if w.name not in complete]
    if left_out:
        lines.append(f"- note: the geomeans leave out {', '.join(left_out)} (an allocator had no "
                     "successful run there), so they flatter whoever failed")
    rs = samples.get(("large", "memkit"), [])
    b, st = median_of(rs, "baseline_kib"), median_of(rs, "settled_kib")
    if b is None:
        lines.append("- RSS back near baseline after the large-block test: not measured")
    else:
        over = (st - b) / 1024
        lines.append(f"- RSS back near baseline after the large-block test (settled within "
                     f"{NEAR_BASELINE_MIB} MiB): {mark(over <= NEAR_BASELINE_MIB)} "
                     f"(+{over:.1f} MiB)")
    return lines


def machine_note():
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
            f"load average at the end {os.getloadavg()[0]:.2f}")


def summarize(args, ctx, workloads, allocs, libs, samples, runs, elapsed):
    gm, complete = geomeans(workloads, allocs, samples) if "glibc" in allocs else ({}, [])
    out = [f"## bench-malloc: {len(workloads)} workloads x {len(allocs)} allocators, "
           f"median of {runs} run(s){' (--quick)' if ctx.quick else ''}", "",
           f"Machine: {machine_note()}; run took {elapsed:.0f} s.", ""]
    for a in ALL_ALLOCATORS:
        if a in allocs:
            out.append(f"- {a}: {libs[a] or 'no preload (glibc ' + platform.libc_ver()[1] + ')'}")
        elif a == "memkit" and not libs.get("memkit"):
            out.append(f"- memkit: NOT FOUND ({os.path.join(ctx.build_dir, 'lib', 'libmemkit-malloc.so')})"
                       " - no memkit numbers in this run")
        elif not libs.get(a):
            out.append(f"- {a}: not installed")
    out.append("")
    out += table("Wall time (s, ratio to glibc)", workloads, allocs, samples, "time",
                 lambda v: f"{v:.3f}")
    out.append("")
    out += table("Peak RSS (MiB, ratio to glibc)", workloads, allocs, samples, "rss_kib",
                 lambda v: f"{v / 1024:.1f}")
    out.append("")
    if gm:
        out += ["### Geometric means of the ratios to glibc "
                f"(over {len(complete)} workloads: {', '.join(complete)})", "",
                "| | " + " | ".join(allocs) + " |", "|---|" + "---:|" * len(allocs)]
        for key, label in (("time", "time"), ("rss_kib", "peak RSS")):
            out.append(f"| {label} | " + " | ".join(
                f"{gm[(a, key)]:.3f}" if gm.get((a, key)) else "-" for a in allocs) + " |")
        out.append("")
    out += large_table(allocs, samples) + [""]
    out += ["### Checks", ""] + checksum_report(workloads, allocs, samples)
    out += ["", "### Goals (issue 5)", ""]
    out += goals(workloads, allocs, samples, gm, complete, libs, ctx.build_dir)
    out += ["", "A cell marked ! had failed runs besides the ones in its median; "
            "`FAILED k/n` means no run succeeded."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--runs", type=int, help="repetitions per workload and allocator "
                    "(default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smaller workloads, one run, no warm-up")
    ap.add_argument("--only", help="comma-separated workloads: " +
                    ",".join(w.name for w in WORKLOADS))
    ap.add_argument("--allocators", help="comma-separated: " + ",".join(ALL_ALLOCATORS))
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run (default 300)")
    ap.add_argument("--json", help="also write every sample to this file")
    args = ap.parse_args()
    ctx = make_context(args)
    libs = find_allocators(ctx.build_dir)
    allocs = [a for a in select(args.allocators, ALL_ALLOCATORS, "allocator")
              if libs.get(a) is not None]
    if not libs["memkit"]:
        log(f"bench-malloc: memkit NOT FOUND at {ctx.build_dir}/lib/libmemkit-malloc.so: "
            "running the peers only")
    runs = args.runs or (1 if args.quick else 5)
    workloads = usable_workloads(ctx, select(args.only, [w.name for w in WORKLOADS], "workload"))
    t0 = time.time()
    samples = run_all(ctx, workloads, allocs, libs, runs, warmup=not args.quick)
    report = summarize(args, ctx, workloads, allocs, libs, samples, runs, time.time() - t0)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "runs": runs, "quick": ctx.quick,
                       "allocators": {a: libs[a] for a in allocs},
                       "samples": {f"{w}/{a}": [r.to_json() for r in rs]
                                   for (w, a), rs in samples.items()}}, f, indent=1)
    failed = any(r.error for rs in samples.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
