#!/usr/bin/env python3
"""Check that a batch job's metrics are well-formed exposition text.

usage: check-metrics.py [FILE|-] [--require NAME ...] [--openmetrics] [--json]
       check-metrics.py --url http://127.0.0.1:9091/metrics [--require NAME ...] [--json]

Parses with prometheus_client (pip install prometheus_client): the OpenMetrics parser when the
text ends with '# EOF' (or --openmetrics), else the Prometheus text-format parser. On top of the
parser it flags: samples without # TYPE / # HELP, duplicate series (same name + labels), counters
whose samples lack the _total suffix, negative counters, NaN gauges and missing --require'd families.
Exit 0 when clean, 1 when not. --url only accepts loopback. --json prints the parsed samples
as JSON lines ({"name", "labels", "value", "type"}) on stdout and the verdict on stderr: lethe's
tests read the figures through the real parser this way.

(From the lethe team's shared test harness; lethe's own tests use this copy.)
"""
import json
import argparse
import math
import sys
import urllib.parse
import urllib.request

from prometheus_client.openmetrics import parser as om_parser
from prometheus_client import parser as text_parser


def load(args):
    if args.url:
        host = urllib.parse.urlsplit(args.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("refusing non-loopback URL")
        with urllib.request.urlopen(args.url, timeout=10) as r:
            return r.read().decode()
    if args.file in (None, "-"):
        return sys.stdin.read()
    with open(args.file) as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?")
    ap.add_argument("--url")
    ap.add_argument("--require", action="append", default=[],
                    help="family name that must be present (repeatable)")
    ap.add_argument("--openmetrics", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the parsed samples as JSON lines")
    ap.add_argument("--ignore-prefix", action="append", default=[],
                    help="skip families with this prefix (e.g. push_time_seconds from a Pushgateway)")
    args = ap.parse_args()
    text = load(args)
    problems = []
    om = args.openmetrics or text.rstrip().endswith("# EOF")
    try:
        fams = list((om_parser if om else text_parser).text_string_to_metric_families(text))
    except Exception as e:  # parser errors are ValueError mostly
        print(f"PARSE ERROR ({'openmetrics' if om else 'text'}): {e}", file=sys.stderr if args.json else sys.stdout)
        return 1

    declared_type = {}
    declared_help = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                declared_type[parts[2]] = parts[3]
        elif line.startswith("# HELP "):
            parts = line.split(maxsplit=3)
            if len(parts) >= 3:
                declared_help.add(parts[2])

    seen = set()
    names = set()
    for fam in fams:
        if any(fam.name.startswith(p) for p in args.ignore_prefix):
            continue
        names.add(fam.name)
        if fam.type == "unknown":
            problems.append(f"{fam.name}: no # TYPE line")
        if fam.name not in declared_help and fam.name + "_total" not in declared_help and not fam.documentation:
            problems.append(f"{fam.name}: no # HELP line")
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())), s.timestamp)
            if key in seen:
                problems.append(f"duplicate series {s.name}{dict(s.labels)}")
            seen.add(key)
            if fam.type == "counter":
                if s.value < 0:
                    problems.append(f"counter {s.name}{dict(s.labels)} is negative ({s.value})")
            if fam.type == "gauge" and isinstance(s.value, float) and math.isnan(s.value):
                problems.append(f"gauge {s.name}{dict(s.labels)} is NaN")
    # the text parser silently appends _total to counter samples, so check the raw lines
    counters = {n for n, t in declared_type.items() if t == "counter"}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        raw = line.split("{", 1)[0].split()[0]
        if raw in counters and not raw.endswith("_total"):
            problems.append(f"counter sample {raw} lacks the _total suffix")
    for req in args.require:
        base = req[:-6] if req.endswith("_total") else req
        if req not in names and base not in names:
            problems.append(f"required family {req} missing")

    problems = list(dict.fromkeys(problems))
    nsamples = sum(len(f.samples) for f in fams)
    verdict = sys.stderr if args.json else sys.stdout
    if args.json:
        for fam in fams:
            for s in fam.samples:
                print(json.dumps({"name": s.name, "labels": dict(s.labels), "value": s.value,
                                  "type": fam.type}))
    for p in problems:
        print("PROBLEM", p, file=verdict)
    print(f"{'openmetrics' if om else 'text'}: {len(fams)} families, {nsamples} samples, "
          f"{len(problems)} problems", file=verdict)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
