//! Claims: an object is deleted only when every claim on it has ended, as a
//! recording under each rule that matches it, as the sidecar or companion of
//! each recording that names it, and under every hold whose selectors cover
//! it. The reproductions of the defects found, then generated layouts checked
//! against a model of the claims written independently here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Months, Utc};

use crate::*;

const PURPOSES: &str = r#"
purposes:
  quality:      { retain: 6 months,  basis: "GDPR Art. 6(1)(f)" }
  training:     { retain: 12 months, basis: "GDPR Art. 6(1)(a)" }
  disputes:     { retain: 24 months, basis: "GDPR Art. 17(3)(e)" }
  mifid-orders: { retain: 5 years, minimum: 5 years, basis: "MiFID II Art. 16(7)" }
"#;

/// The demo rule with an orders companion, beside a rule for the orders themselves.
const ORDERS_POLICY: &str = r#"
recordings:
  - { name: cc, store: recordings, match: "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav",
      companions: ["transcripts/{call_id}.txt", "orders/{call_id}.wav"] }
  - { name: orders, store: recordings, match: "orders/{call_id}.wav", purposes: [mifid-orders] }
"#;

fn world(rules: &str) -> World {
    let w = World::new();
    w.write("policies/retention.yaml", &format!("{PURPOSES}{rules}"));
    w
}

fn hold(w: &World, args: &[&str]) {
    let mut all = vec!["hold", "place", "--by", "dpo", "--reason", "court case"];
    all.extend_from_slice(args);
    assert_exit(&w.lethe(&all), 0);
}

async fn a_companion_another_claim_keeps_stays_with_its_claimant(db: Db) {
    let mut w = world(ORDERS_POLICY);
    w.use_db(db).await;
    let day = months_ago(11);
    let quality = format!("calls/quality/{day}/C-1.wav");
    let disputes = format!("calls/disputes/{day}/C-1.wav");
    for k in [&quality, &disputes] {
        w.put(k, "audio");
    }
    w.put("transcripts/C-1.txt", "text");
    w.put("orders/C-1.wav", "order audio");
    hold(&w, &["--case", "CASE-1", "--prefix", "calls/disputes/"]);

    let plan = w.lethe(&["plan"]);
    assert_exit(&plan, 0);
    let text = stdout(&plan);
    assert!(text.contains(&format!("HOLD   {disputes}")), "{text}");
    assert!(text.contains(&format!("DELETE {quality}")), "{text}");
    assert!(
        text.contains("KEEP transcripts/C-1.txt  kept: it is a companion of calls/disputes/"),
        "{text}"
    );
    assert!(text.contains("KEEP orders/C-1.wav  kept: it is "), "{text}");
    assert!(
        text.contains("policy: ") && text.contains("can name a recording of rule \"orders\""),
        "the overlapping companion pattern is a policy warning:\n{text}"
    );

    let run = w.lethe(&["run"]);
    assert_exit(&run, 0);
    assert!(!w.exists(&quality));
    for k in [disputes.as_str(), "transcripts/C-1.txt", "orders/C-1.wav"] {
        assert!(w.exists(k), "{k} is still claimed and must stay");
    }
    assert_eq!(w.all_certified(), vec![quality.clone()]);

    // Once the hold is released, the held recording goes with its transcript,
    // and the MiFID recording still stays under its five-year minimum.
    assert_exit(
        &w.lethe(&[
            "hold", "release", "--case", "CASE-1", "--by", "dpo", "--reason", "closed",
        ]),
        0,
    );
    let later = w.lethe(&[
        "plan",
        "--as-of",
        &(chrono::Utc::now() + chrono::Months::new(14)).to_rfc3339(),
    ]);
    assert!(
        stdout(&later).contains(&format!("DELETE {disputes}")),
        "{}",
        stdout(&later)
    );
    assert!(
        stdout(&later).contains("KEEP orders/C-1.wav"),
        "{}",
        stdout(&later)
    );
}

