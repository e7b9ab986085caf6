//! Output renderers shaped like the original CLI's (cliff) formatters, so that scripts and eyes
//! trained on `dcmanager` keep working: `table`, `json`, `yaml`, `value`, `shell` for one record,
//! and `table`, `json`, `yaml`, `value`, `csv` for lists. All of them are pure: data in, text out.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// Formats of a command that shows one object (cliff `ShowOne`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OneFormat {
    Table,
    Json,
    Yaml,
    Value,
    Shell,
}

/// Formats of a command that lists objects (cliff `Lister`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Yaml,
    Value,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("unknown column(s) {unknown}; known columns: {known}")]
    UnknownColumns { unknown: String, known: String },
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot render YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// One object as named fields, in display order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub fields: Vec<(String, Value)>,
}

/// Objects as rows under shared column names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Indices of the columns named by `-c`, in display order; all columns when none are asked for.
/// Unlike cliff, which silently drops unknown names, a misspelt column is an error: a script
/// that asks for a column it does not get would otherwise read the wrong one.
fn select<S: AsRef<str>>(columns: &[S], wanted: &[String]) -> Result<Vec<usize>, FormatError> {
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|w| !columns.iter().any(|c| c.as_ref() == w.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = columns.iter().map(AsRef::as_ref).collect();
        return Err(FormatError::UnknownColumns {
            unknown: unknown.join(", "),
            known: known.join(", "),
        });
    }
    Ok((0..columns.len())
        .filter(|&i| wanted.is_empty() || wanted.iter().any(|w| w == columns[i].as_ref()))
        .collect())
}

/// A value as the original shows it in text formats (Python's `str`): `None`, `True`, `False`.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Serialises as a map that keeps display order (serde_json's own map sorts its keys).
struct Ordered<'a> {
    entries: Vec<(&'a str, &'a Value)>,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Renders one object.
pub fn render_one(
    record: &Record,
    format: OneFormat,
    wanted: &[String],
) -> Result<String, FormatError> {
    let names: Vec<&str> = record.fields.iter().map(|(n, _)| n.as_str()).collect();
    let fields: Vec<(&str, &Value)> = select(&names, wanted)?
        .into_iter()
        .map(|i| (names[i], &record.fields[i].1))
        .collect();
    Ok(match format {
        OneFormat::Table => {
            let rows: Vec<Vec<String>> = fields
                .iter()
                .map(|(n, v)| vec![(*n).to_owned(), text(v)])
                .collect();
            table(&["Field".to_owned(), "Value".to_owned()], &rows)
        }
        OneFormat::Json => serde_json::to_string_pretty(&Ordered { entries: fields })? + "\n",
        OneFormat::Yaml => serde_norway::to_string(&Ordered { entries: fields })?,
        OneFormat::Value => fields.iter().map(|(_, v)| text(v) + "\n").collect(),
        OneFormat::Shell => fields
            .iter()
            .map(|(n, v)| format!("{}=\"{}\"\n", shell_name(n), text(v).replace('"', "\\\"")))
            .collect(),
    })
}

/// Renders a list of objects.
pub fn render_list(
    listing: &Listing,
    format: ListFormat,
    wanted: &[String],
) -> Result<String, FormatError> {
    let keep = select(&listing.columns, wanted)?;
    let columns: Vec<String> = keep.iter().map(|&i| listing.columns[i].clone()).collect();
    let rows: Vec<Vec<&Value>> = listing
        .rows
        .iter()
        .map(|row| {
            keep.iter()
                .map(|&i| row.get(i).unwrap_or(&Value::Null))
                .collect()
        })
        .collect();
    let objects = || -> Vec<Ordered<'_>> {
        rows.iter()
            .map(|row| Ordered {
                entries: columns
                    .iter()
                    .map(String::as_str)
                    .zip(row.iter().copied())
                    .collect(),
            })
            .collect()
    };
    Ok(match format {
        ListFormat::Table => {
            let mut cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(|v| text(v)).collect())
                .collect();
            if cells.is_empty() {
                // As the original: an empty table still shows its columns, with one row of `<none>`.
                cells.push(vec!["<none>".to_owned(); columns.len()]);
            }
            table(&columns, &cells)
        }
        ListFormat::Json => serde_json::to_string_pretty(&objects())? + "\n",
        ListFormat::Yaml => serde_norway::to_string(&objects())?,
        ListFormat::Value => rows
            .iter()
            .map(|r| r.iter().map(|v| text(v)).collect::<Vec<_>>().join(" ") + "\n")
            .collect(),
        ListFormat::Csv => {
            let mut out = columns
                .iter()
                .map(|c| csv_quote(c))
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            for row in &rows {
                out += &row
                    .iter()
                    .map(|v| csv_cell(v))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push('\n');
            }
            out
        }
    })
}

