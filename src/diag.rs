//! Problems in TOML files reported as `FILE:LINE:COL: sentence`, and a checking walker over the
//! spanned tree from `toml`, so every problem in a file is found in one pass instead of the first.

use std::fmt;
use std::ops::Range;

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem at one place in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file (it could not be read, say).
    pub line: usize,
    /// 1-based, counted in characters.
    pub col: usize,
    pub message: String,
    /// The offending line, to show under the message with a caret (for people).
    pub excerpt: Option<Excerpt>,
}

/// The line a problem is on, and the byte range of the problem in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    pub text: String,
    pub span: Range<usize>,
}

/// The longest line shown under a problem; longer ones are cut around the span.
const MAX_EXCERPT: usize = 200;

impl Diagnostic {
    /// A problem with the file as a whole rather than a place in it.
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            col: 0,
            message: message.into(),
            excerpt: None,
        }
    }

    /// `FILE:LINE:COL: sentence` (the first line, for scripts and editors), then the
    /// offending line with a caret under the problem, as compilers show it.
    pub fn render(&self) -> String {
        let head = self.to_string();
        let Some(x) = &self.excerpt else { return head };
        let report = [
            annotate_snippets::Group::with_level(annotate_snippets::Level::ERROR).element(
                annotate_snippets::Snippet::source(x.text.as_str())
                    .line_start(self.line)
                    .annotation(annotate_snippets::AnnotationKind::Primary.span(x.span.clone())),
            ),
        ];
        let snippet = annotate_snippets::Renderer::plain().render(&report);
        format!("{head}\n{}", snippet.trim_end())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// Every problem rendered for people ([`Diagnostic::render`]), one after another.
pub fn render_all<'a>(problems: impl IntoIterator<Item = &'a Diagnostic>) -> String {
    problems
        .into_iter()
        .map(Diagnostic::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a file with an index of line starts, to turn byte offsets into line and column.
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and character column of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }

    pub fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span.start);
        Diagnostic {
            file: self.name.clone(),
            line,
            col,
            message: message.into(),
            excerpt: self.excerpt(line, span),
        }
    }

    /// Line `line` (1-based) and the part of `span` on it: at least one character, so an
    /// empty span still gets a caret; a long line is cut to the part around the span.
    fn excerpt(&self, line: usize, span: &Range<usize>) -> Option<Excerpt> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        let text = self.text.get(start..end)?.trim_end_matches('\r');
        let from = span.start.clamp(start, start + text.len()) - start;
        let mut to = span.end.clamp(start, start + text.len()) - start;
        if to <= from {
            to = text[from..]
                .chars()
                .next()
                .map_or(from, |c| from + c.len_utf8());
        }
        if text.len() <= MAX_EXCERPT {
            return Some(Excerpt {
                text: text.to_string(),
                span: from..to,
            });
        }
        // Keep a window around the span, on character boundaries.
        let mut lo = from.saturating_sub(MAX_EXCERPT / 2);
        while !text.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = (lo + MAX_EXCERPT).min(text.len());
        while !text.is_char_boundary(hi) {
            hi -= 1;
        }
        Some(Excerpt {
            text: text[lo..hi].to_string(),
            span: (from - lo).min(hi - lo)..(to.min(hi) - lo).max((from - lo).min(hi - lo)),
        })
    }
}

/// Walks a parsed document, collecting problems instead of stopping at the first.
pub struct Checker<'s> {
    src: &'s SourceFile,
    problems: Vec<Diagnostic>,
}

/// A value found in a table, with the span to point at when it is wrong.
pub type Found<'t, T> = Option<(T, Range<usize>)>;

impl<'s> Checker<'s> {
    pub fn new(src: &'s SourceFile) -> Self {
        Checker {
            src,
            problems: Vec::new(),
        }
    }