async fn a_hold_on_a_companion_keeps_it_and_its_recording(db: Db) {
    for selector in [
        ["--prefix", "transcripts/"],
        ["--key", "transcripts/C-1.txt"],
    ] {
        let mut w = world(ORDERS_POLICY);
        w.use_db(db).await;
        let quality = format!("calls/quality/{}/C-1.wav", months_ago(11));
        let other = format!("calls/quality/{}/C-2.wav", months_ago(11));
        w.put(&quality, "audio");
        w.put(&other, "audio");
        w.put("transcripts/C-1.txt", "text");
        w.put("transcripts/C-2.txt", "text");
        let mut args = vec!["--case", "CASE-T"];
        args.extend_from_slice(&selector);
        hold(&w, &args);
        let plan = stdout(&w.lethe(&["plan"]));
        assert!(
            plan.contains(&format!("HOLD   {quality}  kept: legal hold CASE-T")),
            "{selector:?}\n{plan}"
        );
        assert_exit(&w.lethe(&["run"]), 0);
        assert!(
            w.exists(&quality) && w.exists("transcripts/C-1.txt"),
            "{selector:?}"
        );
        if selector[0] == "--key" {
            assert!(!w.exists(&other) && !w.exists("transcripts/C-2.txt"));
        } else {
            assert!(w.exists(&other) && w.exists("transcripts/C-2.txt"));
        }
    }
}

