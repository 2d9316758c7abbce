//! The local store never follows a link out of its root, deletes exactly the
//! file it listed, and reports every name it cannot represent.

use std::os::unix::ffi::OsStrExt;

use crate::*;

#[test]
fn symbolic_links_are_never_followed_or_deleted() {
    let w = World::new();
    let old = months_ago(30);
    // Outside the store: a folder of "expired recordings" that must survive.
    let outside = w.path("outside");
    std::fs::create_dir_all(outside.join(&old)).unwrap();
    std::fs::write(outside.join(format!("{old}/X-1.wav")), "precious").unwrap();
    std::fs::create_dir_all(w.store().join("calls/quality")).unwrap();
    // A linked folder that would make outside/…/X-1.wav look like calls/quality/…/X-1.wav.
    let linked_year = old.split('/').next().unwrap();
    std::os::unix::fs::symlink(
        outside.join(linked_year),
        w.store().join(format!("calls/quality/{linked_year}")),
    )
    .unwrap();
    // A linked file inside the store pattern, pointing at a file outside.
    std::fs::create_dir_all(w.store().join("calls/training/2020/01/01")).unwrap();
    std::fs::write(w.path("outside/target.wav"), "precious too").unwrap();
    std::os::unix::fs::symlink(
        w.path("outside/target.wav"),
        w.store().join("calls/training/2020/01/01/L-1.wav"),
    )
    .unwrap();
    // A companion that is a link: nothing of that recording is deleted; it is reported.
    w.put("calls/feedback/2020/01/01/F-1.wav", "audio");
    std::fs::create_dir_all(w.store().join("transcripts")).unwrap();
    std::os::unix::fs::symlink(
        w.path("outside/target.wav"),
        w.store().join("transcripts/F-1.txt"),
    )
    .unwrap();

    let plan = w.lethe(&["plan"]);
    assert_exit(&plan, 0);
    let text = stdout(&plan);
    assert!(
        text.contains(&format!(
            "REPORT calls/quality/{linked_year}  kept: symbolic link: not followed"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "REPORT calls/training/2020/01/01/L-1.wav  kept: symbolic link: not followed"
        ),
        "{text}"
    );

    // Plan and run agree: the recording whose companion is a link is kept
    // and reported (not planned for deletion, then failed every night).
    assert!(
        text.contains(
            "REPORT calls/feedback/2020/01/01/F-1.wav  kept: its object transcripts/F-1.txt is not deleted"
        ),
        "{text}"
    );
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("companion-unchecked 1"),
        "{}",
        stdout(&out)
    );
    assert!(outside.join(format!("{old}/X-1.wav")).exists());
    assert!(w.path("outside/target.wav").exists());
    assert!(w.exists("calls/training/2020/01/01/L-1.wav"));
    assert!(
        w.exists("transcripts/F-1.txt"),
        "a companion link is not deleted"
    );
    assert!(
        w.exists("calls/feedback/2020/01/01/F-1.wav"),
        "nor is the recording it belongs to"
    );
    assert!(w.manifest_keys(1).is_empty());
}