    pub fn source(&self) -> &SourceFile {
        self.src
    }

    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.problems.push(self.src.at(span, message));
    }

    /// [`Checker::error`] without the offending line under it (a line holding a secret, such
    /// as a password in a URL): the file, line and column still say where.
    pub fn error_unquoted(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let mut d = self.src.at(span, message);
        d.excerpt = None;
        self.problems.push(d);
    }

    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// How many problems so far: compare before and after checking a part of a file.
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    pub fn into_problems(self) -> Vec<Diagnostic> {
        let mut problems = self.problems;
        problems.sort_by_key(|d| (d.line, d.col));
        problems.dedup();
        problems
    }

    /// Parses `text` as TOML, reporting every syntax error the parser can recover from.
    pub fn parse(src: &'s SourceFile) -> Result<Spanned<DeTable<'s>>, Vec<Diagnostic>> {
        let (doc, errors) = DeTable::parse_recoverable(src.text());
        if errors.is_empty() {
            return Ok(doc);
        }
        let mut problems: Vec<Diagnostic> = errors
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                src.at(
                    &span,
                    format!("TOML syntax error: {}", e.message().trim_end_matches('\n')),
                )
            })
            .collect();
        problems.sort_by_key(|d| (d.line, d.col));
        problems.dedup_by_key(|d| d.line);
        Err(problems)
    }

    /// Reports every key of `table` that is not in `known`, with a suggestion and the valid keys.
    pub fn known_keys(&mut self, table: &DeTable<'_>, known: &[&str], context: &str) {
        self.known_keys_ignoring(table, known, &[], context);
    }

    /// Like [`Checker::known_keys`], leaving alone keys in `ignore` (reported elsewhere).
    pub fn known_keys_ignoring(
        &mut self,
        table: &DeTable<'_>,
        known: &[&str],
        ignore: &[&str],
        context: &str,
    ) {
        for (key, _) in table {
            let name = key.get_ref().as_ref();
            if ignore.contains(&name) {
                continue;
            }
            if !known.contains(&name) {
                let hint = suggest(name, known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    &key.span(),
                    format!(
                        "unknown key `{name}` in {context}{hint}; valid keys: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// Reports a missing required key at the table's own location.
    pub fn missing(&mut self, table_span: &Range<usize>, key: &str, context: &str) {
        self.error(
            table_span,
            format!("{context} is missing the required key `{key}`"),
        );
    }

    fn wrong_type(&mut self, key: &str, context: &str, want: &str, got: &Spanned<DeValue<'_>>) {
        self.error(
            &got.span(),
            format!(
                "`{key}` in {context} must be {want}, found {}",
                got.get_ref().type_str()
            ),
        );
    }

    pub fn str<'t>(
        &mut self,
        table: &'t DeTable<'_>,
        key: &str,
        context: &str,
    ) -> Found<'t, &'t str> {
        let v = get(table, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), v.span())),
            _ => {
                self.wrong_type(key, context, "a string", v);
                None
            }
        }
    }

    pub fn bool(&mut self, table: &DeTable<'_>, key: &str, context: &str) -> Found<'static, bool> {
        let v = get(table, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            _ => {
                self.wrong_type(key, context, "true or false", v);
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn int(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
        min: i64,
        max: i64,
    ) -> Found<'static, i64> {
        let v = get(table, key)?;
        let range = if max == i64::MAX {
            format!("at least {min}")
        } else {
            format!("from {min} to {max}")
        };
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (min..=max).contains(&n) => Some((n, v.span())),
                _ => {
                    self.error(
                        &v.span(),
                        format!("`{key}` in {context} must be an integer {range}, found {i}"),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(key, context, &format!("an integer {range}"), v);
                None
            }
        }
    }

    /// A number (integer or float) in `min..=max`.
    pub fn number(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
        min: f64,
        max: f64,
    ) -> Found<'static, f64> {
        let v = get(table, key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => {
                self.wrong_type(key, context, "a number", v);
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Some((n, v.span())),
            found => {
                let range = if max.is_infinite() {
                    format!("at least {min}")
                } else {
                    format!("from {min} to {max}")
                };
                let found = found.map(|n| format!(", found {n}")).unwrap_or_default();
                self.error(
                    &v.span(),
                    format!("`{key}` in {context} must be a number {range}{found}"),
                );
                None
            }
        }
    }

    /// A duration written like `30s`, `5m` or `1h30m`, at least `min`.
    pub fn duration(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
        min: std::time::Duration,
    ) -> Found<'static, std::time::Duration> {
        let (text, span) = self.str(table, key, context)?;
        match crate::model::duration::parse(text) {
            Ok(d) if d >= min => Some((d, span)),
            Ok(_) => {
                self.error(
                    &span,
                    format!(
                        "`{key}` in {context} must be at least {}, found {text}",
                        crate::model::duration::to_spec(min)
                    ),
                );
                None
            }
            Err(m) => {
                self.error(&span, format!("`{key}` in {context}: {m}"));
                None
            }
        }
    }

    pub fn table<'t, 'i>(
        &mut self,
        table: &'t DeTable<'i>,
        key: &str,
        context: &str,
    ) -> Found<'t, &'t DeTable<'i>> {
        let v = get(table, key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            _ => {
                self.wrong_type(key, context, "a table", v);
                None
            }
        }
    }

    /// An array of strings, each with its own span.
    pub fn str_list(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
    ) -> Found<'static, Vec<(String, Range<usize>)>> {
        let v = get(table, key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(key, context, "an array of strings", v);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in &**items {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                other => {
                    ok = false;
                    self.error(
                        &item.span(),
                        format!(
                            "`{key}` in {context} must hold only strings, found {}",
                            other.type_str()
                        ),
                    );
                }
            }
        }
        ok.then_some((out, v.span()))
    }

    /// A table whose values are all strings (environment variables, HTTP headers).
    pub fn str_map(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
    ) -> Found<'static, Vec<(String, String)>> {
        let (t, span) = self.table(table, key, context)?;
        let mut out = Vec::with_capacity(t.len());
        let mut ok = true;
        for (k, v) in t {
            match v.get_ref() {
                DeValue::String(s) => out.push((k.get_ref().to_string(), s.to_string())),
                other => {
                    ok = false;
                    self.error(
                        &v.span(),
                        format!(
                            "`{key}.{}` in {context} must be a string, found {}",
                            k.get_ref(),
                            other.type_str()
                        ),
                    );
                }
            }
        }
        ok.then_some((out, span))
    }
}

