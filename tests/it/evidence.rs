//! Certificates and the ledger as evidence: tampering is detected, and an
//! auditor can check a certificate with openssl alone.

use std::process::Command;

use crate::*;

fn certified_world() -> World {
    let w = World::new();
    for i in 0..3 {
        w.put(
            &format!("calls/quality/{}/C-{i}.wav", months_ago(30)),
            "audio",
        );
        w.put(&format!("transcripts/C-{i}.txt"), "text");
    }
    w.put(
        &format!("calls/quality/{}/KEEP.wav", months_ago(1)),
        "audio",
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert_exit(&w.lethe(&["run"]), 0);
    w
}

fn verify(w: &World, cert: &std::path::Path) -> std::process::Output {
    w.lethe(&[
        "verify",
        cert.to_str().unwrap(),
        "--public-key",
        w.public_key().to_str().unwrap(),
    ])
}

#[test]
fn any_changed_byte_in_a_certificate_or_manifest_fails_verification() {
    let w = certified_world();
    assert_exit(&verify(&w, &w.cert(1)), 0);
    let original = read(&w.cert(1));
    let tampered = w.path("certificates/tampered.json");
    let key = lethe::certificate::dsse::load_public_key(&w.public_key()).unwrap();
    // Every byte of the certificate file, flipped one at a time (in process, for speed)...
    for i in 0..original.len() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut bytes = original.clone();
            bytes[i] ^= mask;
            std::fs::write(&tampered, &bytes).unwrap();
            assert!(
                !lethe::certificate::verify(&tampered, &key).passed(),
                "byte {i} ^ {mask:#x} was not detected"
            );
        }
    }
    // ...and a few through the command line, which must exit 4.
    for i in [
        0,
        original.len() / 3,
        original.len() / 2,
        original.len() - 1,
    ] {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&tampered, &bytes).unwrap();
        let out = verify(&w, &tampered);
        assert_eq!(
            code(&out),
            4,
            "byte {i} flipped was not detected: {}",
            stdout(&out)
        );
    }
    // A manifest with one byte changed.
    let manifest = read(&w.manifest(1));
    for i in [0, manifest.len() / 2, manifest.len() - 2] {
        let mut bytes = manifest.clone();
        bytes[i] ^= 0x20;
        std::fs::write(w.manifest(1), &bytes).unwrap();
        let out = verify(&w, &w.cert(1));
        assert_exit(&out, 4);
        assert!(stdout(&out).contains("FAIL  manifest"), "{}", stdout(&out));
    }
    // A manifest with a line removed (its hash and root both change).
    let text = String::from_utf8(manifest.clone()).unwrap();
    let shorter: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(w.manifest(1), shorter).unwrap();
    assert_exit(&verify(&w, &w.cert(1)), 4);
    std::fs::write(w.manifest(1), &manifest).unwrap();
    assert_exit(&verify(&w, &w.cert(1)), 0);
}

