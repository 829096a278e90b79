#!/usr/bin/env python3
"""Finds import cycles between the modules of Tidemark's crates.

`deploy/checks/module_cycles.py [CRATE_SRC_DIR ...]` (default: the library crates and
services: db-client, indexer, api, shared-types, service-kit). A module depends on
another when it names it in a path: `use crate::a::b`, `super::x`, `self::x`, a child
module by its bare name, or such a path inline in code. A path counts towards the
longest module it names (`crate::pipeline::chain::X` is a dependency on
`pipeline::chain`, not on `pipeline`). Declaring a child (`mod x;`) is not a
dependency. Test modules (`#[cfg(test)] mod tests` and files under `tests/`) are
skipped. Exits 1 and prints each cycle when there is one.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ["shared-types/src", "db-client/src", "service-kit/src", "indexer/src", "api/src"]
PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE = re.compile(r"\buse\s+([^;]+);", re.S)


def modules(src: Path):
    """Module path (tuple) → file, for every module file of the crate."""
    found = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("lib", "main", "mod"):
            parts = parts[:-1]
        if "tests" in parts or parts[-1:] == ["tests"] or "bin" in parts:
            continue
        found[tuple(parts)] = f
    return found


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod … { … }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree: str):
    """`a::{b, c::{d}}` → ["a::b", "a::c::d"]."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = k
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner = tree[:start], tree[start + 1:k]
                parts, d, last = [], 0, 0
                for q, c in enumerate(inner):
                    d += c == "{"
                    d -= c == "}"
                    if c == "," and d == 0:
                        parts.append(inner[last:q])
                        last = q + 1
                parts.append(inner[last:])
                return [x for p in parts if p for x in expand(prefix + p)]
    return [tree]


def resolve(mod, path_segments, mods, is_mod_rs):
    """The longest known module named by a path used in `mod`."""
    segs = list(path_segments)
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        base, rest = (), segs[1:]
    elif head == "super":
        base, rest = mod, segs
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base, rest = mod, segs[1:]
    elif mod + (head,) in mods:
        base, rest = mod, segs
    else:
        return None
    best = base
    for k in range(1, len(rest) + 1):
        if base + tuple(rest[:k]) in mods:
            best = base + tuple(rest[:k])
        else:
            break
    return best


def graph(src: Path):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for mod, f in mods.items():
        text = strip_tests(f.read_text())
        refs = []
        for m in USE.finditer(text):
            for p in expand(m.group(1)):
                p = re.sub(r"\bas\s*\w+$", "", p).rstrip(":*")
                refs.append(p.split("::"))
        for m in PATH.finditer(USE.sub("", text)):
            refs.append([m.group(1)] + m.group(2).strip(":").split("::"))
        for segs in refs:
            target = resolve(mod, [s for s in segs if s], mods, f.name == "mod.rs")
            if target is not None and target != mod and target in mods:
                # A module naming its own ancestor only to reach a sibling resolves to the
                # sibling above; naming the ancestor itself is a real dependency.
                edges[mod].add(target)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def name(m):
    return "crate" if not m else "::".join(m)


def main():
    dirs = sys.argv[1:] or DEFAULT
    bad = 0
    for d in dirs:
        src = (ROOT / d).resolve()
        edges = graph(src)
        found = cycles(edges)
        n_edges = sum(len(v) for v in edges.values())
        print(f"{d}: {len(edges)} modules, {n_edges} dependencies, {len(found)} cycles")
        for comp in found:
            bad += 1
            members = set(comp)
            print("  cycle: " + ", ".join(sorted(name(m) for m in comp)))
            for m in sorted(comp):
                for t in sorted(edges[m] & members):
                    print(f"    {name(m)} -> {name(t)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
