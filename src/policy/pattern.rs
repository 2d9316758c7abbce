//! Key patterns with named captures: `calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav`.
//!
//! A pattern is compiled once, when the policy loads, into an anchored regular
//! expression; matching a key is then one regex search with no allocation
//! unless it matches. Syntax:
//! - `{name}` captures one path segment or part of one (never a `/`);
//! - `{recorded:FORMAT}` captures a date written with strftime fields
//!   (`%Y %m %d %H %M %S %y %j`, plus `%F` and `%T`);
//! - `*` matches within one segment, `**` across segments;
//! - `{{` and `}}` are literal braces; everything else is literal.
//!
//! The same syntax, without wildcards, is a [`Template`] for sidecars and
//! companions: rendered from a recording's captures to name its other objects.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use regex::Regex;

/// Captures of a matched key, by name. `recorded` holds the raw text.
pub type Captures = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Capture(String),
    Date(DateFormat),
    Star,
    DoubleStar,
}

/// A validated strftime format for `{recorded:...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    pub format: String,
    has_time: bool,
    regex: String,
}

impl DateFormat {
    fn parse(format: &str) -> Result<Self, String> {
        let mut regex = String::new();
        let mut fields = Vec::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                regex.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            let spec = chars
                .next()
                .ok_or_else(|| format!("date format {format:?} ends with a lone %"))?;
            let (piece, names): (&str, &[char]) = match spec {
                'Y' => ("[0-9]{4}", &['Y']),
                'y' => ("[0-9]{2}", &['y']),
                'm' => ("[0-9]{2}", &['m']),
                'd' => ("[0-9]{2}", &['d']),
                'j' => ("[0-9]{3}", &['j']),
                'H' => ("[0-9]{2}", &['H']),
                'M' => ("[0-9]{2}", &['M']),
                'S' => ("[0-9]{2}", &['S']),
                'F' => ("[0-9]{4}-[0-9]{2}-[0-9]{2}", &['Y', 'm', 'd']),
                'T' => ("[0-9]{2}:[0-9]{2}:[0-9]{2}", &['H', 'M', 'S']),
                '%' => ("%", &[]),
                other => {
                    return Err(format!(
                        "unsupported date field %{other} in {format:?}; supported: %Y %y %m %d %j %H %M %S %F %T"
                    ));
                }
            };
            for n in names {
                if fields.contains(n) {
                    return Err(format!("date field %{n} appears twice in {format:?}"));
                }
                fields.push(*n);
            }
            regex.push_str(piece);
        }
        let has = |c| fields.contains(&c);
        if !(has('Y') || has('y')) {
            return Err(format!("date format {format:?} has no year (%Y)"));
        }
        if !((has('m') && has('d')) || has('j')) {
            return Err(format!(
                "date format {format:?} needs a month and a day (%m and %d) or a day of the year (%j)"
            ));
        }
        if (has('m') || has('d')) && has('j') {
            return Err(format!("date format {format:?} mixes %j with %m/%d"));
        }
        let has_time = has('H') || has('M') || has('S');
        if has_time && !(has('H') && has('M')) {
            return Err(format!(
                "date format {format:?} has a time without both hour (%H) and minute (%M)"
            ));
        }
        Ok(Self {
            format: format.to_string(),
            has_time,
            regex,
        })
    }

    /// Parses captured text. Date-only formats give midnight.
    pub fn parse_value(&self, text: &str) -> Result<NaiveDateTime, String> {
        let parsed = if self.has_time {
            NaiveDateTime::parse_from_str(text, &self.format)
        } else {
            NaiveDate::parse_from_str(text, &self.format)
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        };
        parsed.map_err(|e| format!("{text:?} is not a valid date for {:?}: {e}", self.format))
    }

    pub fn is_date_only(&self) -> bool {
        !self.has_time
    }
}

