//! What commands print: aligned tables for people, pretty JSON for scripts.
//!
//! List tables fit [`WIDTH`] (80) columns by default: they show fewer columns, and shorten
//! one free-text column (a description, a host name) with `…` when a line would be wider.
//! `--wide` shows every column, whole. Times are UTC and say so. Cells are sanitised
//! (control characters escaped) because they carry server-supplied text such as
//! descriptions, which must not drive the terminal.

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
    /// Which of the pushed cells are shown (all when empty).
    keep: Vec<bool>,
    /// The column shortened to fit [`WIDTH`], in the default view.
    flex: Option<usize>,
}

const GAP: &str = "  ";

/// The terminal width list tables fit by default.
pub const WIDTH: usize = 80;

/// How much of a list table to show (`--wide`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// The columns people need, fitted to [`WIDTH`].
    #[default]
    Default,
    /// Every column, nothing shortened.
    Wide,
}

/// `--wide`, for every list command.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct WideArg {
    /// Show every column (ids, all times), whole; by default tables fit 80 columns.
    #[arg(long)]
    pub wide: bool,
}

impl WideArg {
    /// The view asked for.
    pub fn view(self) -> View {
        if self.wide { View::Wide } else { View::Default }
    }
}

/// A column of a list table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// Always shown.
    Always,
    /// Always shown; shortened with `…` in the default view when a line would be wider
    /// than [`WIDTH`] (free text: a description, a host name). At most one per table.
    Flex,
    /// Shown only with `--wide`.
    Wide,
}

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
            ..Self::default()
        }
    }

    /// A list table of `columns` as `view` shows them: rows are pushed with a cell for
    /// every column, and the columns the view hides are dropped.
    pub fn list(columns: &[(&str, Col)], view: View) -> Self {
        let keep: Vec<bool> = columns
            .iter()
            .map(|(_, col)| view == View::Wide || *col != Col::Wide)
            .collect();
        let shown = columns.iter().zip(&keep).filter(|(_, k)| **k);
        let flex = (view == View::Default)
            .then(|| shown.clone().position(|((_, col), _)| *col == Col::Flex))
            .flatten();
        let mut table = Self::new(shown.map(|((h, _), _)| *h));
        table.keep = keep;
        table.flex = flex;
        table
    }

    /// Adds a row; missing cells print empty, extra cells get an empty header.
    pub fn push<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keep = &self.keep;
        self.rows.push(
            cells
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.is_empty() || keep.get(*i).copied().unwrap_or(true))
                .map(|(_, c)| sanitize(&c.into()))
                .collect(),
        );
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
        let rows = self.fitted(&mut widths);
        let mut out = String::new();
        let lines = (!self.headers.is_empty())
            .then_some(&self.headers)
            .into_iter()
            .chain(&rows);
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

impl Table {
    /// The rows with the flexible column shortened so that lines fit [`WIDTH`] (never
    /// below its header's width), and `widths` updated to match.
    fn fitted(&self, widths: &mut [usize]) -> Vec<Vec<String>> {
        let total = widths.iter().sum::<usize>() + GAP.len() * widths.len().saturating_sub(1);
        let Some(flex) = self.flex.filter(|_| total > WIDTH) else {
            return self.rows.clone();
        };
        let header = self.headers.get(flex).map_or(0, |h| h.chars().count());
        let room = widths[flex]
            .saturating_sub(total - WIDTH)
            .max(header)
            .max(1);
        widths[flex] = widths[flex].min(room);
        self.rows
            .iter()
            .map(|row| {
                let mut row = row.clone();
                if let Some(cell) = row.get_mut(flex)
                    && cell.chars().count() > room
                {
                    *cell = cell.chars().take(room - 1).chain(['…']).collect();
                }
                row
            })
            .collect()
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

/// A column header for times, which are UTC: `CREATED (UTC)`.
pub fn utc(header: &str) -> String {
    format!("{header} (UTC)")
}

/// An RFC 3339 timestamp from the server for a describe view: `YYYY-MM-DD HH:MM:SS UTC`.
pub fn server_time_utc(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => format!("{} UTC", timestamp(&t.with_timezone(&Utc))),
        Err(_) => text.to_owned(),
    }
}

/// An optional server time for a table cell (`none` when absent).
pub fn optional_time(value: Option<&str>, none: &str) -> String {
    value.map_or_else(|| none.to_owned(), server_timestamp)
}

/// An optional server time for a describe view, labelled UTC (`none` when absent).
pub fn optional_time_utc(value: Option<&str>, none: &str) -> String {
    value.map_or_else(|| none.to_owned(), server_time_utc)
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
    fn the_default_view_hides_wide_columns_and_shortens_the_flexible_one() {
        let columns = [
            ("name", Col::Always),
            ("id", Col::Wide),
            ("description", Col::Flex),
        ];
        let long = "d".repeat(200);
        let row = ["ci-bot".to_owned(), "0190f0a8".to_owned(), long.clone()];
        let mut narrow = Table::list(&columns, View::Default);
        narrow.push(row.clone());
        let text = narrow.render();
        assert!(!text.contains("0190f0a8") && !text.contains("ID"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        assert!(
            text.lines().nth(1).is_some_and(|l| l.ends_with('…')),
            "{text}"
        );
        let mut wide = Table::list(&columns, View::Wide);
        wide.push(row);
        let text = wide.render();
        assert!(text.contains("0190f0a8") && text.contains(&long), "{text}");
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