/// Checks TOML `text` (reported as `name`) with `check`: syntax errors first, then every
/// problem `check` finds; the value only when there were none.
pub fn check_text<T>(
    name: &str,
    text: &str,
    check: impl FnOnce(&mut Checker<'_>, &DeTable<'_>) -> T,
) -> Result<T, Vec<Diagnostic>> {
    let src = SourceFile::new(name, text);
    let doc = Checker::parse(&src)?;
    let mut c = Checker::new(&src);
    let out = check(&mut c, doc.get_ref());
    if c.has_problems() {
        return Err(c.into_problems());
    }
    Ok(out)
}

/// [`check_text`] on a file; a file that does not exist gives `missing`.
pub fn check_file<T>(
    path: &std::path::Path,
    shown: &str,
    missing: T,
    check: impl FnOnce(&mut Checker<'_>, &DeTable<'_>) -> T,
) -> Result<T, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(text) => check_text(shown, &text, check),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(missing),
        Err(e) => Err(vec![Diagnostic::whole_file(
            shown,
            format!("cannot read the file: {e}"),
        )]),
    }
}

/// Looks a key up in a spanned table.
pub fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

/// Converts a TOML value to JSON (dates become RFC 3339 strings).
pub fn to_json(value: &DeValue<'_>) -> Value {
    match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_or(Value::Null, Value::from)
        }
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .map_or(Value::Null, Value::from),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|v| to_json(v.get_ref())).collect()),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}

/// The sentence for a name that is not among `names` (at least one): the closest name if one
/// is close, and every name (`there is no canary `apj` (did you mean `api`?); canaries: api`).
pub fn unknown_name(what: &str, plural: &str, name: &str, names: &[&str]) -> String {
    let hint = suggest(name, names)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "there is no {what} `{name}`{hint}; {plural}: {}",
        names.join(", ")
    )
}

/// The valid name meant by a wrong one: the one compound name holding it as a whole word
/// (`retry` for `retry_run`), else the closest, if it is close enough to be a likely typo: at
/// most about 40% of the longer name differs, and less than half of it.
pub fn suggest<'a>(given: &str, choices: &[&'a str]) -> Option<&'a str> {
    // A whole word of exactly one compound name (`retry` for `retry_run`) is that name, however
    // far apart the spellings are.
    let holding: Vec<&str> = choices
        .iter()
        .copied()
        .filter(|c| *c != given && c.split(['_', '-']).any(|w| w == given))
        .collect();
    if let [only] = holding[..] {
        return Some(only);
    }
    choices
        .iter()
        .map(|c| (edit_distance(given, c), *c))
        .filter(|(d, c)| {
            let longer = given.chars().count().max(c.chars().count());
            *d <= 1.max((longer * 2).div_ceil(5)) && d * 2 < longer
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters (the commonest typo) each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_character_columns() {
        let src = SourceFile::new("f.toml", "a = 1\nbé = 2\n");
        assert_eq!(src.locate(0), (1, 1));
        assert_eq!(src.locate(6), (2, 1));
        // `=` on line 2 follows a two-byte character: column counts characters.
        assert_eq!(src.locate(10), (2, 4));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            suggest("retries", &["retry", "needs", "timeout_ms"]),
            Some("retry")
        );
        assert_eq!(suggest("zzz", &["retry", "needs"]), None);
        assert_eq!(
            suggest("retry", &["restart", "retry_run", "cancel_run"]),
            Some("retry_run")
        );
        // Two names hold the word: no guess between them from that.
        assert_eq!(suggest("run", &["retry_run", "cancel_run"]), None);
        assert_eq!(
            suggest("knid", &["kind", "id"]),
            Some("kind"),
            "a swap is one typo"
        );
        assert_eq!(
            suggest("x", &["a"]),
            None,
            "one letter against another is no hint"
        );
        assert_eq!(suggest("foo", &["log", "store"]), None);
    }

    #[test]
    fn reads_integers_in_any_radix_and_sign() {
        let src = SourceFile::new("f.toml", "a = -1_000\nb = 0x10\n");
        let doc = Checker::parse(&src).unwrap();
        let mut c = Checker::new(&src);
        assert_eq!(
            c.int(doc.get_ref(), "a", "x", i64::MIN, i64::MAX)
                .map(|v| v.0),
            Some(-1000)
        );
        assert_eq!(
            c.int(doc.get_ref(), "b", "x", 0, 100).map(|v| v.0),
            Some(16)
        );
        assert!(!c.has_problems());
    }
}