#[test]
fn a_certificate_signed_by_another_key_fails() {
    let w = certified_world();
    let other = w.path("other.key");
    assert_exit(&w.lethe(&["keygen", "--out", other.to_str().unwrap()]), 0);
    let out = w.lethe(&[
        "verify",
        w.cert(1).to_str().unwrap(),
        "--public-key",
        w.path("other.key.pub").to_str().unwrap(),
    ]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("does not verify with this public key"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_replaced_previous_certificate_breaks_the_chain() {
    let w = certified_world();
    assert_exit(&verify(&w, &w.cert(2)), 0);
    // Re-issue #1 from another world with the same sequence number: the link breaks.
    let other = certified_world();
    std::fs::copy(other.cert(1), w.cert(1)).unwrap();
    let out = verify(&w, &w.cert(2));
    assert_exit(&out, 4);
    assert!(stdout(&out).contains("FAIL  chain"), "{}", stdout(&out));
}

async fn certified_world_on(db: Db) -> World {
    let mut w = World::new();
    w.use_db(db).await;
    for i in 0..3 {
        w.put(
            &format!("calls/quality/{}/C-{i}.wav", months_ago(30)),
            "audio",
        );
        w.put(&format!("transcripts/C-{i}.txt"), "text");
    }
    assert_exit(&w.lethe(&["run"]), 0);
    assert_exit(&w.lethe(&["run"]), 0);
    w
}

async fn ledger_verify_detects_edited_removed_and_truncated_rows(db: Db) {
    let w = certified_world_on(db).await;
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);

    // An edited outcome: claim another object was deleted.
    let original = w
        .scalar("SELECT body FROM ledger WHERE kind = 'outcome' ORDER BY seq LIMIT 1")
        .await;
    let edited = original.replace("\"size\":5", "\"size\":6");
    assert_ne!(original, edited);
    let first_outcome = "(SELECT MIN(seq) FROM ledger WHERE kind = 'outcome')";
    w.exec(&format!(
        "UPDATE ledger SET body = '{}' WHERE seq = {first_outcome}",
        edited.replace('\'', "''")
    ))
    .await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("content does not match its hash (the row was edited)"),
        "{}",
        stdout(&out)
    );
    w.exec(&format!(
        "UPDATE ledger SET body = '{}' WHERE seq = {first_outcome}",
        original.replace('\'', "''")
    ))
    .await;
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);

    // Rows swapped: both keep their own hashes, but the links break.
    w.exec("UPDATE ledger SET seq = -4 WHERE seq = 4").await;
    w.exec("UPDATE ledger SET seq = 4 WHERE seq = 5").await;
    w.exec("UPDATE ledger SET seq = 5 WHERE seq = -4").await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("does not link to the row before it"),
        "{}",
        stdout(&out)
    );

    // A row removed from the middle.
    let w = certified_world_on(db).await;
    w.exec("DELETE FROM ledger WHERE seq = 3").await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains("row 4: expected sequence number 3"),
        "{}",
        stdout(&out)
    );

    // Rows removed from the end: only the certificates' anchors can tell.
    let w = certified_world_on(db).await;
    let rows: i64 = w
        .scalar("SELECT CAST(COUNT(*) AS TEXT) FROM ledger")
        .await
        .parse()
        .unwrap();
    let last_anchor: i64 = w.payload(2)["ledger"]["last_seq"].as_i64().unwrap();
    assert!(last_anchor < rows);
    w.exec(&format!("DELETE FROM ledger WHERE seq >= {last_anchor}"))
        .await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains(&format!(
            "certificate #2 pins ledger row {last_anchor}, which is missing"
        )),
        "{}",
        stdout(&out)
    );

    // Only the last row removed (certificate #2's own row): its file in the
    // destination is no longer recorded, and the next run refuses to reuse #2.
    let w = certified_world_on(db).await;
    let before = read(&w.cert(2));
    w.exec("DELETE FROM ledger WHERE seq = (SELECT MAX(seq) FROM ledger)")
        .await;
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 4);
    assert!(
        stdout(&out).contains(
            "lethe-cert-000002.json is in the destination but the ledger does not record it"
        ),
        "{}",
        stdout(&out)
    );
    assert_exit(&w.lethe(&["run"]), 2);
    assert_eq!(read(&w.cert(2)), before, "certificate #2 is never replaced");
}

for_each_db! {
    ledger_verify_detects_tampering => ledger_verify_detects_edited_removed_and_truncated_rows,
}

#[test]
fn lost_certificate_files_are_rebuilt_byte_for_byte_by_the_next_run() {
    let w = certified_world();
    let cert = read(&w.cert(2));
    let manifest = read(&w.manifest(2));
    std::fs::remove_file(w.cert(2)).unwrap();
    std::fs::remove_file(w.manifest(2)).unwrap();
    assert_exit(&w.lethe(&["run"]), 0);
    assert_eq!(read(&w.cert(2)), cert);
    assert_eq!(read(&w.manifest(2)), manifest);
    assert_exit(&verify(&w, &w.cert(3)), 0);
}

#[test]
fn files_lost_from_older_certificates_are_rebuilt_whichever_are_missing() {
    let w = certified_world();
    assert_exit(&w.lethe(&["run"]), 0);
    assert_exit(&w.lethe(&["run"]), 0);
    // Certificate 1 lost its manifest only; certificate 3, before the
    // last, lost both files.
    let manifest1 = read(&w.manifest(1));
    let (cert3, manifest3) = (read(&w.cert(3)), read(&w.manifest(3)));
    let cert1 = read(&w.cert(1));
    std::fs::remove_file(w.manifest(1)).unwrap();
    std::fs::remove_file(w.cert(3)).unwrap();
    std::fs::remove_file(w.manifest(3)).unwrap();
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out)
            .matches("rebuilt a certificate's missing files")
            .count(),
        2,
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&w.manifest(1)), manifest1);
    assert_eq!(read(&w.cert(1)), cert1, "the certificate left is kept");
    assert_eq!(read(&w.cert(3)), cert3);
    assert_eq!(read(&w.manifest(3)), manifest3);
    for n in 1..=5 {
        assert_exit(&verify(&w, &w.cert(n)), 0);
    }
}

