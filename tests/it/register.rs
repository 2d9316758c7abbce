//! `lethe requests open | list | extend` and the answers `erase` gives: the
//! register of data subjects' requests, each with when it was received and
//! its Art. 12(3) deadline (one calendar month, the next working day when
//! that is a weekend; one extension of up to two further months, before the
//! first deadline), on time or late.

use chrono::{Datelike, Duration, Months, NaiveDate, Utc, Weekday};
use serde_json::Value;

use crate::*;

/// The Art. 12(3) rule, written out again here: `months` calendar months
/// on (clamped to the month's last day), then past a weekend.
fn deadline(received: NaiveDate, months: u32) -> NaiveDate {
    let d = received.checked_add_months(Months::new(months)).unwrap();
    match d.weekday() {
        Weekday::Sat => d + Duration::days(2),
        Weekday::Sun => d + Duration::days(1),
        _ => d,
    }
}

fn days_ago(days: i64) -> NaiveDate {
    (Utc::now() - Duration::days(days)).date_naive()
}

fn open(
    w: &World,
    kind: &str,
    subject: &str,
    request: &str,
    received: &str,
) -> std::process::Output {
    w.lethe(&[
        "requests",
        "open",
        "--kind",
        kind,
        "--subject",
        subject,
        "--request",
        request,
        "--by",
        "privacy desk",
        "--received",
        received,
    ])
}

fn register(w: &World) -> Vec<Value> {
    let o = w.lethe(&["requests", "list", "--all", "--format", "json"]);
    assert_exit(&o, 0);
    serde_json::from_str::<Vec<Value>>(&stdout(&o)).unwrap()
}

fn entry<'a>(register: &'a [Value], request: &str) -> &'a Value {
    register
        .iter()
        .find(|r| r["request"] == request)
        .unwrap_or_else(|| panic!("{request} is not in the register: {register:?}"))
}

async fn ledger_rows(w: &World) -> String {
    w.scalar("SELECT CAST(COUNT(*) AS TEXT) FROM ledger").await
}

