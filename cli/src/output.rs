//! What commands print: aligned tables for people, pretty JSON for scripts.
//!
//! Tables never truncate. Cells are sanitised (control characters escaped) because they
//! carry server-supplied text such as descriptions, which must not drive the terminal.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How results are printed (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The server's JSON, pretty-printed.
    Json,
}

/// A table: an upper-case header row and rows of cells, columns separated by two spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

const GAP: &str = "  ";

impl Table {
    /// A table with these column headers (printed in upper case).
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            headers: headers
                .into_iter()
                .map(|h| h.as_ref().to_uppercase())
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells get an empty header.
    pub fn push<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| sanitize(&c.into())).collect());
    }

    /// The table as text, one line per row, each ending in a newline. Without headers
    /// (see [`describe`]) only the rows are printed.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let lines = (!self.headers.is_empty())
            .then_some(&self.headers)
            .into_iter()
            .chain(&self.rows);
        for line in lines {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    text.push_str(GAP);
                }
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            // No trailing blanks: the last column (often empty) is not padded.
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A two-column KEY  VALUE table describing one object (keys in upper case, no header).
pub fn describe<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, String)>) -> String {
    let mut table = Table::default();
    for (key, value) in pairs {
        table.push([key.as_ref().to_uppercase(), value]);
    }
    table.render()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, for tables.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An RFC 3339 timestamp from the server, shortened for tables; anything else unchanged.
pub fn server_timestamp(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| timestamp(&t.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.to_owned())
}

/// A boolean as `true`/`false`.
pub fn boolean(b: bool) -> String {
    b.to_string()
}

/// Extra fields a newer server sends that this CLI does not know yet, as describe rows.
pub fn extra_fields(extra: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    extra
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.replace('_', " "), value)
        })
        .collect()
}

/// Escapes control characters (newlines, escape sequences) so that a cell stays on one
/// line and cannot drive the terminal.
pub fn sanitize(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_owned();
    }
    cell.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Writes `text` to stdout. A closed pipe (`gatehouse user list | head -1`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// Pretty JSON followed by a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// Prints `value` as pretty JSON.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    emit(&json(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_with_two_spaces_and_headers_upper_case() {
        let mut table = Table::new(["name", "role", "active"]);
        table.push(["alice", "admin", "true"]);
        table.push(["a-much-longer-name", "member", "false"]);
        assert_eq!(
            table.render(),
            "NAME                ROLE    ACTIVE\n\
             alice               admin   true\n\
             a-much-longer-name  member  false\n"
        );
    }

    #[test]
    fn long_values_are_not_truncated_and_lines_have_no_trailing_blanks() {
        let long = "x".repeat(300);
        let mut table = Table::new(["name", "description"]);
        table.push(["a".to_owned(), long.clone()]);
        table.push(["b".to_owned(), String::new()]);
        let text = table.render();
        assert!(text.contains(&long));
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text:?}");
        assert_eq!(text.lines().nth(2), Some("b"));
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut table = Table::new(["a", "b"]);
        table.push(["été", "1"]);
        table.push(["x", "2"]);
        assert_eq!(table.render(), "A    B\nété  1\nx    2\n");
    }

    #[test]
    fn rows_with_missing_cells_still_align() {
        let mut table = Table::new(["a", "b", "c"]);
        table.push(["1"]);
        table.push(["22", "x", "y"]);
        assert_eq!(table.render(), "A   B  C\n1\n22  x  y\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut table = Table::new(["d"]);
        table.push(["line1\nline2\u{1b}[31m"]);
        assert_eq!(table.render(), "D\nline1\\nline2\\u{1b}[31m\n");
    }

    #[test]
    fn describe_is_a_two_column_key_value_table() {
        let text = describe([
            ("name", "ci-bot".to_owned()),
            ("authenticated by", "password".to_owned()),
        ]);
        assert_eq!(
            text,
            "NAME              ci-bot\nAUTHENTICATED BY  password\n"
        );
    }

    #[test]
    fn an_empty_table_prints_only_its_header() {
        let table = Table::new(["name"]);
        assert_eq!(table.render(), "NAME\n");
    }

    #[test]
    fn timestamps_are_shortened_to_seconds_in_utc() {
        let t = DateTime::parse_from_rfc3339("2025-03-04T05:06:07.891234+02:00")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(timestamp(&t), "2025-03-04 03:06:07");
        assert_eq!(
            server_timestamp("2025-03-04T05:06:07.891234+02:00"),
            "2025-03-04 03:06:07"
        );
        assert_eq!(server_timestamp("yesterday"), "yesterday");
    }

    #[test]
    fn unknown_fields_become_rows() {
        let extra = serde_json::json!({"last_used": "yesterday", "key_count": 3});
        let rows = extra_fields(extra.as_object().expect("object"));
        assert_eq!(
            rows,
            vec![
                ("key count".to_owned(), "3".to_owned()),
                ("last used".to_owned(), "yesterday".to_owned())
            ]
        );
    }
}
