//! The register of data subjects' requests, read from the chain: a
//! `request-opened` row registers a request with when it was received, a
//! `request-extended` row its one extension, and the answer is the row that
//! gave it (an erasure receipt names its request). Erasure requests made
//! before the register existed are in it too, received when they were made.
//! There is no index table to keep in step: the register is the rows of its
//! kinds, which the kind index finds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::chain::LedgerRow;
use super::event::{Event, RequestExtended, RequestOpened};
use super::sql::select_rows;
use super::{Ledger, LedgerError, Result};
use crate::request::{ANSWER_MONTHS, Answer, Extension, Request, RequestKind};

/// Why a request cannot be registered or extended as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request id is registered for another kind or another subject.
    Reused(String),
    /// The request is not registered.
    Unknown(String),
    /// The extension is not allowed (already extended, answered, late).
    Extension(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Reused(why) | Refusal::Unknown(why) | Refusal::Extension(why) => {
                f.write_str(why)
            }
        }
    }
}

impl Ledger {
    /// Registers a request, or finds it registered already: the same id for
    /// the same kind and subject is the request as first registered (its
    /// received date kept; `false` beside it), for another kind or subject
    /// refused.
    pub async fn open_request(
        &self,
        run_id: &str,
        opened: &RequestOpened,
    ) -> Result<std::result::Result<(Request, bool), Refusal>> {
        let mut tx = self.begin().await?;
        let register = register_in(&mut tx).await?;
        if let Some(known) = register.iter().find(|r| r.request == opened.request) {
            if known.kind != opened.kind || known.subject_sha256 != opened.subject_sha256 {
                return Ok(Err(Refusal::Reused(format!(
                    "request {} was already used for another {}: a request id names one request for good",
                    opened.request,
                    if known.kind != opened.kind {
                        format!("kind of request ({})", known.kind)
                    } else {
                        "subject".to_string()
                    }
                ))));
            }
            return Ok(Ok((known.clone(), false)));
        }
        self.append_event_in(&mut tx, run_id, &Event::RequestOpened(opened.clone()))
            .await?;
        tx.commit().await?;
        Ok(Ok((opened_request(opened), true)))
    }

    /// Records a request's one extension, if `allowed` (given the request
    /// as the register has it, inside the write transaction) says nothing
    /// against it.
    pub async fn extend_request(
        &self,
        run_id: &str,
        extension: &RequestExtended,
        allowed: impl Fn(&Request) -> Option<String>,
    ) -> Result<std::result::Result<Request, Refusal>> {
        let mut tx = self.begin().await?;
        let register = register_in(&mut tx).await?;
        let Some(known) = register
            .into_iter()
            .find(|r| r.request == extension.request)
        else {
            return Ok(Err(Refusal::Unknown(format!(
                "request {} is not registered (lethe requests open registers it)",
                extension.request
            ))));
        };
        if let Some(why) = allowed(&known) {
            return Ok(Err(Refusal::Extension(why)));
        }
        self.append_event_in(&mut tx, run_id, &Event::RequestExtended(extension.clone()))
            .await?;
        tx.commit().await?;
        let mut extended = known;
        apply_extension(&mut extended, extension);
        Ok(Ok(extended))
    }

    /// Every request, in the order they were registered.
    pub async fn requests(&self) -> Result<Vec<Request>> {
        let mut conn = self.pool.acquire().await?;
        register_in(&mut conn).await
    }
}

fn opened_request(opened: &RequestOpened) -> Request {
    Request {
        request: opened.request.clone(),
        kind: opened.kind,
        subject_sha256: opened.subject_sha256.clone(),
        received: opened.received,
        months: ANSWER_MONTHS,
        extension: None,
        answered: None,
    }
}

fn apply_extension(request: &mut Request, e: &RequestExtended) {
    if request.extension.is_none() {
        request.months = ANSWER_MONTHS + e.months;
        request.extension = Some(Extension {
            months: e.months,
            by: e.by.clone(),
            reason: e.reason.clone(),
            at: e.at,
        });
    }
}

fn answer(request: &mut Request, at: DateTime<Utc>, by: String) {
    if request.answered.is_none() {
        request.answered = Some(Answer { at, by });
    }
}

