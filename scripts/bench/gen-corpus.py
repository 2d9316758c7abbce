#!/usr/bin/env python3
"""gen-corpus.py DIR N [SEED]: N recordings under DIR/calls/<purpose>/<YYYY>/<MM>/<DD>/call-<id>.wav.

Dates are spread uniformly over the last 36 months; each file's mtime is its
recording time and the path carries its UTC date, so that lethe (which reads
the date from the key) and mtime-based tools (find, rclone) see the same age.
Every third recording has a transcript in DIR/transcripts/call-<id>.txt and
every tenth a JSON sidecar beside it (call-<id>.json), with the same mtime. Deterministic for a given N, SEED and NOW (env, epoch seconds).
Prints how many recordings are older than 548 days.
"""
import os, random, sys, time

root, n = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
now = int(os.environ.get("NOW") or time.time())
span = int(36 * 30.4375 * 86400)
purposes = ("quality", "training", "disputes", "feedback")
rng = random.Random(seed)
body = b"RIFF" + b"\0" * 40
made = set()
old = 0
os.makedirs(f"{root}/transcripts", exist_ok=True)
for i in range(n):
    mtime = now - rng.randrange(span)
    tm = time.gmtime(mtime)
    d = f"{root}/calls/{purposes[i % 4]}/{tm.tm_year:04d}/{tm.tm_mon:02d}/{tm.tm_mday:02d}"
    if d not in made:
        os.makedirs(d, exist_ok=True)
        made.add(d)
    files = [(f"{d}/call-{i:07d}.wav", body)]
    if i % 3 == 0:
        files.append((f"{root}/transcripts/call-{i:07d}.txt", b"transcript\n"))
    if i % 10 == 0:
        files.append((f"{d}/call-{i:07d}.json", b'{"agent": "a-%d", "queue": "support"}\n' % (i % 97)))
    for path, data in files:
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (mtime, mtime))
    if now - mtime > 548 * 86400:
        old += 1
print(old)
