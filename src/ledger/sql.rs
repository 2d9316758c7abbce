//! Small helpers for the SQL the other ledger modules write: the column list
//! a stored row is read with, the batch sizes, and multi-row statements with
//! the placeholder style of the backend. Only placeholders are generated
//! here; every value is bound.

/// `SELECT` of every column of a ledger row (as [`LedgerRow`](super::LedgerRow)
/// reads them) followed by the rest of the query, as one `&'static str`
/// so that the statement is prepared once.
macro_rules! select_rows {
    ($rest:literal) => {
        concat!(
            "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger ",
            $rest
        )
    };
}
pub(super) use select_rows;

/// Ledger rows per INSERT (10 parameters each: well under SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters). Only statements of the full
/// size are kept prepared: each other size would be another large prepared
/// statement in the connection's cache, and memory would creep up with the
/// number of batches a run makes.
pub(super) const ROWS_PER_STATEMENT: usize = 200;
/// Sequence numbers per pending-index statement.
pub(super) const SEQS_PER_STATEMENT: usize = 1000;

/// Bound-parameter placeholders: `$N` for PostgreSQL; `?` for SQLite, where
/// numbered ones cost a linear search per parameter when binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    Numbered,
    Positional,
}

impl Placeholders {
    pub(super) fn of(conn: &sqlx::AnyConnection) -> Self {
        Self::named(conn.backend_name())
    }

    fn named(backend: &str) -> Self {
        if backend.eq_ignore_ascii_case("sqlite") {
            Placeholders::Positional
        } else {
            Placeholders::Numbered
        }
    }

    /// `count` placeholders numbered from `from`, separated by commas.
    pub(super) fn list(self, from: usize, count: usize) -> String {
        (from..from + count)
            .map(|n| match self {
                Placeholders::Numbered => format!("${n}"),
                Placeholders::Positional => "?".to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `prefix` followed by `rows` groups of `width` placeholders: `($1, $2),
/// ($3, $4)` or `(?, ?), (?, ?)`.
pub(super) fn values_statement(
    prefix: &str,
    rows: usize,
    width: usize,
    style: Placeholders,
) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * width * 6);
    sql.push_str(prefix);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&style.list(r * width + 1, width));
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_select_names_every_column() {
        assert_eq!(
            select_rows!("WHERE seq = $1"),
            "SELECT seq, kind, run_id, at, store, object_key, ref_seq, body, prev_hash, hash FROM ledger WHERE seq = $1"
        );
    }

    #[test]
    fn sqlite_gets_positional_placeholders_and_postgres_numbered_ones() {
        assert_eq!(Placeholders::named("SQLite"), Placeholders::Positional);
        assert_eq!(Placeholders::named("PostgreSQL"), Placeholders::Numbered);
        assert_eq!(Placeholders::Numbered.list(3, 3), "$3, $4, $5");
        assert_eq!(Placeholders::Positional.list(3, 3), "?, ?, ?");
    }

    #[test]
    fn a_values_statement_numbers_its_rows_on() {
        assert_eq!(
            values_statement("INSERT INTO t (a, b) VALUES ", 2, 2, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            values_statement("INSERT INTO t (a) VALUES ", 3, 1, Placeholders::Positional),
            "INSERT INTO t (a) VALUES (?), (?), (?)"
        );
    }
}
