#!/usr/bin/env python3
"""Render a kustomization the way `kubectl apply -k` would, for the subset
lethe's deploy/kubernetes uses: `resources` only (files and directories with a
kustomization.yaml of their own), no patches, generators or transformers.
Anything else is refused, so that what CI validates is exactly what kubectl
applies. Prints the resources as one multi-document YAML stream.

usage: render.py DIR
"""
import os
import sys

ALLOWED = {"apiVersion", "kind", "resources"}


def keys_of(text):
    """Top-level keys of a small YAML mapping (no PyYAML needed)."""
    return {line.split(":", 1)[0] for line in text.splitlines()
            if line and not line[0].isspace() and not line.startswith("#") and ":" in line}


def resources_of(text):
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("resources:"):
            inside = True
            continue
        if inside:
            if line.startswith("  - "):
                out.append(line[4:].strip())
            elif line.strip() and not line.startswith("#"):
                inside = False
    return out


def render(directory, seen):
    path = os.path.join(directory, "kustomization.yaml")
    real = os.path.realpath(path)
    if real in seen:
        sys.exit(f"{path}: included twice")
    seen.add(real)
    with open(path) as f:
        text = f.read()
    extra = keys_of(text) - ALLOWED
    if extra:
        sys.exit(f"{path}: only `resources` is supported here, not {sorted(extra)}")
    docs = []
    for r in resources_of(text):
        target = os.path.normpath(os.path.join(directory, r))
        if os.path.isdir(target):
            docs += render(target, seen)
        elif os.path.isfile(target):
            with open(target) as f:
                docs.append(f"# Source: {os.path.relpath(target)}\n" + f.read().strip("\n") + "\n")
        else:
            sys.exit(f"{path}: resource {r} does not exist")
    return docs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print("---\n".join(render(sys.argv[1], set())), end="")
