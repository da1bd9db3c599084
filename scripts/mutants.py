#!/usr/bin/env python3
"""Helper for scripts/mutants.sh: parses the mutant list, checks it, applies one mutant.

The list format (see the header of scripts/mutants.txt):

    === <id> <name>
    desc: <one line>
    expect: killed | equivalent: <reason> | blind: <reason>
    tests: <cargo test arguments for the second stage>      (optional)
    --- file <path>
    --- original
    <exact text, one or more lines>
    --- replacement
    <text, zero or more lines>
    [--- file / --- original / --- replacement ... more edits]

Every original must occur exactly once in its file, or the helper fails loudly.
"""
import sys

DEFAULT_TESTS = "-p sigdrop --lib"


def die(msg):
    print(f"mutants: ERROR: {msg}", file=sys.stderr)
    sys.exit(2)


def parse(path):
    mutants = []
    cur = None
    block = None  # ("original"|"replacement", lines)
    file_ = None

    def close_block():
        nonlocal block
        if block is None:
            return
        kind, lines = block
        text = "\n".join(lines)
        if kind == "original":
            if not text.strip():
                die(f"mutant {cur['id']}: empty original")
            cur["edits"].append({"file": file_, "original": text, "replacement": None})
        else:
            if not cur["edits"] or cur["edits"][-1]["replacement"] is not None:
                die(f"mutant {cur['id']}: replacement without original")
            cur["edits"][-1]["replacement"] = text
        block = None

    with open(path) as f:
        for raw in f.read().split("\n"):
            if raw.startswith("=== "):
                close_block()
                parts = raw[4:].split(None, 1)
                cur = {"id": parts[0], "name": parts[1] if len(parts) > 1 else "",
                       "desc": "", "expect": "killed", "tests": DEFAULT_TESTS, "edits": []}
                file_ = None
                mutants.append(cur)
                continue
            if cur is None:
                continue  # header comments
            if raw.startswith("--- file "):
                close_block()
                file_ = raw[len("--- file "):].strip()
                continue
            if raw in ("--- original", "--- replacement"):
                close_block()
                if file_ is None:
                    die(f"mutant {cur['id']}: edit before '--- file'")
                block = (raw[4:], [])
                continue
            if block is not None:
                block[1].append(raw)
                continue
            if raw.startswith("#") or not raw.strip():
                continue
            key, _, value = raw.partition(":")
            key = key.strip()
            if key in ("desc", "expect", "tests"):
                cur[key] = value.strip()
            else:
                die(f"mutant {cur['id']}: unknown line {raw!r}")
        close_block()
    ids = [m["id"] for m in mutants]
    if len(set(ids)) != len(ids):
        die("duplicate mutant ids")
    for m in mutants:
        if not m["edits"]:
            die(f"mutant {m['id']}: no edits")
        for e in m["edits"]:
            # Trailing blank lines of a block are separators, not text.
            e["original"] = e["original"].rstrip("\n")
            if e["replacement"] is None:
                die(f"mutant {m['id']}: original without replacement")
            e["replacement"] = e["replacement"].rstrip("\n")
        kind = m["expect"].split(":", 1)[0].strip()
        if kind not in ("killed", "equivalent", "blind"):
            die(f"mutant {m['id']}: expect must be killed, equivalent: <reason> or blind: <reason>")
    return mutants


def check(mutants):
    bad = 0
    for m in mutants:
        for e in m["edits"]:
            try:
                text = open(e["file"]).read()
            except OSError as err:
                print(f"mutants: mutant {m['id']}: cannot read {e['file']}: {err}", file=sys.stderr)
                bad += 1
                continue
            n = text.count(e["original"])
            if n != 1:
                print(f"mutants: mutant {m['id']} ({m['name']}): original text found {n} times "
                      f"in {e['file']} (must be exactly once):\n{e['original']}", file=sys.stderr)
                bad += 1
    if bad:
        die(f"{bad} edit(s) no longer match the code: fix scripts/mutants.txt")


def select(mutants, args):
    if not args:
        return mutants
    out = []
    for m in mutants:
        for a in args:
            if a.startswith("f:"):
                needle = a[2:].lower()
                hay = " ".join([m["id"], m["name"], m["desc"]] + [e["file"] for e in m["edits"]]).lower()
                if needle in hay:
                    out.append(m)
                    break
            elif a == m["id"]:
                out.append(m)
                break
    if not out:
        die(f"no mutant matches {args}")
    return out


def failures(log):
    """Failed tests in a cargo test log, as binary::test; a binary that crashed counts too."""
    import re
    found = []
    binary = "?"
    for line in open(log, errors="replace"):
        m = re.match(r"\s*Running (?:unittests )?(\S+)", line)
        if m:
            binary = m.group(1).rsplit("/", 1)[-1].removesuffix(".rs")
            continue
        if line.lstrip().startswith("Doc-tests"):
            binary = "doc"
            continue
        m = re.match(r"test (\S+)(?: - should panic)? \.\.\. FAILED", line) or re.match(r"thread '([^']+)' .*panicked at", line)
        if m and m.group(1) != "main":
            name = f"{binary}::{m.group(1)}"
            if name not in found:
                found.append(name)
            continue
        m = re.search(r"process didn't exit successfully: `[^`]*/deps/([A-Za-z0-9_]+)-[0-9a-f]+", line)
        if m and "signal" in line:
            name = f"{m.group(1)} (crashed)"
            if name not in found:
                found.append(name)
    print(", ".join(found))


def main():
    if len(sys.argv) < 3:
        die("usage: mutants.py <list> check|ids|files|field|apply ...")
    mutants = parse(sys.argv[1])
    cmd = sys.argv[2]
    rest = sys.argv[3:]
    by_id = {m["id"]: m for m in mutants}
    if cmd == "failures":
        failures(rest[0])
        return
    if cmd == "check":
        check(mutants)
        print(f"mutants: {len(mutants)} mutants, every original found exactly once")
    elif cmd == "ids":
        print(" ".join(m["id"] for m in select(mutants, rest)))
    elif cmd == "files":
        m = by_id[rest[0]]
        print("\n".join(sorted({e["file"] for e in m["edits"]})))
    elif cmd == "field":
        m = by_id[rest[0]]
        if rest[1] == "file":
            print(", ".join(sorted({e["file"] for e in m["edits"]})))
        else:
            print(m[rest[1]])
    elif cmd == "apply":
        m = by_id[rest[0]]
        check([m])
        for e in m["edits"]:
            text = open(e["file"]).read()
            if text.count(e["original"]) != 1:
                die(f"mutant {m['id']}: an earlier edit of this mutant changed the text of a later one")
            text = text.replace(e["original"], e["replacement"], 1)
            with open(e["file"], "w") as f:
                f.write(text)
    else:
        die(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
