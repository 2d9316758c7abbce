//! `lethe demo`: a sample store, policy, key and config, then plan, run,
//! verify and ledger verify, exactly as the commands do them.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{Datelike, Months, NaiveDate};

use super::{Exit, Format, OrExit, Outcome, output_error, plan, run, verify};
use crate::certificate::{certificate_file_name, dsse};

/// The marker that lets `demo` replace a folder it made itself, and only such a folder.
const MARKER: &str = ".lethe-demo";

/// The sample policy shipped in `policies/`, used as it is.
pub const POLICY: &str = include_str!("../../policies/retention.yaml");

fn config(key_id: &str) -> String {
    format!(
        r#"# lethe demo configuration; paths are relative to this file.
policies = "policies"
database = "sqlite://lethe.db"
certificates = "certificates"

[signing]
key = "keys/lethe.key"
key_id = "{key_id}"

[safety]
max_deletions = 1000
max_fraction = 0.5

[[stores]]
name = "recordings"
url = "recordings"
"#
    )
}

/// `(purpose, months ago (negative: in the future), call id, sidecar, transcript)`.
const SAMPLES: &[(&str, i32, &str, Option<&str>, bool)] = &[
    ("quality", 8, "C-1001", None, true),
    ("quality", 2, "C-1002", None, true),
    (
        "training",
        14,
        "C-1003",
        Some(r#"{"subject": "CUST-0007", "agent": "a.nowak"}"#),
        false,
    ),
    ("training", 5, "C-1004", None, false),
    ("disputes", 14, "C-1005", None, true),
    ("disputes", 30, "C-1006", None, true),
    ("feedback", 4, "C-1007", None, false),
    ("feedback", 1, "C-1008", None, false),
    ("mifid-orders", 36, "C-1009", None, false),
    (
        "quality",
        9,
        "C-1010",
        Some(r#"{"purposes": ["disputes"], "note": "customer complained"}"#),
        true,
    ),
    ("quality", -3, "C-1011", None, false),
    ("marketing", 10, "C-1012", None, false),
    (
        "quality",
        7,
        "C-1013",
        Some("{ this sidecar is broken"),
        false,
    ),
];

fn months_from_today(today: NaiveDate, months: i32) -> Option<NaiveDate> {
    if months >= 0 {
        today.checked_sub_months(Months::new(months as u32))
    } else {
        today.checked_add_months(Months::new((-months) as u32))
    }
}

fn write(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn lay_out(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if dir.join(MARKER).exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace the earlier demo in {}", dir.display()))?;
        } else if !empty {
            bail!(
                "{} exists and was not made by `lethe demo`; choose another folder with --dir",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write(
        &dir.join(MARKER),
        b"made by lethe demo; `lethe demo` may replace this folder\n",
    )?;
    let today = crate::clock::SystemClock::read().date_naive();
    write(&dir.join("policies/retention.yaml"), POLICY.as_bytes())?;
    write(
        &dir.join(crate::config::DEFAULT_CONFIG),
        config(&format!("lethe-demo-{}", today.year())).as_bytes(),
    )?;
    let store = dir.join("recordings");
    for (purpose, months, id, sidecar, transcript) in SAMPLES {
        let date = months_from_today(today, *months).context("date out of range")?;
        let folder = store.join(format!("calls/{purpose}/{}", date.format("%Y/%m/%d")));
        write(
            &folder.join(format!("{id}.wav")),
            format!("RIFF fake audio of call {id}").as_bytes(),
        )?;
        if let Some(body) = sidecar {
            write(&folder.join(format!("{id}.json")), body.as_bytes())?;
        }
        if *transcript {
            write(
                &store.join(format!("transcripts/{id}.txt")),
                format!("transcript of call {id}\n").as_bytes(),
            )?;
        }
    }
    write(
        &store.join("notes/README.txt"),
        b"Not a recording: lethe keeps it and reports it.\n",
    )?;
    Ok(())
}

pub(crate) async fn demo(dir: &Path, out: &mut dyn Write) -> Outcome {
    if dir.exists() && !dir.is_dir() {
        return Err(anyhow::anyhow!(
            "--dir {}: not a folder; choose a folder (it is created if missing)",
            dir.display()
        ))
        .or_exit(Exit::Usage);
    }
    lay_out(dir).or_exit(Exit::Runtime)?;
    let config = dir.join(crate::config::DEFAULT_CONFIG);
    let args = crate::config::Args {
        config: Some(config.clone()),
    };
    let key = dsse::generate()
        .map_err(|e| anyhow::anyhow!("no randomness: {e}"))
        .or_exit(Exit::Runtime)?;
    let public = dsse::write_key_pair(&dir.join("keys/lethe.key"), &key).or_exit(Exit::Runtime)?;
    let say = |out: &mut dyn Write, text: &str| writeln!(out, "\n=== {text}").map_err(output_error);

    writeln!(
        out,
        "lethe demo in {}: a sample recordings folder, a policy, a signing key and a config",
        dir.display()
    )
    .map_err(output_error)?;
    say(out, &format!("lethe --config {} plan", config.display()))?;
    // The demo narrates on stdout; a progress line would only get in its way.
    super::progress::enable(false);
    let code = plan::plan(&args, None, Format::Text, None, out).await?;
    if code != Exit::Success {
        return Ok(code);
    }
    say(out, &format!("lethe --config {} run", config.display()))?;
    let start = run::Start {
        dry_run: false,
        telemetry: None,
        stop: Default::default(),
        progress: false,
    };
    let mode = crate::pass::Mode::Retention {
        approved: None,
        shard: None,
    };
    let code = run::run(&args, mode, start, out).await?;
    if code != Exit::Success {
        return Ok(code);
    }
    let cert = dir.join("certificates").join(certificate_file_name(1));
    say(
        out,
        &format!(
            "lethe verify {} --public-key {} --check-store",
            cert.display(),
            public.display()
        ),
    )?;
    let code = verify::verify(
        &cert,
        verify::Options {
            public_key: Some(&public),
            check_store: true,
            proof: None,
            allow_missing_previous: false,
        },
        &args,
        out,
    )
    .await?;
    if code != Exit::Success {
        return Ok(code);
    }
    say(
        out,
        &format!("lethe --config {} ledger verify", config.display()),
    )?;
    let code = verify::ledger_verify(&args, out).await?;
    writeln!(
        out,
        "\nNext: read {0}/policies/retention.yaml, run `lethe --config {0}/lethe.toml plan --as-of 2030-01-01` to look ahead,\n\
         and point a lethe.toml of your own at your recordings folder.",
        dir.display()
    )
    .map_err(output_error)?;
    Ok(code)
}
