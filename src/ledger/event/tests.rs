//! Each event's body against the exact JSON lethe wrote before the events
//! were typed: most expected bodies are rows of the ledger the previous
//! release wrote (`tests/data/release-3a936f9/lethe.db`), byte for byte;
//! the others are what its `json!` bodies produced.

use super::*;
use crate::certificate::jcs;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The event's canonical body is `expected`, its columns are those given,
/// and the row reads back as the same event.
fn check(
    event: Event,
    kind: &str,
    columns: (Option<&str>, Option<&str>, Option<i64>),
    expected: &str,
) {
    let body = String::from_utf8(jcs::value_to_vec(&event.body().unwrap())).unwrap();
    assert_eq!(body, expected, "{kind}");
    assert_eq!(event.kind().as_str(), kind);
    assert_eq!(
        (event.store(), event.key(), event.ref_seq()),
        columns,
        "{kind}"
    );
    let read = Event::decode(kind, event.ref_seq(), expected).unwrap();
    assert_eq!(read, event, "{kind} round trip");
}

fn intent() -> Intent {
    Intent {
        store: "recordings".into(),
        key: "calls/feedback/2026/05/01/F-1.wav".into(),
        role: crate::execute::Role::Recording,
        recording: "calls/feedback/2026/05/01/F-1.wav".into(),
        size: 5,
        e_tag: None,
        purposes: vec!["feedback".into()],
        recorded_at: at("2026-05-01T00:00:00Z"),
        expires_at: at("2026-08-01T00:00:00Z"),
        rules: vec!["contact-centre".into()],
        purpose: "feedback".into(),
        basis: "GDPR Art. 6(1)(f): customer feedback analysis".into(),
    }
}

const INTENT: &str = r#"{"basis":"GDPR Art. 6(1)(f): customer feedback analysis","expires_at":"2026-08-01T00:00:00Z","key":"calls/feedback/2026/05/01/F-1.wav","purpose":"feedback","purposes":["feedback"],"recorded_at":"2026-05-01T00:00:00Z","recording":"calls/feedback/2026/05/01/F-1.wav","role":"recording","rules":["contact-centre"],"size":5,"store":"recordings"}"#;

#[test]
fn kinds_are_spelled_as_the_kind_column_has_them() {
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(Kind::parse("run-paused"), None);
    assert!(Event::decode("run-paused", None, "{}").is_err());
}

#[test]
fn a_run_started_row_is_the_previous_release_s() {
    let event = Event::RunStarted(RunStarted {
        started_at: at("2026-12-01T09:18:28.506Z"),
        purpose: Purpose::Retention,
        approved_plan_sha256: None,
        shard: None,
        tool: Tool {
            name: "lethe".into(),
            version: "0.1.0".into(),
        },
        policies: vec![PolicyRef {
            file: "retention.yaml".into(),
            sha256: "5554c78a09460c049e502566ac9d6e8e7c4b6fa93e8f21e8a98147f35b936580".into(),
        }],
        stores: vec![StoreRef {
            name: "recordings".into(),
            url: "file:///tmp/fx/recordings".into(),
        }],
    });
    check(
        event,
        "run-started",
        (None, None, None),
        r#"{"approved_plan_sha256":null,"policies":[{"file":"retention.yaml","sha256":"5554c78a09460c049e502566ac9d6e8e7c4b6fa93e8f21e8a98147f35b936580"}],"purpose":"retention","shard":null,"started_at":"2026-12-01T09:18:28.506Z","stores":[{"name":"recordings","url":"file:///tmp/fx/recordings"}],"tool":{"name":"lethe","version":"0.1.0"}}"#,
    );
}

#[test]
fn an_erasure_shard_and_approved_plan_are_written_in_the_run_started_row() {
    let event = Event::RunStarted(RunStarted {
        started_at: at("2026-12-01T09:18:28.506789Z"),
        purpose: Purpose::Erasure,
        approved_plan_sha256: Some("ab".into()),
        shard: Some("1/2".into()),
        tool: Tool::lethe(),
        policies: vec![],
        stores: vec![],
    });
    let version = env!("CARGO_PKG_VERSION");
    let expected = format!(
        r#"{{"approved_plan_sha256":"ab","policies":[],"purpose":"erasure","shard":"1/2","started_at":"2026-12-01T09:18:28.506Z","stores":[],"tool":{{"name":"lethe","version":"{version}"}}}}"#
    );
    let body = String::from_utf8(jcs::value_to_vec(&event.body().unwrap())).unwrap();
    assert_eq!(body, expected);
    // A row of a release before plans and shards still reads.
    let old = r#"{"policies":[],"purpose":"retention","started_at":"2026-12-01T09:18:28.506Z","stores":[],"tool":{"name":"lethe","version":"0.0.1"}}"#;
    let Event::RunStarted(read) = Event::decode("run-started", None, old).unwrap() else {
        panic!("not a run-started event");
    };
    assert_eq!((read.shard, read.approved_plan_sha256), (None, None));
}

