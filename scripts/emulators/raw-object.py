#!/usr/bin/env python3
"""Put an object under an exact key on a loopback emulator, as any uploader
could, bypassing the key checks of object_store; or list a bucket's exact
keys (stdlib only).

usage: raw-object.py put s3|azure|gcs BUCKET KEY [BODY]
       raw-object.py list s3|azure|gcs BUCKET      one JSON string per key
KEY is taken literally (`a//b`, `a/./b`, a trailing `/`, control characters);
it is percent-encoded for the URL only. Endpoints come from the same
variables the tests use (LETHE_TEST_S3_ENDPOINT, LETHE_TEST_AZURITE,
LETHE_TEST_GCS_BACKEND), loopback by default.
"""
import base64, hashlib, hmac, json, os, sys, urllib.error, urllib.parse, urllib.request
import xml.etree.ElementTree as ET
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented, not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def quote(key):
    return urllib.parse.quote(key, safe="/")


def send(req, body=False):
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.read() if body else r.status
    except urllib.error.HTTPError as e:
        sys.exit(f"{req.get_method()} failed: HTTP {e.code} {e.read()[:300]!r}")


def azure_signed(method, path, query, ctype="", length="", extra=None):
    """Headers for an Azurite request with SharedKey auth."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06", **(extra or {})}
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(
        (k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-ms-")))
    canon_query = "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    sts = "\n".join([method, "", "", length, "", ctype, "", "", "", "", "", ""]) + "\n" + canon_headers + f"/{ACCOUNT}{path}" + canon_query
    sig = base64.b64encode(hmac.new(base64.b64decode(KEY), sts.encode(), hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig}"
    return headers


def list_keys(kind, bucket):
    keys, token = [], None
    while True:
        if kind == "s3":
            endpoint = os.environ.get("LETHE_TEST_S3_ENDPOINT", "http://127.0.0.1:9000").rstrip("/")
            # URL-encoded keys: a control character is no valid XML 1.0.
            q = {"list-type": "2", "encoding-type": "url", **({"continuation-token": token} if token else {})}
            root = ET.fromstring(send(urllib.request.Request(f"{endpoint}/{bucket}?{urllib.parse.urlencode(q)}"), True))
            ns = {"s": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
            p = "s:" if ns else ""
            keys += [urllib.parse.unquote_plus(k.text or "") for k in root.iterfind(f"{p}Contents/{p}Key", ns)]
            t = root.find(f"{p}NextContinuationToken", ns)
            token = t.text if t is not None else None
        elif kind == "gcs":
            endpoint = os.environ.get("LETHE_TEST_GCS_BACKEND", "http://127.0.0.1:4443").rstrip("/")
            q = {"pageToken": token} if token else {}
            page = json.loads(send(urllib.request.Request(f"{endpoint}/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(q)}"), True))
            keys += [o["name"] for o in page.get("items", [])]
            token = page.get("nextPageToken")
        else:
            endpoint = os.environ.get("LETHE_TEST_AZURITE", "http://127.0.0.1:10000").rstrip("/")
            path = f"/{ACCOUNT}/{bucket}"
            q = {"restype": "container", "comp": "list", **({"marker": token} if token else {})}
            headers = azure_signed("GET", path, q)
            root = ET.fromstring(send(urllib.request.Request(f"{endpoint}{path}?{urllib.parse.urlencode(q)}", headers=headers), True))
            keys += [n.text or "" for n in root.iterfind("Blobs/Blob/Name")]
            token = (root.findtext("NextMarker") or None)
        if not token:
            return keys


def s3(bucket, key, body):
    endpoint = os.environ.get("LETHE_TEST_S3_ENDPOINT", "http://127.0.0.1:9000").rstrip("/")
    # moto accepts unsigned requests.
    return send(urllib.request.Request(f"{endpoint}/{bucket}/{quote(key)}", method="PUT", data=body,
                                       headers={"Content-Type": "application/octet-stream"}))


def azure(container, key, body):
    endpoint = os.environ.get("LETHE_TEST_AZURITE", "http://127.0.0.1:10000").rstrip("/")
    path = f"/{ACCOUNT}/{container}/{quote(key)}"
    ctype = "application/octet-stream"
    headers = azure_signed("PUT", path, {}, ctype, str(len(body)) if body else "",
                           {"x-ms-blob-type": "BlockBlob"})
    headers.update({"Content-Length": str(len(body)), "Content-Type": ctype})
    return send(urllib.request.Request(f"{endpoint}{path}", method="PUT", headers=headers, data=body))


def gcs(bucket, key, body):
    endpoint = os.environ.get("LETHE_TEST_GCS_BACKEND", "http://127.0.0.1:4443").rstrip("/")
    name = urllib.parse.quote(key, safe="")
    url = f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
    return send(urllib.request.Request(url, method="POST", data=body,
                                       headers={"Content-Type": "application/octet-stream"}))


def main():
    command, kind, bucket = sys.argv[1:4]
    if command == "list":
        for key in list_keys(kind, bucket):
            print(json.dumps(key))
        return
    key = sys.argv[4]
    body = (sys.argv[5] if len(sys.argv) > 5 else "x").encode()
    status = {"s3": s3, "azure": azure, "gcs": gcs}[kind](bucket, key, body)
    print(f"put {key!r}: HTTP {status}")


if __name__ == "__main__":
    main()