fn parse_parts(text: &str, allow_wildcards: bool) -> Result<Vec<Part>, String> {
    if text.is_empty() {
        return Err("pattern is empty".into());
    }
    if text.starts_with('/') {
        return Err("keys are relative to the store: remove the leading '/'".into());
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    let flush = |literal: &mut String, parts: &mut Vec<Part>| {
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(literal)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err("unmatched '}' (write '}}' for a literal brace)".into()),
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => return Err("unclosed '{' (write '{{' for a literal brace)".into()),
                    }
                }
                let (name, format) = match inner.split_once(':') {
                    Some((n, f)) => (n, Some(f)),
                    None => (inner.as_str(), None),
                };
                let valid_name = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    return Err(format!(
                        "invalid capture name {name:?} (letters, digits and _)"
                    ));
                }
                flush(&mut literal, &mut parts);
                match (name, format) {
                    ("recorded", Some(f)) => parts.push(Part::Date(DateFormat::parse(f)?)),
                    ("recorded", None) => {
                        return Err(
                            "{recorded} needs a date format, e.g. {recorded:%Y/%m/%d}".into()
                        );
                    }
                    (other, Some(_)) => {
                        return Err(format!("only {{recorded}} takes a format, not {{{other}}}"));
                    }
                    (other, None) => parts.push(Part::Capture(other.to_string())),
                }
            }
            '*' => {
                if !allow_wildcards {
                    return Err(
                        "wildcards (*, **) cannot name a single object; use captures".into(),
                    );
                }
                flush(&mut literal, &mut parts);
                if chars.peek() == Some(&'*') {
                    chars.next();
                    parts.push(Part::DoubleStar);
                } else {
                    parts.push(Part::Star);
                }
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut parts);
    let mut names: Vec<&str> = Vec::new();
    for part in &parts {
        let name = match part {
            Part::Capture(n) => n.as_str(),
            Part::Date(_) => "recorded",
            _ => continue,
        };
        if names.contains(&name) {
            return Err(format!("capture {{{name}}} appears twice"));
        }
        names.push(name);
    }
    for pair in parts.windows(2) {
        if matches!(
            pair[0],
            Part::Capture(_) | Part::Date(_) | Part::Star | Part::DoubleStar
        ) && matches!(
            pair[1],
            Part::Capture(_) | Part::Date(_) | Part::Star | Part::DoubleStar
        ) {
            return Err("two captures or wildcards side by side are ambiguous; separate them with a literal".into());
        }
    }
    Ok(parts)
}

fn to_regex(parts: &[Part]) -> Result<Regex, String> {
    let mut re = String::from("(?s)^");
    for part in parts {
        match part {
            Part::Literal(l) => re.push_str(&regex::escape(l)),
            Part::Capture(n) => re.push_str(&format!("(?P<{n}>[^/]+)")),
            Part::Date(f) => re.push_str(&format!("(?P<recorded>{})", f.regex)),
            Part::Star => re.push_str("[^/]*"),
            Part::DoubleStar => re.push_str(".*"),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("cannot compile pattern: {e}"))
}

/// A compiled `match` pattern.
#[derive(Clone, Debug)]
pub struct KeyPattern {
    source: String,
    parts: Vec<Part>,
    regex: Regex,
}

impl KeyPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = parse_parts(text, true)?;
        let regex = to_regex(&parts)?;
        Ok(Self {
            source: text.to_string(),
            parts,
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Captures of `key` if it matches the whole pattern.
    pub fn captures(&self, key: &str) -> Option<Captures> {
        let caps = self.regex.captures(key)?;
        let mut out = Captures::new();
        for name in self.regex.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                out.insert(name.to_string(), m.as_str().to_string());
            }
        }
        Some(out)
    }

    pub fn date_format(&self) -> Option<&DateFormat> {
        self.parts.iter().find_map(|p| match p {
            Part::Date(f) => Some(f),
            _ => None,
        })
    }

    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Capture(n) => Some(n.as_str()),
            Part::Date(_) => Some("recorded"),
            _ => None,
        })
    }
}

/// A sidecar or companion template, rendered from a recording's captures.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// The template seen as a pattern, to recognise such objects in a listing.
    regex: Regex,
}