async fn a_sidecar_shared_with_a_kept_recording_stays(db: Db) {
    let mut w = world(
        r#"
recordings:
  - { name: short, store: recordings, match: "short/{call_id}.wav", purposes: [quality], sidecar: "meta/{call_id}.json" }
  - { name: long, store: recordings, match: "long/{call_id}.wav", purposes: [training], sidecar: "meta/{call_id}.json" }
"#,
    );
    w.use_db(db).await;
    let recorded = (chrono::Utc::now() - chrono::Months::new(8)).to_rfc3339();
    w.put("short/C-1.wav", "audio");
    w.put("long/C-1.wav", "audio");
    w.put(
        "meta/C-1.json",
        &format!(r#"{{"purposes":["disputes"],"recorded_at":"{recorded}"}}"#),
    );
    w.put("short/C-2.wav", "audio");
    w.put(
        "meta/C-2.json",
        &format!(r#"{{"recorded_at":"{recorded}"}}"#),
    );
    // C-1's sidecar keeps both for disputes; C-2's short recording expired.
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(w.exists("short/C-1.wav") && w.exists("long/C-1.wav") && w.exists("meta/C-1.json"));
    assert!(!w.exists("short/C-2.wav") && !w.exists("meta/C-2.json"));

    // Now a shared sidecar whose purposes keep one recording and not the other.
    w.put("long/C-3.wav", "audio");
    w.put("short/C-3.wav", "audio");
    w.put(
        "meta/C-3.json",
        &format!(r#"{{"recorded_at":"{recorded}"}}"#),
    );
    let plan = stdout(&w.lethe(&["plan"]));
    assert!(
        plan.contains("KEEP meta/C-3.json  kept: it is a sidecar of long/C-3.wav, kept until"),
        "{plan}"
    );
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(!w.exists("short/C-3.wav"));
    assert!(w.exists("long/C-3.wav") && w.exists("meta/C-3.json"));
    // The kept recording is still dated by its sidecar, not by the file's age.
    let plan = stdout(&w.lethe(&["plan", "--format", "json"]));
    assert!(plan.contains(r#""recorded_from":"sidecar""#), "{plan}");
}

async fn a_companion_that_is_a_link_keeps_its_recording_in_plan_and_run(db: Db) {
    let mut w = world(ORDERS_POLICY);
    w.use_db(db).await;
    let quality = format!("calls/quality/{}/C-1.wav", months_ago(11));
    w.put(&quality, "audio");
    w.write("elsewhere/t.txt", "text");
    std::fs::create_dir_all(w.store().join("transcripts")).unwrap();
    std::os::unix::fs::symlink(
        w.path("elsewhere/t.txt"),
        w.store().join("transcripts/C-1.txt"),
    )
    .unwrap();
    let plan = stdout(&w.lethe(&["plan"]));
    assert!(
        plan.contains(&format!(
            "REPORT {quality}  kept: its object transcripts/C-1.txt is not deleted"
        )),
        "{plan}"
    );
    for _ in 0..2 {
        let run = w.lethe(&["run"]);
        assert_exit(&run, 0);
        assert!(
            stdout(&run).contains("companion-unchecked 1"),
            "{}",
            stdout(&run)
        );
        assert!(w.exists(&quality) && w.exists("transcripts/C-1.txt"));
        assert!(w.path("elsewhere/t.txt").exists());
    }
}

for_each_db! {
    a_companion_kept_by_another_claim_stays => a_companion_another_claim_keeps_stays_with_its_claimant,
    a_hold_on_a_companion_keeps_its_recording => a_hold_on_a_companion_keeps_it_and_its_recording,
    a_shared_sidecar_stays_with_the_kept_recording => a_sidecar_shared_with_a_kept_recording_stays,
    a_link_companion_keeps_its_recording => a_companion_that_is_a_link_keeps_its_recording_in_plan_and_run,
}

/// A generated layout: recordings of three rules sharing sidecars and
/// companions, some objects missing, some holds on companions and prefixes.
struct Layout {
    /// Every object with its recording date where it is a recording.
    objects: BTreeSet<String>,
    /// key -> (purposes, months since recorded) for each recording.
    recordings: BTreeMap<String, (Vec<&'static str>, u32)>,
    /// key -> the objects it names (present sidecars, every companion key).
    names: BTreeMap<String, Vec<String>>,
    key_holds: Vec<String>,
    prefix_holds: Vec<String>,
}

const LAYOUT_POLICY: &str = r#"
recordings:
  - { name: cc, store: recordings, match: "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav",
      sidecar: "meta/{call_id}.json", companions: ["transcripts/{call_id}.txt", "orders/{call_id}.wav"] }
  - { name: orders, store: recordings, match: "orders/{call_id}.wav", purposes: [mifid-orders], sidecar: "meta/{call_id}.json" }
  - { name: notes, store: recordings, match: "notes/{call_id}.wav", purposes: [training], companions: ["transcripts/{call_id}.txt"] }
"#;

fn months(purpose: &str) -> u32 {
    match purpose {
        "quality" => 6,
        "training" => 12,
        "disputes" => 24,
        "mifid-orders" => 60,
        other => panic!("{other}"),
    }
}

fn set_age(w: &World, key: &str, months: u32) {
    let t = Utc::now() - Months::new(months);
    let status = std::process::Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}", t.timestamp()))
        .arg(w.store().join(key))
        .status()
        .unwrap();
    assert!(status.success());
}

fn generate(w: &World, seed: u64) -> Layout {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut l = Layout {
        objects: BTreeSet::new(),
        recordings: BTreeMap::new(),
        names: BTreeMap::new(),
        key_holds: vec![],
        prefix_holds: vec![],
    };
    let ages = [1u32, 8, 14, 30];
    for i in 0..rng.usize(4..14) {
        let id = format!("C-{i}");
        let meta = format!("meta/{id}.json");
        let sidecar_purposes: Vec<&'static str> = if rng.f32() < 0.4 {
            let extra = if rng.bool() { vec!["disputes"] } else { vec![] };
            let body = serde_json::json!({ "purposes": extra }).to_string();
            w.put(&meta, &body);
            l.objects.insert(meta.clone());
            extra
        } else {
            vec![]
        };
        let has_meta = l.objects.contains(&meta);
        let transcript = format!("transcripts/{id}.txt");
        if rng.f32() < 0.7 {
            w.put(&transcript, "text");
            l.objects.insert(transcript.clone());
        }
        let order = format!("orders/{id}.wav");
        if rng.f32() < 0.4 {
            w.put(&order, "order");
            let age = if rng.bool() { 10 } else { 70 };
            set_age(w, &order, age);
            l.objects.insert(order.clone());
            let mut purposes = vec!["mifid-orders"];
            purposes.extend(sidecar_purposes.iter().copied());
            l.recordings.insert(order.clone(), (purposes, age));
            l.names.insert(
                order.clone(),
                if has_meta { vec![meta.clone()] } else { vec![] },
            );
        }
        let notes = format!("notes/{id}.wav");
        if rng.f32() < 0.3 {
            w.put(&notes, "notes");
            let age = if rng.bool() { 3 } else { 14 };
            set_age(w, &notes, age);
            l.objects.insert(notes.clone());
            l.recordings.insert(notes.clone(), (vec!["training"], age));
            l.names.insert(notes.clone(), vec![transcript.clone()]);
        }
        for purpose in ["quality", "training", "disputes"] {
            if rng.f32() < 0.45 {
                let age = ages[rng.usize(..ages.len())];
                let key = format!("calls/{purpose}/{}/{id}.wav", months_ago(age));
                w.put(&key, "audio");
                l.objects.insert(key.clone());
                let mut purposes = vec![purpose];
                purposes.extend(sidecar_purposes.iter().copied());
                l.recordings.insert(key.clone(), (purposes, age));
                let mut names = vec![transcript.clone(), order.clone()];
                if has_meta {
                    names.push(meta.clone());
                }
                l.names.insert(key, names);
            }
        }
        if rng.f32() < 0.15 {
            l.key_holds.push(transcript.clone());
        }
        if rng.f32() < 0.08 {
            l.key_holds.push(order.clone());
        }
    }
    if rng.f32() < 0.3 {
        l.prefix_holds.push("calls/disputes/".into());
    }
    if rng.f32() < 0.2 {
        l.prefix_holds.push("meta/C-1".into());
    }
    l
}

/// What a correct run deletes, worked out from the claims directly.
fn expected_deletions(l: &Layout) -> BTreeSet<String> {
    let held = |k: &str| {
        l.key_holds.iter().any(|h| h == k)
            || l.prefix_holds.iter().any(|p| k.starts_with(p.as_str()))
    };
    let mut kept: BTreeSet<&String> = l
        .recordings
        .iter()
        .filter(|(key, (purposes, age))| {
            let retain = purposes.iter().map(|p| months(p)).max().unwrap();
            *age < retain || held(key) || l.names[*key].iter().any(|n| held(n))
        })
        .map(|(k, _)| k)
        .collect();
    // A recording named by a kept one stays whole, and claims what it names in turn.
    loop {
        let named: BTreeSet<&String> = kept.iter().flat_map(|k| &l.names[*k]).collect();
        let more: Vec<&String> = l
            .recordings
            .keys()
            .filter(|k| !kept.contains(k) && named.contains(k))
            .collect();
        if more.is_empty() {
            break;
        }
        kept.extend(more);
    }
    let claimed: BTreeSet<&String> = kept
        .iter()
        .copied()
        .chain(kept.iter().flat_map(|k| &l.names[*k]))
        .collect();
    l.recordings
        .keys()
        .filter(|k| !kept.contains(k))
        .flat_map(|k| std::iter::once(k).chain(&l.names[k]))
        .filter(|k| l.objects.contains(*k) && !claimed.contains(k))
        .cloned()
        .collect()
}

fn present(w: &World) -> BTreeSet<String> {
    walkdir::WalkDir::new(w.store())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(w.store())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

async fn generated_layouts_lose_nothing_any_claim_keeps(db: Db) {
    let seeds: u64 = std::env::var("LETHE_CLAIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if db == Db::Sqlite { 12 } else { 3 });
    let (mut deleted, mut kept_by_claims) = (0, 0);
    for seed in 0..seeds {
        let mut w = world(LAYOUT_POLICY);
        w.use_db(db).await;
        let l = generate(&w, seed);
        for (i, k) in l.key_holds.iter().enumerate() {
            hold(&w, &["--case", &format!("K-{i}"), "--key", k]);
        }
        for (i, p) in l.prefix_holds.iter().enumerate() {
            hold(&w, &["--case", &format!("P-{i}"), "--prefix", p]);
        }
        let expected = expected_deletions(&l);
        let run = w.lethe(&["run"]);
        assert_exit(&run, 0);
        let left = present(&w);
        let gone: BTreeSet<String> = l.objects.difference(&left).cloned().collect();
        assert_eq!(
            gone,
            expected,
            "seed {seed}: deleted vs the model\n{}",
            stdout(&run)
        );
        let certified: BTreeSet<String> = w.all_certified().into_iter().collect();
        assert_eq!(certified, expected, "seed {seed}: certified vs the model");
        // The next run finds nothing more to delete.
        assert_exit(&w.lethe(&["run"]), 0);
        assert_eq!(present(&w), left, "seed {seed}: a second run deleted more");
        deleted += expected.len();
        kept_by_claims += l
            .recordings
            .keys()
            .flat_map(|k| &l.names[k])
            .filter(|k| left.contains(*k))
            .count();
    }
    println!(
        "claims ({db:?}): {seeds} generated layouts, {deleted} objects deleted as the model says, {kept_by_claims} sidecars and companions left in place, 0 wrongful deletions"
    );
}

for_each_db! {
    generated_layouts_lose_nothing_claimed => generated_layouts_lose_nothing_any_claim_keeps,
}

/// A shard plans only its share, but a recording of another shard still
/// claims what it names: the shared transcript stays while the kept recording
/// (in the other shard) names it.
#[test]
fn a_recording_in_another_shard_still_claims_its_companions() {
    let w = world(ORDERS_POLICY);
    let shard0 = lethe::decide::Shard::parse("0/2").unwrap();
    let day_old = months_ago(11);
    let day_new = months_ago(1);
    // Find a call whose expired recording is in shard 0 and kept one in shard 1.
    let (expired, kept) = (0..)
        .map(|i| {
            (
                format!("calls/quality/{day_old}/C-{i}.wav"),
                format!("calls/quality/{day_new}/C-{i}.wav"),
            )
        })
        .find(|(e, k)| shard0.owns("recordings", e) && !shard0.owns("recordings", k))
        .unwrap();
    let id = expired
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".wav")
        .to_string();
    let transcript = format!("transcripts/{id}.txt");
    w.put(&expired, "audio");
    w.put(&kept, "audio");
    w.put(&transcript, "text");
    // Both shards of the split at once (a pass's shards plan together).
    for out in w.shards(2, &[]) {
        assert_exit(&out, 0);
    }
    assert!(!w.exists(&expired));
    assert!(
        w.exists(&kept) && w.exists(&transcript),
        "claimed from shard 1"
    );
}

/// An object that two deletions remove (a transcript two expired recordings
/// share, an expired order that is also an expired call's companion) has one
/// intent and appears once in the certificates.
#[test]
fn an_object_two_deletions_remove_is_deleted_and_certified_once() {
    let w = world(ORDERS_POLICY);
    let day = months_ago(11);
    let a = format!("calls/quality/{day}/C-1.wav");
    let b = format!("calls/training/{}/C-1.wav", months_ago(14));
    for k in [&a, &b] {
        w.put(k, "audio");
    }
    w.put("transcripts/C-1.txt", "text");
    w.put("orders/C-1.wav", "order");
    set_age(&w, "orders/C-1.wav", 70);
    assert_exit(&w.lethe(&["run"]), 0);
    assert!(present(&w).is_empty(), "{:?}", present(&w));
    assert_eq!(
        sorted(w.all_certified()),
        sorted(vec![
            a,
            b,
            "transcripts/C-1.txt".into(),
            "orders/C-1.wav".into()
        ])
    );
    assert_eq!(
        w.sql("SELECT COUNT(*) FROM ledger WHERE kind = 'intent'"),
        "4",
        "one intent per object"
    );
}

/// An approved plan carries the companions its own listing showed, but the
/// run deletes what the run's listing shows: a transcript removed since the
/// review is not claimed as deleted, one written since is deleted with its
/// recording, and the certificate names exactly what went.
#[test]
fn an_approved_plan_deletes_the_companions_the_run_listed() {
    let w = world(
        r#"
recordings:
  - { name: cc, store: recordings, match: "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav",
      companions: ["transcripts/{call_id}.txt"] }
"#,
    );
    let day = months_ago(11);
    let (a, b) = (
        format!("calls/quality/{day}/C-1.wav"),
        format!("calls/quality/{day}/C-2.wav"),
    );
    for k in [&a, &b] {
        w.put(k, "audio");
    }
    w.put("transcripts/C-1.txt", "text");
    let plan_file = w.path("approved.jsonl");
    assert_exit(&w.lethe(&["plan", "--out", plan_file.to_str().unwrap()]), 0);
    assert!(
        std::fs::read_to_string(&plan_file)
            .unwrap()
            .contains("transcripts/C-1.txt"),
        "the reviewed plan names the listed transcript"
    );
    // After the review: C-1's transcript is removed, C-2's is written.
    std::fs::remove_file(w.store().join("transcripts/C-1.txt")).unwrap();
    w.put("transcripts/C-2.txt", "text");
    assert_exit(&w.lethe(&["run", "--plan", plan_file.to_str().unwrap()]), 0);
    assert!(present(&w).is_empty(), "{:?}", present(&w));
    assert_eq!(
        sorted(w.manifest_keys(1)),
        sorted(vec![a, b, "transcripts/C-2.txt".into()])
    );
}
