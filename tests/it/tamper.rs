//! Tamper evidence under random mutation: every mutant of a ledger of more
//! than 10,000 rows, and of certificates and manifests, is detected.
//!
//! `LETHE_TAMPER_LEDGER` sets the ledger mutants (CI: 100; long mode: 1000),
//! `LETHE_TAMPER_CERTS` the certificate and manifest mutants (10,000 in both
//! modes), `LETHE_TAMPER_SEED` the seed.
//!
//! What no hash chain can show, and this suite therefore does not claim: rows
//! cut from the end of the ledger after the last certificate's anchor, or
//! rows appended there by someone who recomputes their hashes. Certificates
//! pin the chain up to the row they cover; the tail after the last one is
//! pinned by the next certificate.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lethe::certificate::{self, Identity, PAYLOAD_TYPE, dsse};
use sqlx::Row;

use crate::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rng() -> fastrand::Rng {
    fastrand::Rng::with_seed(env_u64("LETHE_TAMPER_SEED", 0x7a3e))
}

/// A world with two certificates: #2 links to #1.
fn two_certificates(recordings: usize) -> World {
    let mut w = World::new();
    w.safety = "max_deletions = 1000000\nmax_fraction = 1.0\n".into();
    w.write_config();
    let old = months_ago(30);
    for batch in 0..2 {
        for i in 0..recordings {
            w.put(&format!("calls/quality/{old}/B{batch}-{i:05}.wav"), "audio");
            w.put(&format!("transcripts/B{batch}-{i:05}.txt"), "text");
        }
        assert_exit(&w.lethe(&["run"]), 0);
    }
    w.put(
        &format!("calls/quality/{}/KEEP.wav", months_ago(1)),
        "audio",
    );
    w
}

/// Changes one character of `s` to another (a "byte flip" that keeps the text valid).
fn flip_char(rng: &mut fastrand::Rng, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return "x".into();
    }
    let i = rng.usize(..chars.len());
    let mut out = chars.clone();
    loop {
        let c = match rng.u8(..4) {
            0 => rng.alphanumeric(),
            1 => char::from(rng.u8(0x20..0x7f)),
            2 => char::from_u32(u32::from(chars[i]) ^ (1 << rng.u32(0..7))).unwrap_or('?'),
            _ => ['"', '\\', '0', '9', 'é', ' '][rng.usize(..6)],
        };
        if c != chars[i] {
            out[i] = c;
            break;
        }
    }
    out.into_iter().collect()
}

const COLUMNS: &[&str] = &[
    "kind",
    "run_id",
    "at",
    "store",
    "object_key",
    "ref_seq",
    "body",
    "prev_hash",
    "hash",
];

struct LedgerRow {
    seq: i64,
    values: Vec<Option<String>>,
}

async fn sqlite(path: &Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(false),
        )
        .await
        .unwrap()
}

async fn ledger_rows(pool: &sqlx::SqlitePool) -> Vec<LedgerRow> {
    let sql = format!(
        "SELECT seq, {} FROM ledger ORDER BY seq",
        COLUMNS
            .iter()
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| LedgerRow {
            seq: r.get(0),
            values: (1..=COLUMNS.len()).map(|i| r.get(i)).collect(),
        })
        .collect()
}

