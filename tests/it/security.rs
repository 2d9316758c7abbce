//! Security checks that span the whole tool: no secret (signing key
//! material, database password, cloud credential) appears in any output —
//! logs at trace level in both formats, plans, metrics, certificates,
//! manifests, reports, error messages. The key-permission, symlink and
//! root-escape checks live in `local_store.rs` and `deploy.rs`. SQL is
//! built from bound parameters only (checked on the source below).

use base64::Engine;

use crate::cloud::{Bucket, Kind};
use crate::*;

const AWS_SECRET: &str = "awsSECRETvalue0000leak1check";
const PG_PASSWORD: &str = "pgPASSWORDvalue0000leak2check";

/// Every secret, in each form it could leak in.
fn secrets(w: &World) -> Vec<(String, &'static str)> {
    let pem = std::fs::read_to_string(w.path("keys/lethe.key")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    // The last 32 bytes of a PKCS#8 Ed25519 key are the seed.
    let seed = &der[der.len() - 32..];
    vec![
        (b64.clone(), "signing key (PEM body)"),
        (
            b64[10..40].to_string(),
            "signing key (part of the PEM body)",
        ),
        (hex::encode(seed), "signing key seed (hex)"),
        (
            base64::engine::general_purpose::STANDARD.encode(seed),
            "signing key seed (base64)",
        ),
        (
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed),
            "signing key seed (base64url)",
        ),
        (AWS_SECRET.to_string(), "AWS secret access key"),
        (PG_PASSWORD.to_string(), "database password"),
    ]
}

fn assert_no_secret(what: &str, text: &[u8], secrets: &[(String, &str)]) {
    let text = String::from_utf8_lossy(text);
    for (s, name) in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{name} appears in {what}:\n{}",
            &text[..text.len().min(4000)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_output() {
    // A PostgreSQL ledger reached with a password (trust auth ignores it),
    // an S3 store reached with a secret key, a local signing key.
    let bucket = Bucket::new(Kind::S3).await;
    let mut w = World::new();
    w.use_db(Db::Postgres).await;
    for (k, v) in w.env.iter_mut() {
        if k == "LETHE_DATABASE" {
            *v = v.replace("postgres@", &format!("postgres:{PG_PASSWORD}@"));
        }
    }
    w.env
        .extend(bucket.env().into_iter().map(|(k, v)| match k.as_str() {
            "AWS_SECRET_ACCESS_KEY" => (k, AWS_SECRET.to_string()),
            _ => (k, v),
        }));
    w.stores = bucket.store_toml("recordings", "tenant-a", "");
    w.write_config();
    let secrets = secrets(&w);
    bucket
        .put(
            &format!("tenant-a/calls/quality/{}/S-1.wav", months_ago(30)),
            "audio",
        )
        .await;
    bucket.put("tenant-a/transcripts/S-1.txt", "text").await;
    bucket
        .put(
            &format!("tenant-a/calls/quality/{}/S-2.wav", months_ago(1)),
            "audio",
        )
        .await;

    let mut outputs: Vec<(String, std::process::Output)> = Vec::new();
    let plan_file = w.path("plan.json");
    let metrics = w.path("lethe.prom");
    let commands: Vec<Vec<String>> = vec![
        vec!["plan".into()],
        vec!["plan".into(), "--format".into(), "json".into()],
        vec![
            "plan".into(),
            "--out".into(),
            plan_file.to_str().unwrap().into(),
        ],
        vec!["run".into(), "--dry-run".into()],
        vec![
            "run".into(),
            "--metrics-file".into(),
            metrics.to_str().unwrap().into(),
        ],
        vec![
            "verify".into(),
            w.cert(1).to_str().unwrap().into(),
            "--check-store".into(),
        ],
        vec!["ledger".into(), "verify".into()],
        vec!["hold".into(), "list".into()],
    ];
    for format in ["text", "json"] {
        for level in ["trace", "debug,lethe=trace"] {
            for c in &commands {
                let mut cmd = w.command(&c.iter().map(String::as_str).collect::<Vec<_>>());
                cmd.arg("--log-format").arg(format).env("LETHE_LOG", level);
                outputs.push((format!("{c:?} ({format}, {level})"), cmd.output().unwrap()));
            }
        }
    }
    // A failing connection reports its error without the password, too.
    let mut broken = w.command(&["plan"]);
    broken.env(
        "LETHE_DATABASE",
        format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:1/test"),
    );
    outputs.push((
        "plan with an unreachable database".into(),
        broken.output().unwrap(),
    ));

    for (what, out) in &outputs {
        assert_no_secret(&format!("stdout of {what}"), &out.stdout, &secrets);
        assert_no_secret(&format!("stderr of {what}"), &out.stderr, &secrets);
    }
    assert!(
        outputs
            .iter()
            .any(|(_, o)| stderr(o).contains("TRACE") || stderr(o).contains("\"level\":\"TRACE\"")),
        "trace logs were produced"
    );
    // Every file lethe wrote: certificates, manifests, plan, metrics.
    let mut files = 0;
    for entry in walkdir::WalkDir::new(w.dir.path()) {
        let entry = entry.unwrap();
        let p = entry.path();
        if !entry.file_type().is_file() || p.starts_with(w.path("keys")) || p == w.config() {
            continue;
        }
        assert_no_secret(
            &p.display().to_string(),
            &std::fs::read(p).unwrap(),
            &secrets,
        );
        files += 1;
    }
    assert!(w.cert(1).exists() && plan_file.exists() && metrics.exists());
    assert!(files >= 4, "{files} files checked");
    // And what the ledger holds.
    let ledger = w
        .scalar("SELECT COALESCE(string_agg(body, ' '), '') FROM ledger")
        .await;
    assert_no_secret("the ledger", ledger.as_bytes(), &secrets);
}

/// SQL is built from bound parameters only. sqlx accepts a non-literal
/// statement only through `AssertSqlSafe`: every such use in `src/` must
/// build its text from placeholders alone (`values_statement`,
/// `Placeholders::list`), and no SQL text is formatted with a value.
#[test]
fn sql_uses_bound_parameters_only() {
    let mut asserted = 0;
    for entry in walkdir::WalkDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let at = format!("{}:{}", entry.path().display(), i + 1);
            if line.contains("AssertSqlSafe(") {
                asserted += 1;
                let before = lines[i.saturating_sub(8)..i].join("\n");
                assert!(
                    line.contains("AssertSqlSafe(sql)")
                        && (before.contains("values_statement(") || before.contains("style.list(")),
                    "{at}: a statement not built from placeholders alone: {line}"
                );
            }
            // A formatted string that looks like SQL may only interpolate placeholders.
            if let Some(start) = line.find("format!(\"") {
                let literal = &line[start..];
                let upper = literal.to_ascii_uppercase();
                let sqlish = ["SELECT ", "INSERT ", "UPDATE ", "DELETE ", " WHERE "]
                    .iter()
                    .any(|k| upper.contains(k));
                if sqlish && literal.contains('{') {
                    let next = lines.get(i + 1).copied().unwrap_or("");
                    assert!(
                        next.contains("style.list("),
                        "{at}: SQL formatted with a value: {line}"
                    );
                }
            }
        }
    }
    assert!(asserted >= 1, "the scan found the ledger's statements");
}
