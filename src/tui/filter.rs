//! One filter language for the Runs, Events and DLQ panes: words, `field:value` and `#id`.
//! Each pane says which fields it takes and, where the set is known, their valid values; a
//! filter naming anything else is refused with the choices, choices first (the footer may cut
//! the end of a long sentence), and never applied.

/// A field a pane's filter takes, with its valid values when they are a known set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// `None`: any value (a stage name, say, that the dashboard cannot list).
    pub values: Option<Vec<String>>,
}

impl Field {
    pub fn any(name: &'static str) -> Field {
        Field { name, values: None }
    }

    pub fn one_of(name: &'static str, values: impl IntoIterator<Item = String>) -> Field {
        Field {
            name,
            values: Some(values.into_iter().collect()),
        }
    }
}

/// A parsed filter: every term must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Free words, lowercased: each must appear somewhere in the row's text.
    pub words: Vec<String>,
    /// `(field, value)` pairs, in the order typed.
    pub fields: Vec<(&'static str, String)>,
    /// `#42`: an id (a run's, or an entry's where the pane says so).
    pub id: Option<i64>,
}

impl Filter {
    /// The value given for `field`, if any.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every word appears in `text` (compared lowercased).
    pub fn words_in(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.words.iter().all(|w| text.contains(w.as_str()))
    }
}

/// `a, b or c`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// What the pane's filter takes, for error messages: `status:, pipeline:, #ID or words`.
pub fn takes(fields: &[Field]) -> String {
    let mut parts: Vec<String> = fields.iter().map(|f| format!("{}:", f.name)).collect();
    parts.push("#ID".into());
    parts.push("words".into());
    or_list(&parts)
}

/// `; did you mean \`NAME{tail}\`?` for the name among `names` that `given` likely meant.
fn did_you_mean(given: &str, names: &[&str], tail: &str) -> String {
    crate::diag::suggest(given, names)
        .map(|n| format!("; did you mean `{n}{tail}`?"))
        .unwrap_or_default()
}

/// Parses `text` for a pane that takes `fields`.
pub fn parse(text: &str, fields: &[Field]) -> Result<Filter, String> {
    let mut out = Filter::default();
    for word in text.split_whitespace() {
        if let Some(id) = word.strip_prefix('#') {
            let n =
                id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("#ID takes a positive number, like #42 (not `{word}`)")
                })?;
            out.id = Some(n);
        } else if let Some((name, value)) = word.split_once(':') {
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                let hint = did_you_mean(name, &names, ":");
                return Err(format!(
                    "fields here: {} (not `{name}:`{hint})",
                    takes(fields)
                ));
            };
            if let Some(values) = &field.values {
                if !values.iter().any(|v| v == value) {
                    let given = if value.is_empty() {
                        "nothing yet".to_string()
                    } else {
                        let names: Vec<&str> = values.iter().map(String::as_str).collect();
                        let hint = did_you_mean(value, &names, "");
                        format!("not `{value}`{hint}")
                    };
                    return Err(format!("{name}: {} ({given})", or_list(values)));
                }
            } else if value.is_empty() {
                return Err(format!("{name}: needs a value, like {name}:NAME"));
            }
            out.fields.push((field.name, value.to_string()));
        } else {
            out.words.push(word.to_lowercase());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            Field::one_of("status", ["failed".to_string(), "succeeded".to_string()]),
            Field::any("stage"),
        ]
    }

    #[test]
    fn words_fields_and_ids_parse() {
        let f = parse("ETL status:failed stage:load #42", &fields()).unwrap();
        assert_eq!(f.words, ["etl"]);
        assert_eq!(f.field("status"), Some("failed"));
        assert_eq!(f.field("stage"), Some("load"));
        assert_eq!(f.id, Some(42));
        assert!(f.words_in("nightly-ETL"));
        assert_eq!(parse("", &fields()).unwrap(), Filter::default());
    }

    #[test]
    fn unknown_fields_and_values_are_refused_with_the_choices_first() {
        for (typed, said) in [
            (
                "foo:bar",
                "fields here: status:, stage:, #ID or words (not `foo:`)",
            ),
            ("status:bogus", "status: failed or succeeded (not `bogus`)"),
            (
                "status:faild",
                "status: failed or succeeded (not `faild`; did you mean `failed`?)",
            ),
            (
                "stauts:failed",
                "fields here: status:, stage:, #ID or words (not `stauts:`; did you mean `status:`?)",
            ),
            ("status:", "status: failed or succeeded (nothing yet)"),
            ("stage:", "stage: needs a value, like stage:NAME"),
            ("#x1", "#ID takes a positive number, like #42 (not `#x1`)"),
        ] {
            assert_eq!(parse(typed, &fields()).unwrap_err(), said, "{typed}");
        }
    }
}