#[test]
fn odd_names_round_trip_exactly() {
    let w = World::new();
    // 20 months: expired for quality (6 months), not for disputes (24 months).
    let dir = format!("calls/quality/{}", months_ago(20));
    // Each pair differs only in how a naive layer might encode or decode it.
    let names = ODD_NAMES;
    for n in names {
        w.put(&format!("{dir}/{n}.wav"), n);
    }
    // A kept twin: "a b" is kept for disputes by its sidecar, "a%20b" is not.
    w.put(&format!("{dir}/a b.json"), r#"{"purposes":["disputes"]}"#);
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(
        w.exists(&format!("{dir}/a b.wav")),
        "the kept twin must remain"
    );
    assert!(w.exists(&format!("{dir}/a b.json")));
    for n in names.iter().filter(|n| **n != "a b") {
        assert!(!w.exists(&format!("{dir}/{n}.wav")), "{n} should be gone");
    }
    let expected: Vec<String> = names
        .iter()
        .filter(|n| **n != "a b")
        .map(|n| format!("{dir}/{n}.wav"))
        .collect();
    assert_eq!(sorted(w.manifest_keys(1)), sorted(expected));
}

#[test]
fn names_the_storage_layer_cannot_represent_are_reported_not_skipped() {
    let w = World::new();
    let dir = w.store().join(format!("calls/quality/{}", months_ago(30)));
    std::fs::create_dir_all(&dir).unwrap();
    // Invalid UTF-8, a control character, and a name object_store reserves for staging.
    let bad_utf8 = std::ffi::OsStr::from_bytes(b"bad-\xff.wav");
    std::fs::write(dir.join(bad_utf8), "x").unwrap();
    std::fs::write(dir.join("new\nline.wav"), "x").unwrap();
    std::fs::write(dir.join("staged.wav#1"), "x").unwrap();
    w.put(&format!("calls/quality/{}/fine.wav", months_ago(30)), "x");
    let plan = w.lethe(&["plan", "--format", "json"]);
    assert_exit(&plan, 0);
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let items = doc["stores"][0]["items"].as_array().unwrap();
    let reports: Vec<String> = items
        .iter()
        .filter(|i| i["action"] == "report")
        .map(|i| format!("{} | {}", i["key"], i["reason"]))
        .collect();
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(
        reports
            .iter()
            .any(|r| r.contains("bad-\\\\xff.wav") && r.contains("not valid UTF-8")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.contains("new\\\\nline.wav") && r.contains("cannot be represented")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.contains("staged.wav#1") && r.contains("cannot address this name exactly")),
        "{reports:?}"
    );

    assert_exit(&w.lethe(&["run"]), 0);
    assert!(dir.join(bad_utf8).exists());
    assert!(dir.join("new\nline.wav").exists());
    assert!(dir.join("staged.wav#1").exists());
    assert!(!dir.join("fine.wav").exists());
}

#[test]
fn a_store_root_that_is_a_link_is_resolved_once() {
    // Kubernetes mounts volumes through links; the root itself may be one.
    let w = World::new();
    let real = w.path("real-store");
    std::fs::rename(w.store(), &real).unwrap();
    std::os::unix::fs::symlink(&real, w.store()).unwrap();
    let key = format!("calls/quality/{}/C-1.wav", months_ago(30));
    w.put(&key, "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!real.join(&key).exists());
}

#[test]
fn lethe_never_deletes_its_own_files_even_inside_the_store() {
    let w = World::new();
    // A careless setup: the store is the installation folder, and a catch-all rule.
    w.write(
        "policies/retention.yaml",
        "purposes:\n  feedback: { retain: 3 months, basis: \"x\" }\nrecordings:\n  - { name: all, store: recordings, match: \"**\", purposes: [feedback] }\n",
    );
    let config = std::fs::read_to_string(w.config())
        .unwrap()
        .replace("url = \"recordings\"", "url = \".\"");
    std::fs::write(w.config(), config).unwrap();
    w.write("old/call.wav", "audio");
    assert_exit(&w.lethe(&["run"]), 0);
    // Age everything, lethe's files included, so that the rule would expire them all.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    for entry in walkdir::WalkDir::new(w.dir.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        std::fs::File::options()
            .write(true)
            .open(entry.path())
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let plan = w.lethe(&["plan"]);
    assert_exit(&plan, 0);
    assert!(
        stdout(&plan).contains("REPORT lethe.db  kept: lethe's own file"),
        "{}",
        stdout(&plan)
    );
    // The certificate folder inside the store is not listed at all: its
    // files are lethe's, not the store's.
    assert!(!stdout(&plan).contains("lethe-cert"), "{}", stdout(&plan));
    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert!(!w.path("old/call.wav").exists());
    for own in [
        "lethe.toml",
        "policies/retention.yaml",
        "keys/lethe.key",
        "keys/lethe.key.pub",
        "lethe.db",
        "certificates/lethe-cert-000001.json",
    ] {
        assert!(w.path(own).exists(), "{own} was deleted");
    }
    assert_eq!(w.manifest_keys(2), vec!["old/call.wav"]);
}

/// A folder with more entries than lethe sorts in memory (50,000) is streamed
/// in the file system's order: sidecars there are read, never judged absent
/// from the listing's order, and neither its files nor its subfolders are
/// missed.
#[test]
fn a_folder_too_large_to_sort_is_walked_whole_without_inferences() {
    let w = World::new();
    w.write(
        "policies/retention.yaml",
        &format!(
            "{POLICY}  - name: nested\n    store: recordings\n    match: \"calls/{{purpose}}/{{recorded:%Y/%m/%d}}/nested/{{call_id}}.wav\"\n"
        ),
    );
    let dir = format!("calls/quality/{}", months_ago(8));
    let (mut gone, mut kept) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let rec = format!("{dir}/E-{i:03}.wav");
        w.put(&rec, "audio");
        if i % 10 == 0 {
            let sidecar = rec.replace(".wav", ".json");
            w.put(&sidecar, r#"{"purposes":["quality"]}"#);
            gone.push(sidecar);
        }
        gone.push(rec);
        // Expired for quality, kept for disputes by a sidecar that the
        // unsorted listing may yield before or after the recording.
        let rec = format!("{dir}/D-{i:03}.wav");
        w.put(&rec, "audio");
        let sidecar = rec.replace(".wav", ".json");
        w.put(&sidecar, r#"{"purposes":["disputes"]}"#);
        kept.extend([rec, sidecar]);
    }
    w.put(&format!("{dir}/nested/N-old.wav"), "audio");
    gone.push(format!("{dir}/nested/N-old.wav"));
    let fresh = format!("calls/quality/{}/nested/N-new.wav", months_ago(1));
    w.put(&fresh, "audio");
    kept.push(fresh);
    for i in 0..50_000 {
        std::fs::write(w.store().join(format!("{dir}/zz-{i:05}.log")), "x").unwrap();
    }

    let out = w.lethe(&["run"]);
    assert_exit(&out, 0);
    assert_eq!(sorted(w.all_certified()), sorted(gone.clone()));
    for k in &gone {
        assert!(!w.exists(k), "{k} should be gone");
    }
    for k in &kept {
        assert!(w.exists(k), "{k} should be kept");
    }
    let left = std::fs::read_dir(w.store().join(&dir)).unwrap().count();
    assert_eq!(
        left,
        50_000 + 200 + 1,
        "the filler, the D recordings and sidecars, nested/"
    );
}