/// The register, read from the rows of its kinds inside `conn`.
async fn register_in(conn: &mut sqlx::AnyConnection) -> Result<Vec<Request>> {
    let rows = sqlx::query(select_rows!(
        "WHERE kind IN ('request-opened', 'request-extended', 'erasure-requested', 'certificate') ORDER BY seq"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut register: Vec<Request> = Vec::new();
    // Request id -> its place in `register`.
    let mut places: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let row = LedgerRow::from_any(row)?;
        let (opened, extended, answered) = match row.event()? {
            Event::RequestOpened(o) => (Some(o), None, None),
            // An erasure made before the register existed: received then.
            Event::ErasureRequested(e) => (
                Some(RequestOpened {
                    request: e.request,
                    kind: RequestKind::Erasure,
                    subject_sha256: e.subject_sha256,
                    received: e.at,
                    by: None,
                }),
                None,
                None,
            ),
            Event::RequestExtended(e) => (None, Some(e), None),
            Event::Certificate(c) => {
                let request = c
                    .payload
                    .get("erasure")
                    .and_then(|e| e.get("request"))
                    .and_then(|r| r.as_str())
                    .map(str::to_string);
                match request {
                    Some(request) => (
                        None,
                        None,
                        Some((request, format!("erasure receipt #{}", c.sequence))),
                    ),
                    None => continue,
                }
            }
            _ => continue,
        };
        if let Some(o) = opened
            && !places.contains_key(&o.request)
        {
            places.insert(o.request.clone(), register.len());
            register.push(opened_request(&o));
        }
        if let Some(e) = extended
            && let Some(&i) = places.get(&e.request)
        {
            apply_extension(&mut register[i], &e);
        }
        if let Some((request, by)) = answered
            && let Some(&i) = places.get(&request)
            && register[i].kind == RequestKind::Erasure
        {
            answer(&mut register[i], parse_at(&row)?, by);
        }
    }
    Ok(register)
}

fn parse_at(row: &LedgerRow) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&row.at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| LedgerError::Corrupt {
            seq: row.seq,
            message: format!("its time {:?} is no RFC 3339 time: {e}", row.at),
        })
}

#[cfg(test)]
mod tests {
    use super::super::scratch;
    use super::*;

    fn opened(request: &str, kind: RequestKind, subject: &str) -> RequestOpened {
        RequestOpened {
            request: request.into(),
            kind,
            subject_sha256: subject.into(),
            received: "2026-03-02T09:00:00Z".parse().unwrap(),
            by: Some("desk".into()),
        }
    }

    #[tokio::test]
    async fn a_request_id_names_one_request_and_keeps_its_received_date() {
        let (_dir, ledger) = scratch().await;
        let (first, new) = ledger
            .open_request("r", &opened("DSR-1", RequestKind::Access, "aa"))
            .await
            .unwrap()
            .unwrap();
        assert!(new);
        let mut later = opened("DSR-1", RequestKind::Access, "aa");
        later.received = "2026-04-20T09:00:00Z".parse().unwrap();
        let (again, new) = ledger.open_request("r", &later).await.unwrap().unwrap();
        assert!(!new);
        assert_eq!(again.received, first.received);
        for other in [
            opened("DSR-1", RequestKind::Erasure, "aa"),
            opened("DSR-1", RequestKind::Access, "bb"),
        ] {
            assert!(matches!(
                ledger.open_request("r", &other).await.unwrap(),
                Err(Refusal::Reused(_))
            ));
        }
        assert_eq!(ledger.requests().await.unwrap().len(), 1);
        assert!(ledger.verify().await.unwrap().problems.is_empty());
    }

    #[tokio::test]
    async fn an_extension_is_recorded_once_and_only_for_a_registered_request() {
        let (_dir, ledger) = scratch().await;
        let ext = RequestExtended {
            request: "DSR-1".into(),
            months: 2,
            by: "dpo".into(),
            reason: "many recordings".into(),
            at: "2026-03-10T09:00:00Z".parse().unwrap(),
        };
        assert!(matches!(
            ledger.extend_request("r", &ext, |_| None).await.unwrap(),
            Err(Refusal::Unknown(_))
        ));
        ledger
            .open_request("r", &opened("DSR-1", RequestKind::Access, "aa"))
            .await
            .unwrap()
            .unwrap();
        let now = ext.at;
        let extended = ledger
            .extend_request("r", &ext, |r| r.refuses_extension(2, now))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(extended.deadline().to_string(), "2026-06-02");
        assert!(matches!(
            ledger
                .extend_request("r", &ext, |r| r.refuses_extension(2, now))
                .await
                .unwrap(),
            Err(Refusal::Extension(_))
        ));
        let register = ledger.requests().await.unwrap();
        assert_eq!(register[0].months, 3);
        assert_eq!(register[0].extension.as_ref().unwrap().by, "dpo");
    }
}
