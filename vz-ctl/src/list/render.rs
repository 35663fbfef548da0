//! Rendering vzlist rows: the table (one space between columns, trailing spaces trimmed)
//! and JSON (`-j`).

use super::fields::{Field, Value};
use super::row::Row;

/// Renders the header line.
pub fn header(fields: &[&Field]) -> String {
    let cells: Vec<String> =
        fields.iter().map(|f| pad(f.header, f.column.width, f.column.left)).collect();
    cells.join(" ").trim_end().to_owned()
}

/// Renders one row; `no_trim` is `-t`.
pub fn line(fields: &[&Field], row: &Row, no_trim: bool) -> String {
    let last = fields.len().saturating_sub(1);
    let cells: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let is_last = i == last;
            let mut text = match (f.get)(row) {
                Value::Str(s) => s.unwrap_or_else(|| "-".to_owned()),
                Value::Num(n) => n.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                Value::Bool(b) => b.map_or("-", |b| if b { "yes" } else { "no" }).to_owned(),
                Value::List(items) if items.is_empty() => "-".to_owned(),
                Value::List(items) if is_last => items.join(" "),
                Value::List(items) => items[0].clone(),
                Value::Object { shown, .. } => {
                    shown.map_or_else(|| "-".to_owned(), |v| v.to_string())
                }
                Value::Shown { text, .. } => text.unwrap_or_else(|| "-".to_owned()),
            };
            if f.column.trim && !is_last && !no_trim && text.chars().count() > f.column.width {
                text = text.chars().take(f.column.width).collect();
            }
            pad(&text, f.column.width, f.column.left)
        })
        .collect();
    cells.join(" ").trim_end().to_owned()
}

/// Renders rows as a JSON array of objects.
pub fn json(fields: &[&Field], rows: &[Row]) -> String {
    let array: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let object = fields
                .iter()
                .map(|f| {
                    let value = match (f.get)(row) {
                        Value::Str(s) => {
                            s.map_or(serde_json::Value::Null, serde_json::Value::String)
                        }
                        Value::Num(n) => n.map_or(serde_json::Value::Null, serde_json::Value::from),
                        Value::Bool(b) => {
                            b.map_or(serde_json::Value::Null, serde_json::Value::Bool)
                        }
                        Value::List(items) => serde_json::Value::from(items),
                        Value::Object { json, .. } | Value::Shown { json, .. } => json,
                    };
                    (f.name.to_owned(), value)
                })
                .collect::<serde_json::Map<_, _>>();
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::to_string_pretty(&array).unwrap_or_else(|_| "[]".to_owned())
}

fn pad(text: &str, width: usize, left: bool) -> String {
    if left { format!("{text:<width$}") } else { format!("{text:>width$}") }
}
