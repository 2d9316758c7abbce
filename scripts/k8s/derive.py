#!/usr/bin/env python3
"""Derive the sharded CronJob and the one-off Jobs from the nightly CronJob,
so that every lethe pod in deploy/kubernetes has the same security context,
resources, Secrets and volumes. deploy/kubernetes/nightly/cronjob.yaml is the
one to edit; then run this.

usage: derive.py          rewrite sharded/cronjob.yaml and jobs/*.yaml
       derive.py --check  exit 1 if any of them differs from what it derives
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "kubernetes")
ARGS = '''              args:
                - run
                - --pushgateway=http://prometheus-pushgateway.monitoring.svc:9091
'''


def replace_once(text, old, new):
    if text.count(old) != 1:
        sys.exit(f"derive.py: nightly/cronjob.yaml no longer has exactly one {old!r}")
    return text.replace(old, new)


def quoted(arg):
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sharded(nightly):
    s = replace_once(nightly, nightly[:nightly.index("apiVersion:")], '''# The nightly pass split across 4 pods: an Indexed Job gives each pod its
# completion index, and `lethe run --shard I/4` (LETHE_SHARD) takes the
# recordings whose key hashes to share I. The pods share one PostgreSQL
# ledger; each shard holds its own lease and writes its own certificate, and
# the certificate chain stays one. To change N, change completions,
# parallelism and the /4 below together. Derived from ../nightly/cronjob.yaml
# by scripts/k8s/derive.py: edit that one.
''')
    s = replace_once(s, "  name: lethe\n  namespace:", "  name: lethe-sharded\n  namespace:")
    s = replace_once(s, "    spec:\n      backoffLimit: 2\n", '''    spec:
      completionMode: Indexed
      completions: 4
      parallelism: 4
      backoffLimitPerIndex: 2
      maxFailedIndexes: 4
''')
    s = replace_once(s, "              env:\n                - name: LETHE_CONFIG", '''              env:
                - name: SHARD_INDEX
                  valueFrom:
                    fieldRef:
                      fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
                - name: LETHE_SHARD
                  value: $(SHARD_INDEX)/4
                - name: LETHE_CONFIG''')
    return s


def job(nightly, header, name, component, args, backoff):
    body = nightly[nightly.index("    spec:\n      backoffLimit"):]
    body = "".join(line[4:] if line.startswith("    ") else line for line in body.splitlines(True))
    dedented = "".join(line[4:] for line in ARGS.splitlines(True))
    body = replace_once(body, dedented, "          args:\n" + "".join(f"            - {quoted(a)}\n" for a in args))
    body = body.replace("app.kubernetes.io/component: retention", f"app.kubernetes.io/component: {component}")
    body = replace_once(body, "  backoffLimit: 2\n", f"  backoffLimit: {backoff}\n")
    return header + "# Derived from ../nightly/cronjob.yaml by scripts/k8s/derive.py.\n" + f'''apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: lethe
  labels:
    app.kubernetes.io/name: lethe
    app.kubernetes.io/component: {component}
''' + body


def derived():
    with open(os.path.join(ROOT, "nightly", "cronjob.yaml")) as f:
        nightly = f.read()
    replace_once(nightly, ARGS, ARGS)
    return {
        "sharded/cronjob.yaml": sharded(nightly),
        "jobs/hold-place.yaml": job(nightly, '''# A legal hold, placed as a one-off Job with the same configuration and
# Secrets as the nightly pass. Edit the arguments, then:
#   kubectl create -f deploy/kubernetes/jobs/hold-place.yaml
#   kubectl -n lethe logs -f job/lethe-hold-case-2026-0117
# Name the Job after the case: its log is the record of who placed what.
# The hold is in force as soon as it is in the ledger: a pass running at that
# moment checks holds again before each batch of deletions.
''', "lethe-hold-case-2026-0117", "hold", [
            "hold", "place",
            "--case=CASE-2026-0117",
            "--reason=Litigation hold: dispute with customer 4711 (legal ref. LIT-2026-0117)",
            "--by=legal@example.com",
            "--subject=customer-4711",
            "--recorded-between=2025-01-01..2026-06-30",
            "--review=2027-06-30",
        ], 0),
        "jobs/hold-release.yaml": job(nightly, '''# Releasing a legal hold, as a one-off Job (see hold-place.yaml). With
# [holds] release_approvals = 2 in lethe.toml, a second person approves with
# `hold approve-release` (the same Job with those arguments) before it ends.
#   kubectl create -f deploy/kubernetes/jobs/hold-release.yaml
#   kubectl -n lethe logs -f job/lethe-release-case-2026-0117
''', "lethe-release-case-2026-0117", "hold", [
            "hold", "release",
            "--case=CASE-2026-0117",
            "--by=legal@example.com",
            "--reason=Case closed: settlement of 2026-11-02",
        ], 0),
        "jobs/erase.yaml": job(nightly, '''# A data subject's erasure request (GDPR Art. 17), as a one-off Job: every
# recording of the subject is deleted now, except what a hold or a legal
# obligation protects, and a signed erasure receipt is issued.
#   kubectl create -f deploy/kubernetes/jobs/erase.yaml
#   kubectl -n lethe logs -f job/lethe-erase-dsr-2026-0042
# Add "--dry-run" first: the Job's log then shows what would be erased and kept.
''', "lethe-erase-dsr-2026-0042", "erasure", [
            "erase", "--subject=customer-4711", "--request=DSR-2026-0042",
        ], 2),
        "jobs/plan.yaml": job(nightly, '''# What the nightly pass would do now, deleting nothing: a plan as a one-off
# Job, for review after a policy change.
#   kubectl -n lethe delete job lethe-plan --ignore-not-found
#   kubectl create -f deploy/kubernetes/jobs/plan.yaml
#   kubectl -n lethe logs -f job/lethe-plan
''', "lethe-plan", "plan", ["plan", "--format=text"], 0),
    }


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for rel, text in derived().items():
        path = os.path.join(ROOT, rel)
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        if check:
            stale.append(rel)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote deploy/kubernetes/{rel}")
    if stale:
        sys.exit("out of date (run scripts/k8s/derive.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