#[test]
fn a_run_finished_row_is_the_previous_release_s() {
    let planned = StoreStats {
        listed: 8,
        recordings: 5,
        owned: 3,
        delete: 3,
        delete_bytes: 35,
        keep: 1,
        held: 1,
        report: 0,
        delete_by_purpose: [("feedback", 1), ("quality", 1), ("training", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        held_by_case: [("CASE-FX".to_string(), 1)].into_iter().collect(),
        keep_by_purpose: [("disputes".to_string(), 1)].into_iter().collect(),
        report_by_code: BTreeMap::new(),
        next_expiry: Some(at("2027-11-20T00:00:00Z")),
    };
    let event = Event::RunFinished(RunFinished {
        finished_at: at("2026-12-01T09:18:28.516Z"),
        status: RunStatus::Completed,
        safety_breaches: vec![],
        stores: vec![StoreFinished {
            name: "recordings".into(),
            error: None,
            planned: Some(planned),
            recordings_deleted: 3,
            objects_deleted: 5,
            failed: 0,
        }],
    });
    check(
        event,
        "run-finished",
        (None, None, None),
        r#"{"finished_at":"2026-12-01T09:18:28.516Z","safety_breaches":[],"status":"completed","stores":[{"error":null,"failed":0,"name":"recordings","objects_deleted":5,"planned":{"delete":3,"delete_by_purpose":{"feedback":1,"quality":1,"training":1},"delete_bytes":35,"held":1,"held_by_case":{"CASE-FX":1},"keep":1,"keep_by_purpose":{"disputes":1},"listed":8,"next_expiry":"2027-11-20T00:00:00Z","owned":3,"recordings":5,"report":0,"report_by_code":{}},"recordings_deleted":3}]}"#,
    );
}

#[test]
fn a_store_that_failed_is_written_with_its_error_and_a_null_plan() {
    let event = Event::RunFinished(RunFinished {
        finished_at: at("2026-12-01T09:18:28.516Z"),
        status: RunStatus::StoppedBySafetyLimit,
        safety_breaches: vec!["store recordings: too many".into()],
        stores: vec![StoreFinished {
            name: "recordings".into(),
            error: Some("unreachable".into()),
            planned: None,
            recordings_deleted: 0,
            objects_deleted: 0,
            failed: 2,
        }],
    });
    check(
        event,
        "run-finished",
        (None, None, None),
        r#"{"finished_at":"2026-12-01T09:18:28.516Z","safety_breaches":["store recordings: too many"],"status":"stopped-by-safety-limit","stores":[{"error":"unreachable","failed":2,"name":"recordings","objects_deleted":0,"planned":null,"recordings_deleted":0}]}"#,
    );
}

#[test]
fn run_statuses_are_spelled_as_before() {
    for (status, text) in [
        (RunStatus::Completed, "completed"),
        (RunStatus::CompletedWithFailures, "completed-with-failures"),
        (RunStatus::Failed, "failed"),
        (RunStatus::Interrupted, "interrupted"),
        (RunStatus::StoppedBySafetyLimit, "stopped-by-safety-limit"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), Value::from(text));
        assert_eq!(status.as_str(), text);
        assert_eq!(
            serde_json::from_value::<RunStatus>(text.into()).unwrap(),
            status
        );
    }
}

#[test]
fn an_intent_row_is_the_previous_release_s() {
    check(
        Event::Intent(intent()),
        "intent",
        (
            Some("recordings"),
            Some("calls/feedback/2026/05/01/F-1.wav"),
            None,
        ),
        INTENT,
    );
}

#[test]
fn an_outcome_row_is_the_previous_release_s() {
    let event = Event::Outcome(OutcomeBody {
        intent: intent(),
        outcome: Outcome {
            intent: 3,
            result: crate::execute::Status::Deleted,
            at: at("2026-12-01T09:18:28.514709563Z"),
            detail: None,
            verified_by: None,
        },
    });
    check(
        event,
        "outcome",
        (
            Some("recordings"),
            Some("calls/feedback/2026/05/01/F-1.wav"),
            Some(3),
        ),
        &format!(
            r#"{{"intent":{INTENT},"outcome":{{"at":"2026-12-01T09:18:28.514709563Z","intent":3,"result":"deleted"}}}}"#
        ),
    );
}

#[test]
fn a_certificate_row_keeps_its_payload_as_it_was_signed() {
    let payload: Value = serde_json::from_str(r#"{"format":1,"ledger":{"first_seq":1,"last_row_sha256":"fc","last_seq":13},"previous_certificate_sha256":null}"#).unwrap();
    let event = Event::Certificate(CertificateRecord {
        sequence: 1,
        certificate_file: "lethe-cert-000001.json".into(),
        certificate_sha256: "d6".into(),
        manifest_file: "lethe-cert-000001.manifest.jsonl".into(),
        manifest_sha256: "d8".into(),
        payload,
    });
    check(
        event,
        "certificate",
        (None, None, None),
        r#"{"certificate_file":"lethe-cert-000001.json","certificate_sha256":"d6","manifest_file":"lethe-cert-000001.manifest.jsonl","manifest_sha256":"d8","payload":{"format":1,"ledger":{"first_seq":1,"last_row_sha256":"fc","last_seq":13},"previous_certificate_sha256":null},"sequence":1}"#,
    );
}

#[test]
fn a_hold_placed_row_is_the_previous_release_s() {
    let hold: Hold = serde_json::from_str(r#"{"case":"CASE-FX","placed_at":"2026-12-01T09:18:28.479196491Z","placed_by":"dpo","reason":"fixture","selectors":[{"by":"key","key":"calls/quality/2025/02/02/H-1.wav"}]}"#).unwrap();
    check(
        Event::HoldPlaced(hold.clone()),
        "hold-placed",
        (None, None, None),
        r#"{"case":"CASE-FX","placed_at":"2026-12-01T09:18:28.479196491Z","placed_by":"dpo","reason":"fixture","selectors":[{"by":"key","key":"calls/quality/2025/02/02/H-1.wav"}]}"#,
    );
    // A hold limited to one store puts it in the row's store column.
    let one = Hold {
        store: Some("recordings".into()),
        ..hold
    };
    assert_eq!(Event::HoldPlaced(one).store(), Some("recordings"));
}

#[test]
fn a_hold_released_row_is_the_previous_release_s() {
    let release = Release {
        case: "CASE-FX".into(),
        by: "dpo".into(),
        reason: "closed".into(),
        at: at("2026-12-01T09:18:28.563809067Z"),
        approved_by: vec![],
    };
    check(
        Event::HoldReleased {
            placed_seq: 1,
            release: release.clone(),
        },
        "hold-released",
        (None, None, Some(1)),
        r#"{"at":"2026-12-01T09:18:28.563809067Z","by":"dpo","case":"CASE-FX","reason":"closed"}"#,
    );
    check(
        Event::HoldReleased {
            placed_seq: 1,
            release: Release {
                approved_by: vec!["legal".into()],
                ..release
            },
        },
        "hold-released",
        (None, None, Some(1)),
        r#"{"approved_by":["legal"],"at":"2026-12-01T09:18:28.563809067Z","by":"dpo","case":"CASE-FX","reason":"closed"}"#,
    );
    assert!(
        Event::decode(
            "hold-released",
            None,
            r#"{"at":"2026-12-01T09:18:28Z","by":"dpo","case":"C","reason":"r"}"#
        )
        .is_err()
    );
}

#[test]
fn a_release_request_and_its_approval_are_written_as_before() {
    check(
        Event::HoldReleaseRequested {
            placed_seq: 4,
            request: ReleaseRequest {
                by: "dpo".into(),
                reason: "closed".into(),
                at: at("2026-12-01T09:18:28.5638Z"),
                approved_by: vec![],
            },
        },
        "hold-release-requested",
        (None, None, Some(4)),
        r#"{"approved_by":[],"at":"2026-12-01T09:18:28.563800Z","by":"dpo","reason":"closed"}"#,
    );
    check(
        Event::HoldReleaseApproved {
            placed_seq: 4,
            approval: ReleaseApproval {
                case: "CASE-FX".into(),
                by: "legal".into(),
                at: at("2026-12-01T09:18:29.120Z"),
            },
        },
        "hold-release-approved",
        (None, None, Some(4)),
        r#"{"at":"2026-12-01T09:18:29.120Z","by":"legal","case":"CASE-FX"}"#,
    );
}

#[test]
fn an_erasure_requested_row_is_the_previous_release_s() {
    check(
        Event::ErasureRequested(ErasureRequest {
            request: "DSR-FX".into(),
            subject_sha256: "5d2b174b88cf0fce59c96896fbb469e6428f5336b0a3b823b8a5066c56f4c7f3"
                .into(),
            at: at("2026-12-01T09:18:28.538Z"),
        }),
        "erasure-requested",
        (None, None, None),
        r#"{"at":"2026-12-01T09:18:28.538Z","request":"DSR-FX","subject_sha256":"5d2b174b88cf0fce59c96896fbb469e6428f5336b0a3b823b8a5066c56f4c7f3"}"#,
    );
}

#[test]
fn a_shard_planned_row_is_written_as_before() {
    check(
        Event::ShardPlanned(ShardPlan {
            pass: "run-1".into(),
            shard: 0,
            of: 2,
            stores: [("recordings".to_string(), (3, 5))].into_iter().collect(),
        }),
        "shard-planned",
        (None, None, None),
        r#"{"of":2,"pass":"run-1","shard":0,"stores":{"recordings":[3,5]}}"#,
    );
}
