#!/usr/bin/env python3
"""Test of the memkit CLI (build/bin/memkit) against live segments.

A helper program (cli-helper, tests/cli/cli_helper.c) creates a segment and
keeps allocating, writing and freeing in it while every command of the CLI
runs; a second helper allocates blocks owned by itself and is SIGKILLed, so
that `reclaim` has a dead owner's blocks to free. Then: exit codes for a
missing name, a foreign /dev/shm object and a damaged file-backed segment.

Usage: test_cli.py --memkit PATH --helper PATH [--keep]
Every JSON output is parsed with the json module; every failed check is
reported, and the exit status is 1 if any failed.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

EXIT_OK, EXIT_DAMAGED, EXIT_USAGE, EXIT_NOSEG, EXIT_NOTMK, EXIT_OTHER = range(6)

failures = []
checks = 0


def check(cond, what, detail=""):
    global checks
    checks += 1
    if cond:
        print(f"  ok    {what}")
    else:
        failures.append(what)
        print(f"  FAIL  {what}" + (f"\n        {detail}" if detail else ""))
    return cond


class Cli:
    def __init__(self, path):
        self.path = path

    def run(self, *args, timeout=60):
        p = subprocess.run([self.path, *args], capture_output=True, timeout=timeout)
        # Text output must be printable; decode leniently so that a stray byte
        # fails a check instead of the whole script.
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def json(self, *args):
        """Run with --json; return (exit code, parsed document or None, stderr)."""
        rc, out, err = self.run("--json", *args)
        try:
            doc = json.loads(out)
        except ValueError as e:
            check(False, f"memkit --json {' '.join(args)}: valid JSON",
                  f"{e}: {out[:400]!r} stderr={err!r}")
            return rc, None, err
        return rc, doc, err


class Helper:
    """A helper process; waits for its READY line and parses key=value pairs."""

    def __init__(self, path, *args):
        self.p = subprocess.Popen([path, *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("READY"):
            self.p.kill()
            raise RuntimeError(f"helper {args} did not start: {line!r}")
        self.info = dict(kv.split("=", 1) for kv in line.split()[1:])
        self.pid = self.p.pid

    def stop(self):
        """Ask the helper to finish; returns its exit status (0: its own
        blocks still held their data and the heap validated)."""
        try:
            self.p.stdin.write("stop\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        try:
            out, _ = self.p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
            return -1, out
        return self.p.returncode, out

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()


def shm_path(name):
    return "/dev/shm/" + name.lstrip("/")


def test_usage(cli):
    print("usage and help")
    rc, out, err = cli.run("--help")
    check(rc == EXIT_OK and "Usage: memkit" in out and "Exit status" in out, "memkit --help")
    rc, out, err = cli.run()
    check(rc == EXIT_USAGE and "Usage" in err, "memkit with no command: exit 2")
    rc, out, err = cli.run("frobnicate")
    check(rc == EXIT_USAGE and "unknown command" in err, "unknown command: exit 2", err)
    for cmd in ["ls", "stat", "validate", "dump", "objects", "reclaim", "rm"]:
        rc, out, err = cli.run(cmd, "--help")
        check(rc == EXIT_OK and f"Usage: memkit {cmd}" in out, f"memkit {cmd} --help")
    rc, out, err = cli.run("stat")
    check(rc == EXIT_USAGE and "missing NAME" in err, "stat without NAME: exit 2", err)
    rc, out, err = cli.run("stat", "a", "b")
    check(rc == EXIT_USAGE, "stat with two names: exit 2", err)
    rc, out, err = cli.run("dump", "--bogus", "x")
    check(rc == EXIT_USAGE and "unknown option" in err, "unknown option: exit 2", err)
    rc, out, err = cli.run("ls", "extra")
    check(rc == EXIT_USAGE, "ls with an operand: exit 2", err)


def test_missing(cli, tag):
    print("missing segment")
    name = f"mk-cli-missing-{tag}"
    for cmd in ["stat", "validate", "dump", "objects", "reclaim", "rm"]:
        rc, out, err = cli.run(cmd, name)
        check(rc == EXIT_NOSEG and err.strip() != "" and out == "",
              f"{cmd} on a missing segment: exit 3 with a message", f"rc={rc} err={err!r}")
    rc, out, err = cli.run("validate", "/nonexistent-dir/heap.mk")
    check(rc == EXIT_NOSEG, "validate on a missing file: exit 3", f"rc={rc} err={err!r}")


def test_foreign(cli, tag):
    print("foreign /dev/shm object")
    name = f"mk-cli-foreign-{tag}"
    path = shm_path(name)
    with open(path, "wb") as f:
        f.write(os.urandom(64 * 1024))
    try:
        for cmd in ["stat", "validate", "dump", "objects", "reclaim"]:
            rc, out, err = cli.run(cmd, name)
            check(rc == EXIT_NOTMK and err.strip() != "",
                  f"{cmd} on garbage bytes: exit 4 with a message", f"rc={rc} err={err!r}")
        rc, doc, err = cli.json("ls")
        names = [s.get("name") for s in (doc or {}).get("segments", [])]
        check(rc == EXIT_OK and name not in names and "/" + name not in names,
              "ls skips a foreign object", f"{names}")
        rc, out, err = cli.run("rm", name)
        check(rc == EXIT_NOTMK and os.path.exists(path), "rm refuses a foreign object: exit 4",
              f"rc={rc} err={err!r}")
        rc, out, err = cli.run("rm", "--force", name)
        check(rc == EXIT_OK and not os.path.exists(path), "rm --force removes it",
              f"rc={rc} err={err!r}")
        # Tiny object: shorter than any header.
        with open(path, "wb") as f:
            f.write(b"xy")
        rc, out, err = cli.run("stat", name)
        check(rc == EXIT_NOTMK, "stat on a 2-byte object: exit 4", f"rc={rc} err={err!r}")
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_live(cli, helper_path, tag):
    print("live segment, used by two processes while the CLI runs")
    name = f"mk-cli-live-{tag}"
    if os.path.exists(shm_path(name)):
        os.unlink(shm_path(name))
    busy = Helper(helper_path, "serve", name)
    owner = None
    try:
        # A second process allocates blocks owned by itself, then dies.
        owner = Helper(helper_path, "owner", name)
        owned = int(owner.info.get("owned", "0"))
        owner_pid = owner.pid
        owner.kill()

        rc, doc, err = cli.json("ls")
        segs = {s["name"].lstrip("/"): s for s in (doc or {}).get("segments", [])}
        check(rc == EXIT_OK and name in segs, "ls --json lists the segment", f"rc={rc} {list(segs)}")
        rc, out, err = cli.run("ls")
        check(rc == EXIT_OK and name in out, "ls (text) lists the segment", out)

        rc, doc, err = cli.json("stat", name)
        ok = rc == EXIT_OK and doc is not None
        check(ok, "stat --json: exit 0", err)
        if ok:
            for key in ["name", "policy", "size", "max_size", "stats", "processes",
                        "cache_budget", "cached_blocks", "cached_bytes"]:
                check(key in doc, f"stat --json has '{key}'", str(list(doc)))
            procs = {p["pid"]: p for p in doc.get("processes", [])}
            check(busy.pid in procs and procs[busy.pid]["alive"] is True,
                  "stat lists the busy helper as alive", str(procs))
            check(owner_pid in procs and procs[owner_pid]["alive"] is False,
                  "stat lists the killed helper as dead", str(procs))
            check(all("start_time" in p for p in procs.values()), "every process has a start time")
            check(len(procs) == 2, "the CLI itself is not attached (observer)", str(procs))
            check(doc.get("policy") == busy.info.get("policy"), "stat shows the policy",
                  f"{doc.get('policy')} vs {busy.info}")
            check(doc.get("cache_budget", 0) > 0, "stat: the busy helper's segment has caches",
                  str(doc.get("cache_budget")))
            st = doc.get("stats", {})
            check(st.get("blocks_used", 0) > 0, "stat: blocks in use", str(st))
        rc, out, err = cli.run("stat", name, "--json")
        try:
            check(rc == EXIT_OK and json.loads(out)["name"] == "/" + name,
                  "--json after the command works too")
        except ValueError:
            check(False, "--json after the command works too", out)
        rc, out, err = cli.run("stat", name)
        check(rc == EXIT_OK and str(busy.pid) in out and "dead" in out,
              "stat (text) shows pids and a dead process", out)

        for i in range(5):  # several times, while the helper keeps working
            rc, doc, err = cli.json("validate", name)
            check(rc == EXIT_OK and doc is not None and doc.get("valid") is True,
                  f"validate --json #{i + 1}: exit 0, valid", f"rc={rc} {doc} {err}")
        rc, out, err = cli.run("validate", name)
        check(rc == EXIT_OK and "ok" in out.lower(), "validate (text): exit 0", out + err)

        rc, doc, err = cli.json("dump", name)
        ok = rc == EXIT_OK and doc is not None
        check(ok, "dump --json: exit 0", err)
        if ok:
            blocks = doc.get("blocks", [])
            states = {b.get("state") for b in blocks}
            check(len(blocks) > 0 and states <= {"used", "free"} and "used" in states,
                  "dump lists used blocks with their state", f"{len(blocks)} blocks {states}")
            offs = [b["offset"] for b in blocks]
            check(offs == sorted(offs) and len(set(offs)) == len(offs),
                  "dump: blocks in increasing offset order")
            check(all(b["size"] > 0 for b in blocks), "dump: every block has a size")
        rc, out, err = cli.run("dump", name)
        check(rc == EXIT_OK and "used" in out, "dump (text)", out[:300])

        rc, doc, err = cli.json("objects", name)
        ok = rc == EXIT_OK and doc is not None
        check(ok, "objects --json: exit 0", err)
        if ok:
            objs = {o["name"]: o for o in doc.get("objects", [])}
            for n in busy.info.get("objects", "").split(","):
                if n:
                    check(n in objs, f"objects lists '{n}'", str(list(objs)))
            for n in owner.info.get("objects", "").split(","):
                if n:
                    check(n in objs, f"objects lists '{n}' (published by the dead helper)",
                          str(list(objs)))
            check('weird "name"\\\t\u00e9\ufffd' in objs,
                  "objects --json escapes quotes, backslash, tab; keeps UTF-8; replaces bad bytes",
                  str(list(objs)))
            check(all("type" in o and "offset" in o and "size" in o for o in objs.values()),
                  "objects: type, offset and size for each")
        rc, out, err = cli.run("objects", name)
        check(rc == EXIT_OK and "config" in out, "objects (text)", out)
        check('weird "name"\\x5c\\x09\u00e9\\xff' in out,
              "objects (text) shows control and invalid bytes as \\xNN", out)

        # Processes killed in the middle of operations, perhaps holding the
        # segment's lock: the CLI's next operation repairs, the heap validates.
        rng = random.Random(int(tag))
        for k in range(6):
            churn = Helper(helper_path, "churn", name)
            time.sleep(rng.uniform(0.01, 0.08))
            churn.kill()
            rc, doc, err = cli.json("validate", name)
            check(rc == EXIT_OK and doc is not None and doc.get("valid") is True,
                  f"validate after SIGKILL #{k + 1} mid-operation: exit 0", f"rc={rc} {doc} {err}")

        rc, doc, err = cli.json("reclaim", name)
        ok = rc == EXIT_OK and doc is not None
        check(ok, "reclaim --json: exit 0", f"rc={rc} {err}")
        if ok:
            check(doc.get("blocks", -1) >= owned and owned > 0,
                  f"reclaim freed the dead owner's {owned} blocks", str(doc))
        rc, doc, err = cli.json("stat", name)
        if doc:
            pids = [p["pid"] for p in doc.get("processes", [])]
            check(owner_pid not in pids and busy.pid in pids,
                  "after reclaim the dead process is gone, the live one stays", str(pids))
        rc, doc, err = cli.json("reclaim", name)
        check(rc == EXIT_OK and doc is not None and doc.get("blocks") == 0,
              "a second reclaim finds nothing", str(doc))
        rc, doc, err = cli.json("validate", name)
        check(rc == EXIT_OK, "validate after reclaim: exit 0", f"{doc} {err}")

        rc, doc, err = cli.json("rm", name)
        check(rc == EXIT_OK and doc and doc.get("removed") is True
              and not os.path.exists(shm_path(name)), "rm removes the name", f"rc={rc} {err}")
        rc, out, err = cli.run("stat", name)
        check(rc == EXIT_NOSEG, "stat after rm: exit 3")
        rc, out = busy.stop()
        check(rc == 0, "the busy helper carried on, its blocks intact, after rm", out)
        busy = None
    finally:
        if busy:
            busy.kill()
        if os.path.exists(shm_path(name)):
            os.unlink(shm_path(name))


def test_damaged(cli, helper_path, tmpdir):
    print("damaged file-backed segment")
    path = os.path.join(tmpdir, "heap.mk")
    h = Helper(helper_path, "mkfile", path)
    rc, out = h.stop()
    check(rc == 0, "helper created a file-backed segment", out)
    rc, doc, err = cli.json("validate", path)
    check(rc == EXIT_OK and doc and doc.get("valid") is True, "validate on the intact file: exit 0",
          f"rc={rc} {doc} {err}")
    # A truncated copy: the header is intact but the object is shorter than
    # the segment it describes.
    short = os.path.join(tmpdir, "short.mk")
    with open(path, "rb") as f, open(short, "wb") as g:
        g.write(f.read(os.path.getsize(path) // 2))
    rc, out, err = cli.run("validate", short)
    check(rc == EXIT_NOTMK and "truncated" in err, "validate on a truncated copy: exit 4",
          f"rc={rc} {err}")
    rc, doc, err = cli.json("dump", path)
    blocks = [b for b in (doc or {}).get("blocks", []) if b["state"] == "used"]
    check(rc == EXIT_OK and len(blocks) >= 20, "dump of the file shows its blocks", f"rc={rc} {err}")
    check(any(b["offset"] == int(h.info["victim"]) for b in blocks),
          "dump shows the block at the offset alloc returned")
    rc, doc, err = cli.json("objects", path)
    check(rc == EXIT_OK and doc and [o["name"] for o in doc["objects"]] == ["persistent.root"],
          "objects of the file segment: its directory survived close", str(doc))
    # Corrupt the header word of a used block in the middle: the helper
    # wrote a marker at the start of its payload; the 8 bytes before the
    # payload are the block's header (docs/REGION.md, "Blocks").
    data = open(path, "rb").read()
    pos = data.find(h.info["marker"].encode())
    check(pos > 8, "found the marked block in the file", str(pos))
    with open(path, "r+b") as f:
        f.seek(pos - 8)
        f.write(b"\xa5" * 8)
    rc, doc, err = cli.json("validate", path)
    check(rc == EXIT_DAMAGED, "validate on the damaged file: exit 1", f"rc={rc} {doc} {err}")
    if doc:
        check(doc.get("valid") is False and doc.get("invariant"),
              "validate --json names the broken invariant", str(doc))
        check(isinstance(doc.get("offset"), int), "validate --json gives the offset", str(doc))
    rc, out, err = cli.run("validate", path)
    check(rc == EXIT_DAMAGED and "offset" in (out + err), "validate (text) names the damage",
          out + err)
    rc, out, err = cli.run("dump", path)
    check(rc in (EXIT_DAMAGED, EXIT_OK), "dump on the damaged file does not crash",
          f"rc={rc} {err}")
    # Garbage header (magic) in a file: not memkit.
    with open(path, "r+b") as f:
        f.write(b"NOTMEMKIT")
    rc, out, err = cli.run("validate", path)
    check(rc == EXIT_NOTMK, "validate on a file with a bad magic: exit 4", f"rc={rc} {err}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memkit", required=True)
    ap.add_argument("--helper", required=True)
    args = ap.parse_args()
    cli = Cli(args.memkit)
    tag = f"{os.getpid()}"
    test_usage(cli)
    test_missing(cli, tag)
    test_foreign(cli, tag)
    test_live(cli, args.helper, tag)
    with tempfile.TemporaryDirectory() as d:
        test_damaged(cli, args.helper, d)
    print(f"{checks - len(failures)}/{checks} checks passed")
    if failures:
        print("failed:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