/// Applies one random mutation; returns its description.
async fn mutate_ledger(
    rng: &mut fastrand::Rng,
    pool: &sqlx::SqlitePool,
    rows: &[LedgerRow],
    anchored: i64,
) -> (&'static str, String) {
    let n = rows.len() as i64;
    let exec = |sql: String| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    };
    match rng.u8(..6) {
        0 | 1 => {
            // A changed value in any column of any row.
            let row = &rows[rng.usize(..rows.len())];
            let c = rng.usize(..COLUMNS.len());
            let column = COLUMNS[c];
            let new = match (&row.values[c], column) {
                (None, "ref_seq") => "1".to_string(),
                (None, _) => "x".to_string(),
                (Some(v), "ref_seq") => (v.parse::<i64>().unwrap() + 1 + rng.i64(0..3)).to_string(),
                (Some(v), _) => flip_char(rng, v),
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE ledger SET {column} = ? WHERE seq = ?"
            )))
            .bind(&new)
            .bind(row.seq)
            .execute(pool)
            .await
            .unwrap();
            ("value changed", format!("row {} {column} changed", row.seq))
        }
        2 => {
            // Rows removed (one, or a run of them) at or before the last anchor.
            let from = rng.i64(1..=anchored);
            let to = (from + rng.i64(0..4)).min(anchored);
            exec(format!(
                "DELETE FROM ledger WHERE seq BETWEEN {from} AND {to}"
            ))
            .await;
            ("rows removed", format!("rows {from}..={to} removed"))
        }
        3 => {
            // Two rows swapped.
            let a = rng.i64(1..=n);
            let mut b = rng.i64(1..=n);
            while b == a {
                b = rng.i64(1..=n);
            }
            exec(format!("UPDATE ledger SET seq = -1 WHERE seq = {a}")).await;
            exec(format!("UPDATE ledger SET seq = {a} WHERE seq = {b}")).await;
            exec(format!("UPDATE ledger SET seq = {b} WHERE seq = -1")).await;
            ("rows swapped", format!("rows {a} and {b} swapped"))
        }
        4 => {
            // A row moved elsewhere (the rows between shift by one).
            let a = rng.i64(1..=anchored);
            let mut b = rng.i64(1..=n);
            while b == a {
                b = rng.i64(1..=n);
            }
            // Shifts go through negative numbers: seq is the primary key.
            exec(format!(
                "UPDATE ledger SET seq = -999999999 WHERE seq = {a}"
            ))
            .await;
            let (lo, hi, by) = if a < b { (a + 1, b, -1) } else { (b, a - 1, 1) };
            exec(format!(
                "UPDATE ledger SET seq = -(seq + {by}) WHERE seq BETWEEN {lo} AND {hi}"
            ))
            .await;
            exec("UPDATE ledger SET seq = -seq WHERE seq < 0 AND seq > -999999999".into()).await;
            exec(format!(
                "UPDATE ledger SET seq = {b} WHERE seq = -999999999"
            ))
            .await;
            ("row moved", format!("row {a} moved to {b}"))
        }
        _ => {
            // A copy of some row inserted at or before the last anchor.
            let at = rng.i64(1..=anchored);
            let source = rng.i64(1..=n);
            exec(format!(
                "UPDATE ledger SET seq = -(seq + 1) WHERE seq >= {at}"
            ))
            .await;
            exec("UPDATE ledger SET seq = -seq WHERE seq < 0".into()).await;
            let cols = COLUMNS.join(", ");
            let from = if source >= at { source + 1 } else { source };
            exec(format!(
                "INSERT INTO ledger (seq, {cols}) SELECT {at}, {cols} FROM ledger WHERE seq = {from}"
            ))
            .await;
            (
                "row inserted",
                format!("a copy of row {source} inserted at {at}"),
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_ledger_mutant_is_detected() {
    let mutants = env_u64("LETHE_TAMPER_LEDGER", 100);
    // 2 runs x 1,300 recordings x 2 objects x (intent + outcome) + run rows.
    let w = two_certificates(1300);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    let db = w.path("lethe.db");
    let pristine = w.path("pristine.db");
    std::fs::copy(&db, &pristine).unwrap();
    let pool = sqlite(&pristine).await;
    let rows = ledger_rows(&pool).await;
    pool.close().await;
    assert!(rows.len() > 10_000, "{} rows", rows.len());
    let anchored = w.payload(2)["ledger"]["last_seq"].as_i64().unwrap();

    let mut rng = rng();
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    for m in 0..mutants {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(w.path(&format!("lethe.db{suffix}")));
        }
        std::fs::copy(&pristine, &db).unwrap();
        let pool = sqlite(&db).await;
        let (kind, what) = mutate_ledger(&mut rng, &pool, &rows, anchored).await;
        pool.close().await;
        *kinds.entry(kind).or_default() += 1;
        let out = w.lethe(&["ledger", "verify"]);
        assert_eq!(
            code(&out),
            4,
            "mutant {m} ({what}) was not detected:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    eprintln!(
        "tamper suite: {mutants} mutants of a {}-row ledger, all detected ({kinds:?})",
        rows.len()
    );
}

/// One certificate mutant's files: the certificate, and its manifest.
struct Mutant {
    what: &'static str,
    cert: Vec<u8>,
    manifest: Vec<u8>,
}

fn envelope(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn with(env: &serde_json::Value, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut e = env.clone();
    f(&mut e);
    let mut bytes = certificate::jcs::to_vec(&e).unwrap();
    bytes.push(b'\n');
    bytes
}

/// A random leaf of a JSON value, changed.
fn change_leaf(rng: &mut fastrand::Rng, v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(rng.usize(..m.len())).unwrap().clone();
            change_leaf(rng, m.get_mut(&k).unwrap());
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.usize(..a.len());
            change_leaf(rng, &mut a[i]);
        }
        Value::String(s) => *s = flip_char(rng, s),
        Value::Number(n) => *v = Value::from(n.as_i64().unwrap_or(0) + 1),
        Value::Bool(b) => *b = !*b,
        Value::Null => *v = Value::from("x"),
        Value::Object(_) => *v = Value::Null,
        Value::Array(a) => a.push(Value::Null),
    }
}

fn certificate_mutant(
    rng: &mut fastrand::Rng,
    cert: &[u8],
    manifest: &[u8],
    previous: &[u8],
    genuine: &Identity,
    other: &Identity,
) -> Mutant {
    let env = envelope(cert);
    let payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let sig = B64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let keep = |what, cert: Vec<u8>| Mutant {
        what,
        cert,
        manifest: manifest.to_vec(),
    };
    match rng.u8(..10) {
        0 => {
            let mut bytes = cert.to_vec();
            let i = rng.usize(..bytes.len());
            bytes[i] ^= 1 << rng.u32(0..8);
            keep("byte flip", bytes)
        }
        1 => {
            let mut p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            change_leaf(rng, &mut p);
            let bytes = certificate::jcs::to_vec(&p).unwrap();
            keep(
                "payload",
                with(&env, |e| e["payload"] = B64.encode(&bytes).into()),
            )
        }
        2 => {
            let t = flip_char(rng, PAYLOAD_TYPE);
            keep("payload type", with(&env, |e| e["payloadType"] = t.into()))
        }
        3 => {
            let k = flip_char(rng, env["signatures"][0]["keyid"].as_str().unwrap());
            keep(
                "key id",
                with(&env, |e| e["signatures"][0]["keyid"] = k.into()),
            )
        }
        4 => {
            let cut = rng.usize(1..=sig.len());
            let short = B64.encode(&sig[..sig.len() - cut]);
            keep(
                "truncated signature",
                with(&env, |e| e["signatures"][0]["sig"] = short.into()),
            )
        }
        5 => {
            // Ed25519 malleability: S + L is the same scalar, not canonical.
            const L: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut s = sig.clone();
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(s[32 + i]) + u16::from(L[i]) + carry;
                s[32 + i] = v as u8;
                carry = v >> 8;
            }
            if rng.bool() {
                // ...or any bit of R or S flipped.
                s = sig.clone();
                let i = rng.usize(..64);
                s[i] ^= 1 << rng.u32(0..8);
            }
            keep(
                "malleated signature",
                with(&env, |e| e["signatures"][0]["sig"] = B64.encode(&s).into()),
            )
        }
        6 => keep(
            "another key",
            other.seal(PAYLOAD_TYPE, &payload).to_file_bytes(),
        ),
        7 => {
            // Signed by the genuine key, but linked to another certificate.
            let mut p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let reused = match rng.u8(..4) {
                0 => serde_json::Value::Null,
                1 => certificate::sha256_hex(cert).into(),
                2 => certificate::sha256_hex(manifest).into(),
                _ => flip_char(rng, &certificate::sha256_hex(previous)).into(),
            };
            p["previous_certificate_sha256"] = reused;
            let bytes = certificate::jcs::to_vec(&p).unwrap();
            keep(
                "reused previous hash",
                genuine.seal(PAYLOAD_TYPE, &bytes).to_file_bytes(),
            )
        }
        _ => {
            // The manifest: a byte changed, a line removed, repeated,
            // swapped or added, or the file cut short.
            let text = String::from_utf8(manifest.to_vec()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let i = rng.usize(..lines.len());
            let what = match rng.u8(..6) {
                0 => {
                    lines[i] = flip_char(rng, &lines[i]);
                    "manifest byte"
                }
                1 => {
                    lines.remove(i);
                    "manifest line removed"
                }
                2 => {
                    let l = lines[i].clone();
                    lines.insert(rng.usize(..=lines.len()), l);
                    "manifest line repeated"
                }
                3 => {
                    let j = (i + 1 + rng.usize(..lines.len() - 1)) % lines.len();
                    lines.swap(i, j);
                    "manifest lines swapped"
                }
                4 => {
                    let mut l = lines[i].clone();
                    l = l.replacen("B1-", "B9-", 1);
                    lines.push(l);
                    "manifest line added"
                }
                _ => {
                    let cut = rng.usize(1..manifest.len());
                    return Mutant {
                        what: "manifest cut short",
                        cert: cert.to_vec(),
                        manifest: manifest[..cut].to_vec(),
                    };
                }
            };
            Mutant {
                what,
                cert: cert.to_vec(),
                manifest: lines
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes(),
            }
        }
    }
}

#[test]
fn every_certificate_and_manifest_mutant_is_detected() {
    let mutants = env_u64("LETHE_TAMPER_CERTS", 10_000);
    let w = two_certificates(20);
    let key = dsse::load_public_key(&w.public_key()).unwrap();
    assert!(certificate::verify(&w.cert(2), &key).passed());
    let genuine = Identity::load(&w.path("keys/lethe.key"), "test-key").unwrap();
    let other = Identity::from_key(dsse::generate().unwrap(), "test-key");
    let (cert, manifest, previous) = (read(&w.cert(2)), read(&w.manifest(2)), read(&w.cert(1)));

    // Mutants of certificate #2 are written beside #1, as an auditor holds them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(w.cert(1), dir.path().join("lethe-cert-000001.json")).unwrap();
    std::fs::copy(
        w.manifest(1),
        dir.path().join("lethe-cert-000001.manifest.jsonl"),
    )
    .unwrap();
    let cert_path = dir.path().join("lethe-cert-000002.json");
    let manifest_path = dir.path().join("lethe-cert-000002.manifest.jsonl");

    let mut rng = rng();
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    let mut identical = 0;
    for m in 0..mutants {
        let mutant = certificate_mutant(&mut rng, &cert, &manifest, &previous, &genuine, &other);
        if mutant.cert == cert && mutant.manifest == manifest {
            identical += 1; // e.g. a line swapped with an identical one: no mutation
            continue;
        }
        std::fs::write(&cert_path, &mutant.cert).unwrap();
        std::fs::write(&manifest_path, &mutant.manifest).unwrap();
        let v = certificate::verify(&cert_path, &key);
        assert!(
            !v.passed(),
            "mutant {m} ({}) passed verification: {:?}",
            mutant.what,
            v.checks
        );
        *kinds.entry(mutant.what).or_default() += 1;
    }
    assert!(
        identical < mutants / 100,
        "{identical} mutants changed nothing"
    );
    eprintln!(
        "tamper suite: {} certificate and manifest mutants, all detected ({kinds:?})",
        mutants - identical
    );
}