async fn the_register_counts_deadlines_in_calendar_months_and_shows_late_answers(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    let recent = months_ago(1);
    let key = format!("calls/quality/{recent}/A-1.wav");
    w.put(&key, "audio");
    w.put(&key.replace(".wav", ".json"), r#"{"subject":"CUST-1"}"#);
    let other = format!("calls/quality/{recent}/B-1.wav");
    w.put(&other, "audio");
    w.put(&other.replace(".wav", ".json"), r#"{"subject":"CUST-10"}"#);

    // An erasure request received 40 days ago, answered only now: late.
    let received_1 = days_ago(40);
    let o = open(&w, "erasure", "CUST-1", "DSR-1", &received_1.to_string());
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!("answer by {}", deadline(received_1, 1))),
        "{}",
        stdout(&o)
    );
    // An access request received 10 days ago: open, extended below.
    let received_2 = days_ago(10);
    assert_exit(
        &open(&w, "access", "CUST-2", "DSR-2", &received_2.to_string()),
        0,
    );
    // 31 January: the deadline is 28 February, a Saturday in 2026, so the
    // Monday after; never answered, so late.
    assert_exit(&open(&w, "withdrawal", "CUST-3", "DSR-3", "2026-01-31"), 0);

    // Refusals record nothing: a request id reused for another subject or
    // kind, a date in the future, an empty --by.
    let before = ledger_rows(&w).await;
    for o in [
        open(&w, "erasure", "CUST-9", "DSR-1", &received_1.to_string()),
        open(&w, "access", "CUST-1", "DSR-1", &received_1.to_string()),
        open(&w, "access", "CUST-4", "DSR-4", &(days_ago(-2)).to_string()),
        open(&w, "access", "CUST-4", "DSR-4", "last tuesday"),
        w.lethe(&[
            "requests",
            "open",
            "--kind",
            "access",
            "--subject",
            "CUST-4",
            "--request",
            "DSR-4",
            "--by",
            " ",
        ]),
    ] {
        assert_exit(&o, 2);
    }
    assert_eq!(
        ledger_rows(&w).await,
        before,
        "a refusal recorded something"
    );

    // The same registration again is the one already there, its date kept.
    let o = open(&w, "erasure", "CUST-1", "DSR-1", &days_ago(1).to_string());
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("already registered"), "{}", stdout(&o));

    // `erase` answers DSR-1 with its receipt; it keeps the received date.
    assert_exit(
        &w.lethe(&["erase", "--subject", "CUST-1", "--request", "DSR-1"]),
        0,
    );
    assert!(!w.exists(&key), "CUST-1's recording is erased");
    assert!(w.exists(&other), "CUST-10 is another subject");
    // An erasure never registered is received when it is made: on time.
    assert_exit(
        &w.lethe(&["erase", "--subject", "CUST-5", "--request", "DSR-5"]),
        0,
    );
    // An erase with a request id registered for another kind is refused.
    let o = w.lethe(&["erase", "--subject", "CUST-2", "--request", "DSR-2"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("DSR-2"), "{}", stderr(&o));

    // One extension, before the first deadline; not a second, not a late one.
    let o = w.lethe(&[
        "requests",
        "extend",
        "--request",
        "DSR-2",
        "--by",
        "dpo",
        "--reason",
        "many recordings across stores",
    ]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(&format!("answer by {}", deadline(received_2, 3))),
        "{}",
        stdout(&o)
    );
    let before = ledger_rows(&w).await;
    for request in ["DSR-2", "DSR-3", "DSR-404"] {
        let o = w.lethe(&[
            "requests",
            "extend",
            "--request",
            request,
            "--by",
            "dpo",
            "--reason",
            "again",
        ]);
        assert_exit(&o, 2);
    }
    let o = w.lethe(&[
        "requests",
        "extend",
        "--request",
        "DSR-2",
        "--by",
        "dpo",
        "--reason",
        "x",
        "--months",
        "3",
    ]);
    assert_exit(&o, 2);
    assert_eq!(
        ledger_rows(&w).await,
        before,
        "a refused extension recorded something"
    );

    let reg = register(&w);
    assert_eq!(reg.len(), 4, "{reg:?}");
    let r1 = entry(&reg, "DSR-1");
    assert_eq!(r1["kind"], "erasure");
    assert_eq!(r1["standing"], "answered-late");
    assert_eq!(r1["deadline"], deadline(received_1, 1).to_string());
    assert!(
        r1["received"]
            .as_str()
            .unwrap()
            .starts_with(&received_1.to_string())
    );
    assert!(
        r1["answered"]["by"]
            .as_str()
            .unwrap()
            .starts_with("erasure receipt #"),
        "{r1}"
    );
    assert_eq!(
        r1["subject_sha256"],
        lethe::hold::subject_digest("CUST-1"),
        "the register names the subject by digest only"
    );
    let r2 = entry(&reg, "DSR-2");
    assert_eq!(r2["standing"], "open");
    assert_eq!(r2["months"], 3);
    assert_eq!(r2["deadline"], deadline(received_2, 3).to_string());
    assert_eq!(r2["extension"]["by"], "dpo");
    let r3 = entry(&reg, "DSR-3");
    assert_eq!(r3["kind"], "withdrawal");
    assert_eq!(r3["standing"], "late");
    assert_eq!(r3["deadline"], "2026-03-02");
    let r5 = entry(&reg, "DSR-5");
    assert_eq!(r5["standing"], "on-time");
    assert!(
        !reg.iter().any(|r| r.to_string().contains("CUST-")),
        "{reg:?}"
    );

    // The default list: what is still to be answered, late ones marked.
    let o = w.lethe(&["requests", "list"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("DSR-2  access  open"), "{text}");
    assert!(text.contains("DSR-3  withdrawal  LATE"), "{text}");
    assert!(!text.contains("DSR-1") && !text.contains("DSR-5"), "{text}");

    // Every plan reports the late request; a run counts it in its metrics.
    let o = w.lethe(&["plan"]);
    assert_exit(&o, 0);
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "withdrawal request DSR-3 received 2026-01-31 is LATE: its deadline was 2026-03-02"
        ),
        "{plan}"
    );
    assert!(!plan.contains("DSR-2") && !plan.contains("DSR-1"), "{plan}");
    std::fs::create_dir_all(w.path("textfile")).unwrap();
    let metrics = w.path("textfile/lethe.prom");
    assert_exit(
        &w.lethe(&["run", "--metrics-file", metrics.to_str().unwrap()]),
        0,
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.lines().any(|l| l == "lethe_requests_overdue 1"),
        "{text}"
    );

    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