impl Template {
    /// Parses a template whose captures must all come from `pattern`.
    pub fn parse(text: &str, pattern: &KeyPattern) -> Result<Self, String> {
        let parts = parse_parts(text, false)?;
        let available: Vec<&str> = pattern.capture_names().collect();
        let mut used = 0;
        for part in &parts {
            let name = match part {
                Part::Capture(n) => n.as_str(),
                Part::Date(_) => "recorded",
                _ => continue,
            };
            used += 1;
            if !available.contains(&name) {
                return Err(format!(
                    "{{{name}}} is not captured by the match pattern {:?}",
                    pattern.as_str()
                ));
            }
        }
        if used == 0 {
            return Err("a sidecar or companion must use at least one capture (e.g. {call_id}), or every recording would share it".into());
        }
        if text == pattern.as_str() {
            return Err("a sidecar or companion cannot be the recording itself".into());
        }
        let regex = to_regex(&parts)?;
        Ok(Self {
            source: text.to_string(),
            parts,
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }

    /// The key this template names for a recording with these captures.
    pub fn render(&self, captures: &Captures, recorded: Option<NaiveDateTime>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Capture(n) => out.push_str(captures.get(n)?),
                Part::Date(f) => out.push_str(&recorded?.format(&f.format).to_string()),
                Part::Star | Part::DoubleStar => return None,
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav";

    fn check(pattern: &str, key: &str, expected: Option<&[(&str, &str)]>) {
        let p = KeyPattern::parse(pattern).unwrap();
        let got = p.captures(key);
        let expected = expected.map(|e| {
            e.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Captures>()
        });
        assert_eq!(got, expected, "{pattern} on {key}");
    }

    #[test]
    fn matching() {
        check(
            P,
            "calls/quality/2025/05/31/C-1.wav",
            Some(&[
                ("purpose", "quality"),
                ("recorded", "2025/05/31"),
                ("call_id", "C-1"),
            ]),
        );
        check(
            P,
            "calls/quality/2025/05/31/C.1.wav",
            Some(&[
                ("purpose", "quality"),
                ("recorded", "2025/05/31"),
                ("call_id", "C.1"),
            ]),
        );
        check(P, "calls/quality/2025/05/31/C-1.wav.bak", None);
        check(P, "calls/quality/extra/2025/05/31/C-1.wav", None);
        check(P, "calls/quality/2025/5/31/C-1.wav", None);
        check(P, "xcalls/quality/2025/05/31/C-1.wav", None);
        check(P, "calls/quality/2025/05/31/.wav", None);
        check(
            P,
            "calls/quality/2025/05/31/a\nb.wav",
            Some(&[
                ("purpose", "quality"),
                ("recorded", "2025/05/31"),
                ("call_id", "a\nb"),
            ]),
        );
        check(
            "calls/**/{call_id}.wav",
            "calls/a/b/c/X.wav",
            Some(&[("call_id", "X")]),
        );
        check("calls/*.wav", "calls/a/b.wav", None);
        check("a{{b}}/{x}", "a{b}/1", Some(&[("x", "1")]));
        check(
            "calls/{purpose}/{recorded:%Y%m%dT%H%M%S}-{call_id}.wav",
            "calls/q/20250102T030405-9.wav",
            Some(&[
                ("purpose", "q"),
                ("recorded", "20250102T030405"),
                ("call_id", "9"),
            ]),
        );
        check(
            "rec (1)+[x]$/{call_id}.wav",
            "rec (1)+[x]$/é ü.wav",
            Some(&[("call_id", "é ü")]),
        );
    }

    #[test]
    fn dates() {
        let p = KeyPattern::parse(P).unwrap();
        let f = p.date_format().unwrap();
        assert_eq!(
            f.parse_value("2025/05/31").unwrap().to_string(),
            "2025-05-31 00:00:00"
        );
        assert!(
            f.parse_value("2025/02/30")
                .unwrap_err()
                .contains("not a valid date")
        );
        let j = KeyPattern::parse("{recorded:%Y-%j}/{x}").unwrap();
        assert_eq!(
            j.date_format()
                .unwrap()
                .parse_value("2024-060")
                .unwrap()
                .to_string(),
            "2024-02-29 00:00:00"
        );
    }

    #[test]
    fn pattern_errors() {
        for (bad, msg) in [
            ("", "empty"),
            ("/calls/{x}", "leading '/'"),
            ("calls/{recorded}/x", "needs a date format"),
            ("calls/{recorded:%Y/%m}/x", "needs a month and a day"),
            ("calls/{recorded:%Y/%m/%d %H}/x", "hour (%H) and minute"),
            ("calls/{recorded:%Y/%m/%dT%H}/x", "hour (%H) and minute"),
            ("calls/{recorded:%Y/%b/%d}/x", "unsupported date field %b"),
            ("calls/{x}/{x}", "appears twice"),
            ("calls/{x}{y}", "ambiguous"),
            ("calls/{x", "unclosed"),
            ("calls/x}", "unmatched"),
            ("calls/{9x}", "invalid capture name"),
            ("calls/{x:%Y}", "only {recorded} takes a format"),
        ] {
            let err = KeyPattern::parse(bad).unwrap_err();
            assert!(err.contains(msg), "{bad:?}: {err}");
        }
    }

    #[test]
    fn templates_render_from_captures() {
        let p = KeyPattern::parse(P).unwrap();
        let sidecar =
            Template::parse("calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.json", &p).unwrap();
        let key = "calls/quality/2025/05/31/C-1.wav";
        let caps = p.captures(key).unwrap();
        let recorded = p.date_format().unwrap().parse_value(&caps["recorded"]).ok();
        assert_eq!(
            sidecar.render(&caps, recorded).unwrap(),
            "calls/quality/2025/05/31/C-1.json"
        );
        let other_format = Template::parse("meta/{recorded:%Y-%m-%d}/{call_id}.json", &p).unwrap();
        assert_eq!(
            other_format.render(&caps, recorded).unwrap(),
            "meta/2025-05-31/C-1.json"
        );
        assert!(sidecar.matches("calls/quality/2025/05/31/C-1.json"));
        assert!(!sidecar.matches(key));
    }

    #[test]
    fn template_errors() {
        let p = KeyPattern::parse(P).unwrap();
        assert!(
            Template::parse("transcripts/{subject}.txt", &p)
                .unwrap_err()
                .contains("not captured")
        );
        assert!(
            Template::parse("transcripts/all.txt", &p)
                .unwrap_err()
                .contains("at least one capture")
        );
        assert!(
            Template::parse("transcripts/*/{call_id}.txt", &p)
                .unwrap_err()
                .contains("wildcards")
        );
        assert!(
            Template::parse(P, &p)
                .unwrap_err()
                .contains("recording itself")
        );
    }
}