/// The shell formatter's variable name: `strategy type` → `strategy_type`, `kube-rootca_sync_status`
/// → `kube_rootca_sync_status`.
fn shell_name(name: &str) -> String {
    name.to_lowercase().replace([' ', '-'], "_")
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// cliff writes CSV with Python's `QUOTE_NONNUMERIC`: numbers (and booleans) bare, the rest quoted,
/// `None` as an empty quoted string.
fn csv_cell(value: &Value) -> String {
    match value {
        Value::Null => "\"\"".to_owned(),
        Value::Number(_) | Value::Bool(_) => text(value),
        other => csv_quote(&text(other)),
    }
}

/// How many terminal columns `s` takes: a CJK character or an emoji takes two, a combining mark
/// none, so columns are measured by what the eye sees rather than by characters.
pub fn display_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` followed by spaces up to `width` display columns (`format!("{:<w$}")` pads by characters,
/// which misaligns wide ones).
pub fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(display_width(s))))
}

/// A prettytable-style grid: `+---+` rules, `| cell |` rows, left-aligned, one space of padding.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: &[String]| -> String {
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let cell = cells.get(i).map_or("", String::as_str);
                format!("| {} ", pad(cell, *w))
            })
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone() + &line(header) + &rule;
    for row in rows {
        out += &line(row);
    }
    out + &rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strategy() -> Record {
        Record {
            fields: vec![
                ("strategy type".into(), json!("kube-rootca-update")),
                ("subcloud apply type".into(), json!("parallel")),
                ("max parallel subclouds".into(), json!(2)),
                ("stop on failure".into(), json!(false)),
                ("state".into(), json!("initial")),
                ("created_at".into(), json!("2026-11-28 10:00:00.123456")),
                ("updated_at".into(), Value::Null),
            ],
        }
    }

    fn steps() -> Listing {
        Listing {
            columns: [
                "cloud",
                "stage",
                "state",
                "details",
                "started_at",
                "finished_at",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    json!("subcloud1"),
                    json!("Apply"),
                    json!("update-started"),
                    json!(""),
                    json!("2026-11-28 10:00:01.000000"),
                    Value::Null,
                ],
                vec![
                    json!("subcloud2"),
                    json!("Create"),
                    json!("initial"),
                    json!("say \"hi\""),
                    Value::Null,
                    Value::Null,
                ],
            ],
        }
    }

    #[test]
    fn show_one_table_matches_the_original_layout() {
        let out = render_one(&strategy(), OneFormat::Table, &[]).unwrap();
        assert_eq!(
            out,
            "+------------------------+----------------------------+\n\
             | Field                  | Value                      |\n\
             +------------------------+----------------------------+\n\
             | strategy type          | kube-rootca-update         |\n\
             | subcloud apply type    | parallel                   |\n\
             | max parallel subclouds | 2                          |\n\
             | stop on failure        | False                      |\n\
             | state                  | initial                    |\n\
             | created_at             | 2026-11-28 10:00:00.123456 |\n\
             | updated_at             | None                       |\n\
             +------------------------+----------------------------+\n"
        );
    }

    #[test]
    fn show_one_shell_lower_cases_and_underscores_names() {
        let out = render_one(
            &strategy(),
            OneFormat::Shell,
            &["strategy type".into(), "updated_at".into()],
        )
        .unwrap();
        assert_eq!(
            out,
            "strategy_type=\"kube-rootca-update\"\nupdated_at=\"None\"\n"
        );
        let endpoint = Record {
            fields: vec![("kube-rootca_sync_status".into(), json!("in-sync"))],
        };
        assert_eq!(
            render_one(&endpoint, OneFormat::Shell, &[]).unwrap(),
            "kube_rootca_sync_status=\"in-sync\"\n"
        );
    }

    #[test]
    fn show_one_json_and_yaml_keep_column_order_and_types() {
        let wanted = [
            "state".to_owned(),
            "max parallel subclouds".to_owned(),
            "stop on failure".to_owned(),
        ];
        let json = render_one(&strategy(), OneFormat::Json, &wanted).unwrap();
        assert_eq!(
            json,
            "{\n  \"max parallel subclouds\": 2,\n  \"stop on failure\": false,\n  \"state\": \"initial\"\n}\n"
        );
        let yaml = render_one(&strategy(), OneFormat::Yaml, &wanted).unwrap();
        assert_eq!(
            yaml,
            "max parallel subclouds: 2\nstop on failure: false\nstate: initial\n"
        );
        let value = render_one(&strategy(), OneFormat::Value, &wanted).unwrap();
        assert_eq!(value, "2\nFalse\ninitial\n");
    }

    #[test]
    fn list_table_and_empty_list() {
        let out = render_list(
            &steps(),
            ListFormat::Table,
            &["cloud".into(), "state".into()],
        )
        .unwrap();
        assert_eq!(
            out,
            "+-----------+----------------+\n\
             | cloud     | state          |\n\
             +-----------+----------------+\n\
             | subcloud1 | update-started |\n\
             | subcloud2 | initial        |\n\
             +-----------+----------------+\n"
        );
        let empty = Listing {
            columns: vec!["cloud".into(), "stage".into()],
            rows: vec![],
        };
        assert_eq!(
            render_list(&empty, ListFormat::Table, &[]).unwrap(),
            "+--------+--------+\n| cloud  | stage  |\n+--------+--------+\n| <none> | <none> |\n+--------+--------+\n"
        );
        assert_eq!(render_list(&empty, ListFormat::Json, &[]).unwrap(), "[]\n");
    }

    #[test]
    fn list_json_yaml_value_csv() {
        let wanted = [
            "cloud".to_owned(),
            "details".to_owned(),
            "finished_at".to_owned(),
        ];
        let json = render_list(&steps(), ListFormat::Json, &wanted).unwrap();
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed[1],
            json!({"cloud": "subcloud2", "details": "say \"hi\"", "finished_at": null})
        );
        assert!(json.starts_with("[\n  {\n    \"cloud\": \"subcloud1\",\n    \"details\": \"\","));
        let yaml = render_list(
            &steps(),
            ListFormat::Yaml,
            &["cloud".into(), "stage".into()],
        )
        .unwrap();
        assert_eq!(
            yaml,
            "- cloud: subcloud1\n  stage: Apply\n- cloud: subcloud2\n  stage: Create\n"
        );
        let value = render_list(
            &steps(),
            ListFormat::Value,
            &["cloud".into(), "stage".into()],
        )
        .unwrap();
        assert_eq!(value, "subcloud1 Apply\nsubcloud2 Create\n");
        let csv = render_list(&steps(), ListFormat::Csv, &wanted).unwrap();
        assert_eq!(
            csv,
            "\"cloud\",\"details\",\"finished_at\"\n\"subcloud1\",\"\",\"\"\n\"subcloud2\",\"say \"\"hi\"\"\",\"\"\n"
        );
    }

    #[test]
    fn wide_characters_line_up_by_display_width() {
        let header = ["name".to_owned(), "description".to_owned()];
        let rows = [
            vec!["東京".to_owned(), "渋谷の拠点 🚀".to_owned()],
            vec!["ottawa".to_owned(), "Ottawa Site".to_owned()],
            vec!["e\u{301}".to_owned(), "e and a combining acute".to_owned()],
        ];
        let out = table(&header, &rows);
        assert_eq!(
            out,
            "+--------+-------------------------+\n\
             | name   | description             |\n\
             +--------+-------------------------+\n\
             | 東京   | 渋谷の拠点 🚀           |\n\
             | ottawa | Ottawa Site             |\n\
             | e\u{301}      | e and a combining acute |\n\
             +--------+-------------------------+\n"
        );
        // Every line ends at the same terminal column.
        let widths: Vec<usize> = out.lines().map(display_width).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
        assert_eq!(pad("東京", 6), "東京  ");
        assert_eq!(pad("toolong", 3), "toolong");
    }

    #[test]
    fn unknown_column_is_an_error_naming_the_known_ones() {
        let err = render_list(&steps(), ListFormat::Table, &["clod".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown column(s) clod; known columns: cloud, stage, state, details, started_at, finished_at"
        );
    }
}