#[test]
fn an_auditor_can_check_a_certificate_with_openssl() {
    let w = certified_world();
    let env: serde_json::Value = serde_json::from_slice(&read(&w.cert(1))).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let sig = b64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let payload_type = env["payloadType"].as_str().unwrap();
    assert_eq!(
        payload_type,
        "application/vnd.lethe.deletion-certificate.v1+json"
    );
    let mut pae = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    std::fs::write(w.path("pae.bin"), &pae).unwrap();
    std::fs::write(w.path("sig.bin"), &sig).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(w.public_key())
        .args(["-rawin", "-in"])
        .arg(w.path("pae.bin"))
        .arg("-sigfile")
        .arg(w.path("sig.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("Signature Verified Successfully"));
    // The private key is a PKCS#8 PEM that openssl reads too.
    let out = Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(w.path("keys/lethe.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The manifest hash is a plain SHA-256 of the file.
    let out = Command::new("sha256sum")
        .arg(w.manifest(1))
        .output()
        .unwrap();
    let p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert!(stdout(&out).starts_with(p["manifest_sha256"].as_str().unwrap()));
}

#[test]
fn the_readme_python_check_works() {
    let w = certified_world();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("README has a python block")
        + "```python\n".len();
    let script = &readme[start..start + readme[start..].find("```").unwrap()];
    std::fs::write(w.path("check.py"), script).unwrap();
    let out = Command::new("python3")
        .arg(w.path("check.py"))
        .arg(w.cert(2))
        .arg(w.public_key())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("certificate #2: signature, manifest and Merkle root OK"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn one_object_is_proven_without_revealing_the_others() {
    let w = certified_world();
    let keys = w.manifest_keys(1);
    assert_eq!(keys.len(), 6);
    let target = keys
        .iter()
        .find(|k| k.ends_with("C-1.wav"))
        .unwrap()
        .clone();
    let out = w.lethe(&["proof", w.cert(1).to_str().unwrap(), "--key", &target]);
    assert_exit(&out, 0);
    let proof_text = stdout(&out);
    for other in keys.iter().filter(|k| **k != target) {
        assert!(
            !proof_text.contains(other.as_str()),
            "the proof reveals {other}"
        );
    }
    let proof_path = w.path("proof.json");
    std::fs::write(&proof_path, &proof_text).unwrap();
    // The auditor has the certificate and the proof, not the manifest.
    std::fs::rename(w.manifest(1), w.path("manifest.hidden")).unwrap();
    let check = |proof: &std::path::Path, cert: &std::path::Path| {
        w.lethe(&[
            "verify",
            cert.to_str().unwrap(),
            "--public-key",
            w.public_key().to_str().unwrap(),
            "--proof",
            proof.to_str().unwrap(),
        ])
    };
    let ok = check(&proof_path, &w.cert(1));
    assert_exit(&ok, 0);
    assert!(
        stdout(&ok).contains(&format!(
            "ok    proof: {target} in store recordings (deleted"
        )),
        "{}",
        stdout(&ok)
    );

    // A proof whose line, path or certificate differs is rejected.
    let proof: serde_json::Value = serde_json::from_str(&proof_text).unwrap();
    let mut forged = proof.clone();
    forged["entry"] = serde_json::Value::String(
        proof["entry"]
            .as_str()
            .unwrap()
            .replace("\"size\":5", "\"size\":6"),
    );
    std::fs::write(&proof_path, forged.to_string()).unwrap();
    assert_exit(&check(&proof_path, &w.cert(1)), 4);
    let mut forged = proof.clone();
    let first = forged["proof"][0].as_str().unwrap().to_string();
    forged["proof"][0] = serde_json::Value::String(format!(
        "{}{}",
        if first.starts_with('0') { "1" } else { "0" },
        &first[1..]
    ));
    std::fs::write(&proof_path, forged.to_string()).unwrap();
    assert_exit(&check(&proof_path, &w.cert(1)), 4);
    std::fs::write(&proof_path, &proof_text).unwrap();
    let other = check(&proof_path, &w.cert(2));
    assert_exit(&other, 4);
    assert!(
        stdout(&other).contains("belongs to another certificate"),
        "{}",
        stdout(&other)
    );
    // Nothing to prove for an object the certificate does not list.
    std::fs::rename(w.path("manifest.hidden"), w.manifest(1)).unwrap();
    assert_exit(
        &w.lethe(&[
            "proof",
            w.cert(1).to_str().unwrap(),
            "--key",
            "calls/nope.wav",
        ]),
        2,
    );
}

/// Ledgers and certificates written by the previous release keep verifying,
/// and a run of this release continues their chain.
/// Copies the installation an earlier release left in `tests/data/<release>`
/// and checks that this release's `ledger verify` and `verify` accept its
/// ledger and three certificates, and that a further run continues their chain.
fn an_earlier_release_still_verifies_and_continues(release: &str) -> World {
    let w = World::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(release);
    for entry in walkdir::WalkDir::new(&fixture) {
        let entry = entry.unwrap();
        let to = w
            .dir
            .path()
            .join(entry.path().strip_prefix(&fixture).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        w.path("keys/lethe.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = w.lethe(&["ledger", "verify"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("3 recorded certificates"),
        "{}",
        stdout(&out)
    );
    for n in 1..=3 {
        assert_exit(&w.lethe(&["verify", w.cert(n).to_str().unwrap()]), 0);
    }
    assert_eq!(w.payload(2)["certificate"], "lethe erasure receipt");

    // A further run of this release chains its certificate to the old ones.
    let key = format!("calls/quality/{}/N-1.wav", months_ago(8));
    w.put(&key, "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(&key));
    assert_eq!(w.manifest_keys(4), vec![key]);
    assert_eq!(
        w.payload(4)["previous_certificate_sha256"]
            .as_str()
            .unwrap(),
        lethe::certificate::sha256_hex(&read(&w.cert(3)))
    );
    assert_exit(&w.lethe(&["verify", w.cert(4).to_str().unwrap()]), 0);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    w
}

#[test]
fn a_ledger_and_certificates_of_the_release_before_claims_still_verify_and_continue() {
    an_earlier_release_still_verifies_and_continues("release-3a936f9");
}

/// The release before the pass became a library (fbb365d): every kind of
/// ledger row (holds placed, released with two approvals, an erasure
/// request, a shard's plan) written by its binary.
#[test]
fn a_ledger_and_certificates_of_the_release_before_the_library_pass_still_verify_and_continue() {
    let w = an_earlier_release_still_verifies_and_continues("release-fbb365d");
    let holds = w.lethe(&["hold", "list", "--all"]);
    assert_exit(&holds, 0);
    assert!(stdout(&holds).contains("CASE-1"), "{}", stdout(&holds));
    // The erasure it recorded is still in force: a restored recording of
    // that subject goes at the next run, in spite of its recent date.
    let key = "calls/feedback/2026/11/20/E-2.wav";
    w.put(key, "restored");
    w.put(
        "calls/feedback/2026/11/20/E-2.json",
        r#"{"subject":"cust-erase"}"#,
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(key));
    assert!(w.manifest_keys(5).contains(&key.to_string()));
    assert!(w.exists("calls/disputes/2026/10/01/D-1.wav"));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

/// The release before absence was verified by listing and cloud stores were
/// listed by lethe's own requests (3eb656e): run-scoped (format 2)
/// certificates, whose outcomes carry no `verified_by`, a hold placed and
/// released with two approvals, an erasure receipt. They verify, and a run
/// of this release continues their chain; the erasure still acts.
#[test]
fn a_ledger_and_certificates_of_the_release_before_listing_verification_still_verify_and_continue()
{
    let w = an_earlier_release_still_verifies_and_continues("release-3eb656e");
    assert_eq!(w.payload(3)["format"], 2);
    assert_eq!(w.manifest_keys(3), vec!["calls/quality/2025/02/10/H-1.wav"]);
    the_old_erasure_still_acts(&w);
    assert!(w.exists("calls/disputes/2026/10/01/D-1.wav"));
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

/// A recording of the fixtures' erased subject `cust-erase` that comes back
/// is erased by the next run (certificate 5) and listed in its manifest.
fn the_old_erasure_still_acts(w: &World) {
    let key = "calls/feedback/2026/11/21/E-2.wav";
    w.put(key, "restored");
    w.put(
        "calls/feedback/2026/11/21/E-2.json",
        r#"{"subject":"cust-erase"}"#,
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists(key));
    assert!(w.manifest_keys(5).contains(&key.to_string()));
}

/// The release before the requests register and canonical JSON written
/// straight from typed values (8ba140e): its ledger and certificates verify,
/// a run of this release continues their chain, its erasure request is in
/// the register (received when it was made, answered by its receipt), and
/// the erasure still acts on a recording that comes back.
#[test]
fn a_ledger_and_certificates_of_the_release_before_the_register_still_verify_and_continue() {
    let w = an_earlier_release_still_verifies_and_continues("release-8ba140e");
    assert_eq!(w.payload(3)["format"], 2);
    assert_eq!(w.manifest_keys(3), vec!["calls/quality/2025/02/10/H-1.wav"]);
    let out = w.lethe(&["requests", "list", "--all", "--format", "json"]);
    assert_exit(&out, 0);
    let register: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let register = register.as_array().unwrap();
    assert_eq!(register.len(), 1, "{register:?}");
    assert_eq!(register[0]["request"], "REQ-1");
    assert_eq!(register[0]["kind"], "erasure");
    assert_eq!(register[0]["standing"], "on-time");
    assert_eq!(register[0]["answered"]["by"], "erasure receipt #2");
    the_old_erasure_still_acts(&w);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}
