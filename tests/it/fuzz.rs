//! Bad input, fuzzed with proptest (cargo-fuzz needs a nightly toolchain,
//! which this project's machines do not have): the policy parser, the key
//! pattern matcher, sidecar parsing and certificate verification never
//! panic, and every error says where the problem is.
//!
//! `PROPTEST_CASES` sets the cases per target (CI: 256; long mode: 20000).

use std::path::PathBuf;

use chrono_tz::Tz;
use lethe::certificate;
use lethe::classify::{parse_sidecar, parse_sidecar_date};
use lethe::policy::pattern::KeyPattern;
use lethe::policy::{Policy, PolicyError};
use proptest::prelude::*;

use crate::POLICY;

/// Keys with odd bytes and characters, and very long ones.
fn odd_key() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9/._%+ -]{0,64}",
        "calls/(quality|training|x)/[0-9]{4}/[0-9]{2}/[0-9]{2}/[^/]{0,40}\\.(wav|json)",
        (any::<char>(), 1usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        prop::collection::vec(
            prop_oneof![
                Just("/"),
                Just(".."),
                Just("%2F"),
                Just("\u{0}"),
                Just("\u{202e}"),
                Just("📞"),
                Just("{"),
                Just("}")
            ],
            0..50
        )
        .prop_map(|v| v.concat()),
    ]
}

/// The shipped policy with random edits: bytes replaced, inserted or removed.
fn edited_policy() -> impl Strategy<Value = Vec<u8>> {
    let len = POLICY.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..3), 1..8).prop_map(|edits| {
        let mut bytes = POLICY.as_bytes().to_vec();
        for (at, b, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] = b,
                1 => bytes.insert(at, b),
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

fn yamlish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        "[a-z:{}\\[\\], \n\"'&*!|>-]{0,300}".prop_map(String::into_bytes),
        edited_policy(),
        // Aliases and deep nesting: the shapes of billion-laughs documents.
        (1usize..200).prop_map(|n| format!("{}x{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..10).prop_map(|n| {
            let mut s = String::from("a: &a [x, x]\n");
            for i in 0..n {
                let prev = if i == 0 {
                    "a".to_string()
                } else {
                    format!("a{}", i - 1)
                };
                s.push_str(&format!("a{i}: &a{i} [*{prev}, *{prev}, *{prev}]\n"));
            }
            s.into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    /// Any bytes in a policy file: a policy, or errors that each name the
    /// file and (for a place in it) a line and column inside it.
    #[test]
    fn the_policy_parser_names_file_line_and_column(bytes in yamlish()) {
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        match Policy::from_sources(vec![("p.yaml".into(), PathBuf::from("p.yaml"), bytes)]) {
            Ok(_) => {}
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    match e {
                        PolicyError::At { origin, message } => {
                            prop_assert_eq!(origin.file.to_str(), Some("p.yaml"));
                            prop_assert!(origin.line >= 1 && origin.line <= lines, "line {} of {}: {}", origin.line, lines, message);
                            prop_assert!(origin.column >= 1, "{}", message);
                            prop_assert!(!message.trim().is_empty());
                        }
                        PolicyError::File { path, message } => {
                            prop_assert_eq!(path.to_str(), Some("p.yaml"));
                            prop_assert!(!message.trim().is_empty());
                        }
                    }
                }
                prop_assert!(errors.to_string().contains("p.yaml"));
            }
        }
    }

    /// Any pattern text parses or says what is wrong; any key, however odd or
    /// long, matches or not, without a panic.
    #[test]
    fn key_patterns_never_panic(pattern in prop_oneof![
        any::<String>(),
        "[a-z/{}:%_.*]{0,60}",
        Just("calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav".to_string()),
        Just("{subject}/{recorded:%Y-%m-%dT%H%M%S}_{call_id}.*".to_string()),
    ], keys in prop::collection::vec(odd_key(), 1..8)) {
        match KeyPattern::parse(&pattern) {
            Ok(p) => {
                for k in &keys {
                    if let Some(caps) = p.captures(k) {
                        for v in caps.values() {
                            prop_assert!(k.contains(v.as_str()));
                        }
                    }
                }
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }

    /// Any bytes as a sidecar: read, or a message; dates likewise.
    #[test]
    fn sidecars_never_panic(bytes in prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"(purposes|purpose|subject|recorded_at|recordedAt)\": ?(\\[\"[a-z]{0,8}\"\\]|\"[0-9T:+-]{0,30}\"|null|1e999|-0|\\{\\})\\}".prop_map(String::into_bytes),
        (1usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ], date in any::<String>()) {
        if let Err(m) = parse_sidecar(&bytes) {
            prop_assert!(!m.trim().is_empty());
        }
        let _ = parse_sidecar_date(&date, Tz::Europe__Warsaw);
    }
}

/// A huge sidecar: read in full it would be 64 MiB of purposes.
#[test]
fn a_huge_sidecar_is_refused_by_size_not_read() {
    let w = crate::World::new();
    let dir = format!("calls/quality/{}", crate::months_ago(30));
    w.put(&format!("{dir}/BIG.wav"), "audio");
    let big = format!(
        "{{\"purposes\":[{}\"quality\"]}}",
        "\"disputes\",".repeat(6 * 1024 * 1024)
    );
    w.put(&format!("{dir}/BIG.json"), &big);
    let out = w.lethe(&["plan"]);
    let text = crate::stdout(&out);
    assert!(
        text.contains(&format!("{dir}/BIG.wav")) && text.contains("limit for sidecars"),
        "{text}"
    );
    assert!(!text.contains("DELETE"), "{text}");
    assert_exit_ok_or_reported(&out);
}

fn assert_exit_ok_or_reported(out: &std::process::Output) {
    // A plan with unreadable recordings exits 0 and reports them, or 3 when
    // asked to fail on reports; never a crash.
    assert!(matches!(crate::code(out), 0 | 3), "{}", crate::stderr(out));
}

/// Hostile certificate files: truncated, nested, huge, not JSON, JSON of the
/// wrong shape. Verification fails with a message, never panics.
#[test]
fn hostile_certificates_fail_verification_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = certificate::dsse::generate().unwrap().verifying_key();
    let path = dir.path().join("lethe-cert-000002.json");
    let mut samples: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"payloadType\":1}".to_vec(),
        b"{\"payload\":\"\",\"payloadType\":\"\",\"signatures\":[]}".to_vec(),
        b"{\"payload\":\"!!!\",\"payloadType\":\"application/vnd.lethe.deletion-certificate.v1+json\",\"signatures\":[{\"keyid\":\"k\",\"sig\":\"\"}]}".to_vec(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!("{{\"payload\":\"{}\"}}", "A".repeat(20 << 20)).into_bytes(),
        vec![0xff; 4096],
    ];
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..500 {
        let n = rng.usize(..2000);
        samples.push((0..n).map(|_| rng.u8(..)).collect());
    }
    for (i, s) in samples.iter().enumerate() {
        std::fs::write(&path, s).unwrap();
        let v = certificate::verify(&path, &key);
        assert!(!v.passed(), "sample {i} passed");
        assert!(
            v.checks
                .iter()
                .any(|(_, c)| matches!(c, certificate::Check::Fail(m) if !m.trim().is_empty())),
            "sample {i}: no failure message: {:?}",
            v.checks
        );
    }
}
