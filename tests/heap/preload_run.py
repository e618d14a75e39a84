#!/usr/bin/env python3
"""Run real programs with and without LD_PRELOAD=libmemkit-malloc.so and
require the same output and exit status (ctest heap.preload-*).

usage: preload_run.py LIB CASE [ARGS]
  python              part of Python's regression suite, PYTHONMALLOC=malloc
  cxx SRC             g++ compiles SRC (cc1plus runs on memkit); the two
                      binaries must be identical, and so must their output
                      run with and without the preload
  git                 git init/add/commit/log/gc/fsck on a generated repository
Output that depends on time (durations, load average) is normalised away;
everything else must match byte for byte.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

LIB = os.path.abspath(sys.argv[1])
CASE = sys.argv[2]
PY_TESTS = ["test_dict", "test_list", "test_set", "test_unicode", "test_json", "test_re",
            "test_collections", "test_itertools", "test_functools", "test_bytes",
            "test_string", "test_sort", "test_heapq", "test_struct"]


def run(cmd, preload, cwd=None, extra_env=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = LIB
    env.update(extra_env or {})
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def normalise(text):
    text = re.sub(r"^\d+:\d\d:\d\d (load avg: [\d.]+ )?", "", text, flags=re.M)
    text = re.sub(r"\d+(\.\d+)? ?(sec|ms|s)\b", "<time>", text)
    return "\n".join(l for l in text.splitlines() if "Total duration" not in l)


def same(label, a, b):
    if a == b:
        print(f"{label}: identical")
        return True
    print(f"{label}: DIFFERENT\n--- without preload ---\n{a[1][-3000:]}\n--- with preload ---\n"
          f"{b[1][-3000:]}\n(exit {a[0]} vs {b[0]})")
    return False


def case_python():
    py = "/usr/bin/python3"
    cmd = [py, "-m", "test", "--timeout", "120"] + PY_TESTS
    env = {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}
    a = run(cmd, False, extra_env=env)
    b = run(cmd, True, extra_env=env)
    a, b = (a[0], normalise(a[1])), (b[0], normalise(b[1]))
    print(b[1][-400:])
    return same("python -m test", a, b) and a[0] == 0


def case_cxx(src):
    with tempfile.TemporaryDirectory(prefix="mk-preload-cxx-") as d:
        outs = []
        for preload in (False, True):
            exe = os.path.join(d, f"prog{int(preload)}")
            rc, text = run(["g++", "-O1", "-pthread", "-o", exe, src], preload)
            if rc != 0:
                print(text)
                return False
            outs.append(exe)
        with open(outs[0], "rb") as f0, open(outs[1], "rb") as f1:
            if f0.read() != f1.read():
                print("g++ produced different binaries with and without the preload")
                return False
        print("g++: identical binaries")
        a = run([outs[0]], False)
        b = run([outs[0]], True)
        print(b[1].strip())
        return same("c++ program", a, b) and a[0] == 0


def git_session(workdir):
    env = {"GIT_AUTHOR_NAME": "memkit", "GIT_AUTHOR_EMAIL": "t@memkit",
           "GIT_COMMITTER_NAME": "memkit", "GIT_COMMITTER_EMAIL": "t@memkit",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": workdir}
    return env


def case_git():
    results = []
    for preload in (False, True):
        d = tempfile.mkdtemp(prefix="mk-preload-git-")
        try:
            env = git_session(d)
            repo = os.path.join(d, "repo")
            os.mkdir(repo)
            log = []

            def git(*args):
                rc, text = run(["git", "-c", "init.defaultBranch=main", "-c", "gc.auto=0"] +
                               list(args), preload, cwd=repo, extra_env=env)
                log.append(f"$ git {' '.join(args)}\n[{rc}]\n{text}")
            git("init", "-q")
            for rnd in range(3):
                for i in range(300):
                    sub = os.path.join(repo, f"dir{i % 10}")
                    os.makedirs(sub, exist_ok=True)
                    with open(os.path.join(sub, f"file{i}.txt"), "w") as f:
                        f.write("".join(f"line {j} of file {i} round {rnd}\n"
                                        for j in range((i * 7 + rnd) % 200)))
                git("add", "-A")
                git("commit", "-q", "-m", f"round {rnd}")
            git("log", "--stat", "--format=%H %s")
            git("diff", "HEAD~2", "HEAD", "--shortstat")
            git("gc", "-q")
            git("fsck", "--full")
            git("count-objects", "-v")
            results.append((0, "\n".join(log).replace(d, "<dir>")))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(results[1][1][-300:])
    return same("git session", results[0], results[1])


if __name__ == "__main__":
    ok = {"python": case_python, "cxx": lambda: case_cxx(sys.argv[3]), "git": case_git}[CASE]()
    sys.exit(0 if ok else 1)