for_each_db! {
    register_deadlines_and_late_answers => the_register_counts_deadlines_in_calendar_months_and_shows_late_answers,
}

/// The register's rows are in the hash chain: an edited received date,
/// extension or kind, or a removed registration, fails `ledger verify`.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_or_removed_request_row_fails_ledger_verification() {
    let w = World::new();
    assert_exit(&open(&w, "access", "CUST-3", "DSR-3", "2026-01-31"), 0);
    let received = days_ago(3).to_string();
    assert_exit(&open(&w, "access", "CUST-4", "DSR-4", &received), 0);
    assert_exit(
        &w.lethe(&[
            "requests",
            "extend",
            "--request",
            "DSR-4",
            "--by",
            "dpo",
            "--reason",
            "complex",
        ]),
        0,
    );
    // A run after them: its certificate anchors the rows before it.
    assert_exit(&w.lethe(&["run"]), 0);
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
    let db = w.path("lethe.db");
    let pristine = w.path("pristine.db");
    std::fs::copy(&db, &pristine).unwrap();
    let mutants = [
        "UPDATE ledger SET body = replace(body, '2026-01-31', '2026-03-31') WHERE kind = 'request-opened'",
        "UPDATE ledger SET body = replace(body, '\"access\"', '\"erasure\"') WHERE kind = 'request-opened'",
        "UPDATE ledger SET body = replace(body, '\"months\":2', '\"months\":1') WHERE kind = 'request-extended'",
        "UPDATE ledger SET body = replace(body, 'complex', 'simple') WHERE kind = 'request-extended'",
        "DELETE FROM ledger WHERE kind = 'request-extended'",
        "DELETE FROM ledger WHERE seq = (SELECT MIN(seq) FROM ledger WHERE kind = 'request-opened')",
    ];
    for sql in mutants {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(w.path(&format!("lethe.db{suffix}")));
        }
        std::fs::copy(&pristine, &db).unwrap();
        w.exec(sql).await;
        let out = w.lethe(&["ledger", "verify"]);
        assert_eq!(
            code(&out),
            4,
            "{sql} was not detected:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// Two desks registering one request id at once, for two subjects: the
/// write transaction serialises them, so exactly one is registered and the
/// other refused, whichever comes first.
async fn one_request_id_registered_from_two_processes_at_once_names_one_subject(db: Db) {
    let mut w = World::new();
    w.use_db(db).await;
    // The ledger exists before the race (its schema is made once).
    assert_exit(&open(&w, "access", "CUST-0", "DSR-0", "2026-11-02"), 0);
    for round in 0..5 {
        let id = format!("DSR-RACE-{round}");
        let children: Vec<_> = ["CUST-A", "CUST-B"]
            .iter()
            .map(|subject| {
                w.command(&[
                    "requests",
                    "open",
                    "--kind",
                    "erasure",
                    "--subject",
                    subject,
                    "--request",
                    &id,
                    "--by",
                    "desk",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        let codes: Vec<i32> = children
            .into_iter()
            .map(|c| code(&c.wait_with_output().unwrap()))
            .collect();
        let mut sorted = codes.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 2], "round {round}: {codes:?}");
        let rows = w
            .scalar(&format!(
                "SELECT CAST(COUNT(*) AS TEXT) FROM ledger WHERE kind = 'request-opened' AND body LIKE '%\"{id}\"%'"
            ))
            .await;
        assert_eq!(rows, "1", "round {round}");
    }
    assert_exit(&w.lethe(&["ledger", "verify"]), 0);
}

for_each_db! {
    register_race => one_request_id_registered_from_two_processes_at_once_names_one_subject,
}
