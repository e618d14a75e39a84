"""An allocation-heavy Python program for the malloc benchmark.

Run with PYTHONMALLOC=malloc so that every Python object goes through the C
library's malloc (and so through the preloaded allocator). It builds and
drops many small objects of mixed sizes: a dict-of-records "database" with
string keys, JSON encoding and decoding, sorting tuples, growing and
shrinking lists, string building. Deterministic (fixed seed); prints a
checksum of the results so that runs under different allocators can be
compared.

    PYTHONMALLOC=malloc python3 alloc_heavy.py [--scale X] [--seed N]
"""
import argparse
import hashlib
import json
import random


class Record:
    __slots__ = ("key", "name", "tags", "score")

    def __init__(self, key, name, tags, score):
        self.key, self.name, self.tags, self.score = key, name, tags, score


def random_word(rng, lo=3, hi=12):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(lo, hi)))


def database(rng, n, digest):
    """Inserts, updates and deletes records in a dict: small objects with
    mixed lifetimes."""
    table = {}
    for i in range(n):
        key = f"user:{rng.randrange(n // 2)}"
        if key in table and rng.random() < 0.3:
            del table[key]
            continue
        table[key] = Record(key, random_word(rng), [random_word(rng) for _ in range(rng.randint(0, 5))],
                            rng.random())
    for key in sorted(table):
        r = table[key]
        digest.update(f"{key}:{r.name}:{','.join(r.tags)}:{r.score:.6f}".encode())
    return len(table)


def json_roundtrips(rng, n, digest):
    """Encodes and decodes nested documents: many short-lived strings,
    lists and dicts, plus a few large buffers."""
    total = 0
    for _ in range(n):
        doc = {random_word(rng): [rng.randint(0, 1 << 30) for _ in range(rng.randint(1, 40))]
               for _ in range(rng.randint(1, 20))}
        text = json.dumps(doc, sort_keys=True)
        back = json.loads(text)
        total += sum(len(v) for v in back.values())
        digest.update(text[:64].encode())
    return total


def sort_and_group(rng, n, digest):
    """Builds a large list of tuples, sorts it, groups it into lists."""
    rows = [(rng.randrange(1000), random_word(rng, 2, 6), rng.random()) for _ in range(n)]
    rows.sort()
    groups = {}
    for k, w, x in rows:
        groups.setdefault(k, []).append((w, x))
    for k in sorted(groups)[:50]:
        digest.update(repr(groups[k][:3]).encode())
    return len(groups)


def strings(rng, n, digest):
    """Grows and slices strings and bytes of widely varying sizes."""
    parts = []
    for _ in range(n):
        s = random_word(rng, 1, 200) * rng.randint(1, 50)
        parts.append(s[: rng.randint(0, len(s))])
        if len(parts) > 500:
            joined = "|".join(parts)
            digest.update(hashlib.sha1(joined.encode()).digest())
            parts = parts[250:]
    return len(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    digest = hashlib.sha256()
    scale = lambda n: max(1, int(n * args.scale))
    counts = [
        database(rng, scale(50000), digest),
        json_roundtrips(rng, scale(2500), digest),
        sort_and_group(rng, scale(60000), digest),
        strings(rng, scale(8000), digest),
    ]
    print(f"workload=python counts={counts} checksum={digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
