//! Retention policies: `policies/*.yaml` turned into a validated [`Policy`].
//!
//! A policy file declares purposes (how long, on which legal basis) and
//! recording rules (which keys in which store are recordings, which purposes
//! they serve, and which sidecar and companion objects belong to them). This
//! module owns parsing, validation and key matching; it never reads the clock
//! or a store. Every error names the file, line and column, and all errors
//! found are reported together so that a broken policy is fixed in one pass.

pub mod duration;
pub mod pattern;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

pub use duration::CalendarDuration;
pub use pattern::{Captures, KeyPattern, Template};

/// Where something was declared, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in the policy files.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{origin}: {message}")]
    At { origin: Origin, message: String },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// All problems found; the policy is unusable if there is at least one.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in the policy files:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i + 1 < n {
                writeln!(f, "  {e}")?;
            } else {
                write!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

pub type Result<T, E = PolicyErrors> = std::result::Result<T, E>;

/// A loaded policy file, as certificates list them.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    /// The file name within the policy folder.
    pub name: String,
    pub sha256: String,
}

#[derive(Clone, Debug)]
pub struct Purpose {
    pub name: String,
    pub retain: CalendarDuration,
    pub minimum: Option<CalendarDuration>,
    /// The periods as the policy writes them ("24 months"), for reports.
    pub retain_text: String,
    pub minimum_text: Option<String>,
    pub basis: String,
    /// The GDPR Art. 6(1) ground the purpose rests on, where the policy
    /// states it: it decides what a subject may withdraw or object to.
    pub lawful_basis: Option<LawfulBasis>,
    /// Who receives the recordings kept for this purpose (Art. 13(1)(e),
    /// 15(1)(c)), as the policy names them.
    pub recipients: Vec<String>,
    pub origin: Origin,
}

/// The lawful basis of a purpose (GDPR Art. 6(1), and Art. 17(3)(e) for
/// legal claims), as a policy spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LawfulBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterest,
    PublicTask,
    LegitimateInterest,
    LegalClaims,
}

impl LawfulBasis {
    pub const ALL: [LawfulBasis; 7] = [
        LawfulBasis::Consent,
        LawfulBasis::Contract,
        LawfulBasis::LegalObligation,
        LawfulBasis::VitalInterest,
        LawfulBasis::PublicTask,
        LawfulBasis::LegitimateInterest,
        LawfulBasis::LegalClaims,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LawfulBasis::Consent => "consent",
            LawfulBasis::Contract => "contract",
            LawfulBasis::LegalObligation => "legal-obligation",
            LawfulBasis::VitalInterest => "vital-interest",
            LawfulBasis::PublicTask => "public-task",
            LawfulBasis::LegitimateInterest => "legitimate-interest",
            LawfulBasis::LegalClaims => "legal-claims",
        }
    }

    pub fn parse(text: &str) -> Option<LawfulBasis> {
        LawfulBasis::ALL.into_iter().find(|b| b.as_str() == text)
    }

    /// What a subject can do against a purpose on this basis, if anything:
    /// withdraw consent (Art. 7(3)) or object (Art. 21(1): public task,
    /// legitimate interest).
    pub fn withdrawal(self) -> Option<&'static str> {
        match self {
            LawfulBasis::Consent => Some("withdrawal of consent (GDPR Art. 7(3))"),
            LawfulBasis::LegitimateInterest | LawfulBasis::PublicTask => {
                Some("objection (GDPR Art. 21(1))")
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for LawfulBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub store: String,
    pub pattern: KeyPattern,
    /// Purposes fixed by the rule, in addition to captured and sidecar ones.
    pub purposes: Vec<String>,
    pub sidecar: Option<Template>,
    pub companions: Vec<Template>,
    pub timezone: Tz,
    pub origin: Origin,
}

/// A rule that matched a key, with the captured values.
#[derive(Clone, Debug)]
pub struct RuleMatch<'p> {
    pub rule: &'p Rule,
    pub captures: Captures,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub files: Vec<PolicyFile>,
    purposes: BTreeMap<String, Purpose>,
    rules: Vec<Rule>,
    by_store: HashMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    purposes: BTreeMap<String, Spanned<RawPurpose>>,
    #[serde(default)]
    recordings: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    retain: Spanned<String>,
    #[serde(default)]
    minimum: Option<Spanned<String>>,
    basis: Spanned<String>,
    #[serde(default)]
    lawful_basis: Option<Spanned<String>>,
    #[serde(default)]
    recipients: Vec<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    store: Spanned<String>,
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    #[serde(default)]
    purposes: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    sidecar: Option<Spanned<String>>,
    #[serde(default)]
    companions: Vec<Spanned<String>>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
}

/// Error collection with the current file's path at hand.
struct Collector<'a> {
    file: &'a Path,
    errors: &'a mut Vec<PolicyError>,
}

impl Collector<'_> {
    fn origin<T>(&self, spanned: &Spanned<T>) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            line: spanned.referenced.line() as u32,
            column: spanned.referenced.column() as u32,
        }
    }
    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        let origin = self.origin(spanned);
        self.errors.push(PolicyError::At {
            origin,
            message: message.into(),
        });
    }
}

fn valid_purpose_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A parsed policy file with the path its messages name.
type ParsedFile = (PathBuf, RawFile);

/// A recording rule not yet validated, with its file and resolved timezone.
type PendingRule = (PathBuf, Tz, Spanned<RawRule>);

/// Hashes every source for the certificates and parses those that are
/// non-empty UTF-8 YAML, recording a problem for each one that is not.
fn parse_sources(
    sources: Vec<(String, PathBuf, Vec<u8>)>,
    errors: &mut Vec<PolicyError>,
) -> (Vec<PolicyFile>, Vec<ParsedFile>) {
    let mut files = Vec::new();
    let mut parsed = Vec::new();
    for (name, path, bytes) in sources {
        files.push(PolicyFile {
            name,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PolicyError::File {
                    path,
                    message: format!("not valid UTF-8 text: {e}"),
                });
                continue;
            }
        };
        if text.trim().is_empty() {
            errors.push(PolicyError::File {
                path,
                message: "the file is empty".into(),
            });
            continue;
        }
        match serde_saphyr::from_str::<RawFile>(text) {
            Ok(raw) => parsed.push((path, raw)),
            Err(e) => errors.push(yaml_error(&path, text, &e)),
        }
    }
    (files, parsed)
}

/// Validates the purposes of every file and sets its recording rules aside
/// with their timezones, because rules can only be checked once every file's
/// purposes are known.
fn collect_purposes(
    parsed: Vec<ParsedFile>,
    errors: &mut Vec<PolicyError>,
) -> (BTreeMap<String, Purpose>, Vec<PendingRule>) {
    let mut purposes: BTreeMap<String, Purpose> = BTreeMap::new();
    let mut pending_rules = Vec::new();
    for (path, raw) in parsed {
        let mut c = Collector {
            file: &path,
            errors: &mut *errors,
        };
        let file_tz = match &raw.timezone {
            Some(tz) => parse_tz(&mut c, tz).unwrap_or(Tz::UTC),
            None => Tz::UTC,
        };
        for (name, spanned) in &raw.purposes {
            if let Some(purpose) = build_purpose(&mut c, &purposes, name, spanned) {
                purposes.insert(name.clone(), purpose);
            }
        }
        for rule in raw.recordings {
            let tz = match &rule.value.timezone {
                Some(tz) => parse_tz(&mut c, tz).unwrap_or(file_tz),
                None => file_tz,
            };
            pending_rules.push((path.clone(), tz, rule));
        }
    }
    (purposes, pending_rules)
}

/// Checks one declared purpose against those defined so far; records the
/// first problem and returns `None` if it has one.
fn build_purpose(
    c: &mut Collector<'_>,
    purposes: &BTreeMap<String, Purpose>,
    name: &str,
    spanned: &Spanned<RawPurpose>,
) -> Option<Purpose> {
    let purpose = &spanned.value;
    if !valid_purpose_name(name) {
        c.at(
            spanned,
            format!("purpose name {name:?} must be letters, digits, '-', '_' or '.'"),
        );
        return None;
    }
    if let Some(existing) = purposes.get(name) {
        c.at(
            spanned,
            format!("purpose {name:?} is already defined at {}", existing.origin),
        );
        return None;
    }
    let retain = match CalendarDuration::parse(&purpose.retain.value) {
        Ok(d) => d,
        Err(m) => {
            c.at(&purpose.retain, format!("retain: {m}"));
            return None;
        }
    };
    let minimum = match &purpose.minimum {
        Some(m) => match CalendarDuration::parse(&m.value) {
            Ok(d) => Some(d),
            Err(msg) => {
                c.at(m, format!("minimum: {msg}"));
                return None;
            }
        },
        None => None,
    };
    if let (Some(min), Some(min_span)) = (minimum, &purpose.minimum)
        && can_be_shorter(retain, min)
    {
        c.at(
            min_span,
            format!("retain ({retain}) is shorter than the legal minimum ({min}) for purpose {name:?}; a purpose must be kept at least as long as the law requires"),
        );
        return None;
    }
    if purpose.basis.value.trim().is_empty() {
        c.at(
            &purpose.basis,
            format!("purpose {name:?} needs a legal basis (basis: \"...\")"),
        );
        return None;
    }
    let lawful_basis = match &purpose.lawful_basis {
        Some(b) => match LawfulBasis::parse(b.value.trim()) {
            Some(basis) => Some(basis),
            None => {
                let all: Vec<&str> = LawfulBasis::ALL.iter().map(|b| b.as_str()).collect();
                c.at(
                    b,
                    format!(
                        "lawful_basis: {:?} is not one of {}",
                        b.value,
                        all.join(", ")
                    ),
                );
                return None;
            }
        },
        None => None,
    };
    let mut recipients = Vec::new();
    for r in &purpose.recipients {
        if r.value.trim().is_empty() {
            c.at(
                r,
                "recipients: a recipient must be named (an empty one says nothing)",
            );
            return None;
        }
        recipients.push(normalize_space(&r.value));
    }
    Some(Purpose {
        name: name.to_string(),
        retain,
        minimum,
        retain_text: normalize_space(&purpose.retain.value),
        minimum_text: purpose.minimum.as_ref().map(|m| normalize_space(&m.value)),
        basis: purpose.basis.value.trim().to_string(),
        lawful_basis,
        recipients,
        origin: c.origin(spanned),
    })
}

/// Checks one recording rule against the purposes and the rules accepted so
/// far; records every problem found after its name and pattern are usable,
/// and returns `None` if there was any.
fn build_rule(
    c: &mut Collector<'_>,
    purposes: &BTreeMap<String, Purpose>,
    rules: &[Rule],
    tz: Tz,
    raw: RawRule,
) -> Option<Rule> {
    let name = raw.name.value.trim().to_string();
    if name.is_empty() {
        c.at(&raw.name, "rule name must not be empty");
        return None;
    }
    if let Some(existing) = rules.iter().find(|r| r.name == name) {
        c.at(
            &raw.name,
            format!("rule name {name:?} is already used at {}", existing.origin),
        );
        return None;
    }
    let pattern = match KeyPattern::parse(&raw.pattern.value) {
        Ok(p) => p,
        Err(m) => {
            c.at(&raw.pattern, format!("match: {m}"));
            return None;
        }
    };
    let mut ok = true;
    let fixed = raw
        .purposes
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_default();
    ok &= check_fixed_purposes(c, purposes, &raw, &fixed);
    let captures_purpose = pattern.capture_names().any(|n| n == "purpose");
    if fixed.is_empty() && !captures_purpose && raw.sidecar.is_none() {
        c.at(&raw.pattern, "the rule gives no purpose: capture {purpose}, list purposes: [...], or name a sidecar that carries them");
        ok = false;
    }
    let sidecar = match &raw.sidecar {
        Some(s) => match Template::parse(&s.value, &pattern) {
            Ok(t) => Some(t),
            Err(m) => {
                c.at(s, format!("sidecar: {m}"));
                ok = false;
                None
            }
        },
        None => None,
    };
    let companions = parse_companions(c, &raw, &pattern, &mut ok);
    if !ok {
        return None;
    }
    Some(Rule {
        name,
        store: raw.store.value.trim().to_string(),
        pattern,
        purposes: fixed,
        sidecar,
        companions,
        timezone: tz,
        origin: c.origin(&raw.name),
    })
}

/// Records a problem for each purpose a rule lists that no file defines;
/// returns whether they are all defined.
fn check_fixed_purposes(
    c: &mut Collector<'_>,
    purposes: &BTreeMap<String, Purpose>,
    raw: &RawRule,
    fixed: &[String],
) -> bool {
    let mut ok = true;
    for p in fixed {
        if !purposes.contains_key(p) {
            let known = purposes.keys().cloned().collect::<Vec<_>>().join(", ");
            let known = if known.is_empty() {
                "no purpose is defined".to_string()
            } else {
                format!("defined: {known}")
            };
            c.at(
                raw.purposes
                    .as_ref()
                    .expect("fixed purposes come from this field"),
                format!("purpose {p:?} is not defined ({known})"),
            );
            ok = false;
        }
    }
    ok
}

/// Parses a rule's companion templates, refusing one that would itself match
/// the recording pattern (it would be both a recording and a companion);
/// clears `ok` on any problem.
fn parse_companions(
    c: &mut Collector<'_>,
    raw: &RawRule,
    pattern: &KeyPattern,
    ok: &mut bool,
) -> Vec<Template> {
    let mut companions = Vec::new();
    for comp in &raw.companions {
        match Template::parse(&comp.value, pattern) {
            Ok(t) if pattern.captures(t.as_str()).is_some() => {
                c.at(
                    comp,
                    "companion: this key would itself match the recording pattern",
                );
                *ok = false;
            }
            Ok(t) => companions.push(t),
            Err(m) => {
                c.at(comp, format!("companion: {m}"));
                *ok = false;
            }
        }
    }
    companions
}

impl Policy {
    /// Loads every `*.yaml` / `*.yml` file of `dir` (sorted by name; hidden
    /// files skipped; symbolic links followed, as Kubernetes ConfigMaps use them).
    pub fn load(dir: &Path) -> Result<Self> {
        let fail = |message: String| {
            PolicyErrors(vec![PolicyError::File {
                path: dir.to_path_buf(),
                message,
            }])
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("cannot read the policy folder: {e}")))?;
        let mut paths = Vec::new();
        let mut ignored = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| fail(format!("cannot read the policy folder: {e}")))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                ignored.push(name);
                continue;
            }
            paths.push((name, entry.path()));
        }
        paths.sort();
        ignored.sort();
        if paths.is_empty() {
            return Err(fail(no_policy_files(&ignored)));
        }
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for (name, path) in paths {
            match std::fs::read(&path) {
                Ok(bytes) => sources.push((name, path, bytes)),
                Err(e) => errors.push(PolicyError::File {
                    path,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        Self::from_sources(sources)
    }

    /// Builds a policy from `(name, path, bytes)` triples.
    pub fn from_sources(sources: Vec<(String, PathBuf, Vec<u8>)>) -> Result<Self> {
        let mut errors = Vec::new();
        let (files, parsed) = parse_sources(sources, &mut errors);
        let (purposes, pending_rules) = collect_purposes(parsed, &mut errors);
        let mut rules: Vec<Rule> = Vec::new();
        for (path, tz, spanned) in pending_rules {
            let mut c = Collector {
                file: &path,
                errors: &mut errors,
            };
            if let Some(rule) = build_rule(&mut c, &purposes, &rules, tz, spanned.value) {
                rules.push(rule);
            }
        }
        if errors.is_empty() && rules.is_empty() {
            errors.push(PolicyError::File {
                path: PathBuf::from(files.first().map(|f| f.name.as_str()).unwrap_or("policies")),
                message:
                    "no recording rules (recordings: [...]) in any policy file; refusing to run"
                        .into(),
            });
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| match e {
                PolicyError::At { origin, .. } => (origin.file.clone(), origin.line, origin.column),
                PolicyError::File { path, .. } => (path.clone(), 0, 0),
            });
            return Err(PolicyErrors(errors));
        }
        let mut by_store: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_store.entry(r.store.clone()).or_default().push(i);
        }
        Ok(Policy {
            files,
            purposes,
            rules,
            by_store,
        })
    }

    /// Every rule must name a configured store.
    pub fn check_stores(&self, stores: &[&str]) -> Result<()> {
        let errors: Vec<PolicyError> = self
            .rules
            .iter()
            .filter(|r| !stores.contains(&r.store.as_str()))
            .map(|r| PolicyError::At {
                origin: r.origin.clone(),
                message: format!("rule {:?} names store {:?}, which lethe.toml does not configure (configured: {})", r.name, r.store, stores.join(", ")),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    }

    /// Things in the policy that work, but that a person should look at:
    /// a sidecar or companion template that can name another rule's
    /// recordings (such an object is kept while any recording or rule still
    /// claims it, so one rule's retention can end before its companion goes).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let Some(sample) = sample_captures(rule) else {
                continue;
            };
            let recorded = chrono::NaiveDate::from_ymd_opt(2025, 1, 31)
                .and_then(|d| d.and_hms_opt(12, 34, 56));
            let templates = rule
                .sidecar
                .iter()
                .map(|t| ("sidecar", t))
                .chain(rule.companions.iter().map(|t| ("companion", t)));
            for (role, template) in templates {
                let Some(key) = template.render(&sample, recorded) else {
                    continue;
                };
                for other in self.matches(&rule.store, &key) {
                    out.push(format!(
                        "{}: the {role} {:?} of rule {:?} can name a recording of rule {:?} (e.g. {key}); such an object is deleted only when every rule and recording that claims it lets it go",
                        rule.origin,
                        template.as_str(),
                        rule.name,
                        other.rule.name
                    ));
                }
            }
        }
        out
    }

    pub fn purpose(&self, name: &str) -> Option<&Purpose> {
        self.purposes.get(name)
    }

    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn store_rules<'p>(&'p self, store: &str) -> impl Iterator<Item = &'p Rule> + 'p {
        self.by_store
            .get(store)
            .into_iter()
            .flatten()
            .map(|&i| &self.rules[i])
    }

    /// The rules whose `match` pattern matches `key` in `store`, in policy order.
    pub fn matches<'p>(&'p self, store: &str, key: &str) -> Vec<RuleMatch<'p>> {
        self.store_rules(store)
            .filter_map(|rule| {
                rule.pattern
                    .captures(key)
                    .map(|captures| RuleMatch { rule, captures })
            })
            .collect()
    }

    /// Whether `key` has the shape of a sidecar or companion of some rule:
    /// such objects belong to a recording and are never classified alone.
    pub fn is_owned(&self, store: &str, key: &str) -> bool {
        self.store_rules(store).any(|r| {
            r.sidecar.as_ref().is_some_and(|s| s.matches(key))
                || r.companions.iter().any(|c| c.matches(key))
        })
    }
}

/// Captures a rule's pattern could produce, for trying its templates against
/// the other rules: each named capture gets a sample value, `purpose` the
/// first purpose defined.
fn sample_captures(rule: &Rule) -> Option<pattern::Captures> {
    let mut captures = pattern::Captures::new();
    for name in rule.pattern.capture_names() {
        if name == "recorded" {
            continue;
        }
        captures.insert(name.to_string(), format!("{name}-1"));
    }
    Some(captures)
}

fn normalize_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_tz(c: &mut Collector<'_>, tz: &Spanned<String>) -> Option<Tz> {
    match tz.value.parse::<Tz>() {
        Ok(t) => Some(t),
        Err(_) => {
            c.at(
                tz,
                format!(
                    "unknown time zone {:?}; use an IANA name such as Europe/Warsaw or UTC",
                    tz.value
                ),
            );
            None
        }
    }
}

/// Whether `retain` could end before `minimum` for some start date. Checked on
/// every day of a four-year cycle, which covers all month lengths and leap days.
fn can_be_shorter(retain: CalendarDuration, minimum: CalendarDuration) -> bool {
    use chrono::{TimeZone, Utc};
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    (0..1461).any(|d| {
        let t = start + chrono::Duration::days(d);
        retain.add_to(t, Tz::UTC) < minimum.add_to(t, Tz::UTC)
    })
}

/// Why a folder gave no policy: with the files it ignored, and why each.
fn no_policy_files(ignored: &[String]) -> String {
    let mut message =
        "no policy files (*.yaml or *.yml) found; refusing to run without a policy".to_string();
    if !ignored.is_empty() {
        let why = |name: &str| {
            let lower = name.to_lowercase();
            if lower.ends_with(".yaml") || lower.ends_with(".yml") {
                "the extension must be lower case"
            } else {
                "not .yaml or .yml"
            }
        };
        let shown: Vec<String> = ignored
            .iter()
            .take(10)
            .map(|n| format!("{n:?} ({})", why(n)))
            .collect();
        let more = ignored.len().saturating_sub(shown.len());
        message.push_str(&format!("; ignored: {}", shown.join(", ")));
        if more > 0 {
            message.push_str(&format!(" and {more} more"));
        }
    }
    message
}

fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> PolicyError {
    let mut message = first_line(&e.to_string());
    let mut location = e.location().map(|l| (l.line(), l.column()));
    // The parser's advice is for programmers ("use from_str_multiple"), and
    // it points past the marker: name the rule, and the `---` that starts
    // the second document.
    if message.starts_with("multiple YAML documents") {
        message = "a second YAML document: one YAML document per policy file (put the second in a file of its own)".into();
        if let Some((line, _)) = location {
            // The last marker at or before the first thing the parser read of it.
            let marker = text
                .lines()
                .take(line as usize)
                .enumerate()
                .filter(|(_, l)| l.starts_with("---"))
                .map(|(i, _)| i + 1)
                .last();
            if let Some(marker) = marker {
                location = Some((marker as _, 1));
            }
        }
    }
    match location {
        Some((line, column)) if line > 0 => PolicyError::At {
            origin: Origin {
                file: path.to_path_buf(),
                line: line as u32,
                column: column as u32,
            },
            message,
        },
        _ => PolicyError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// serde-saphyr's message without the location and snippet it appends.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    // "line 4 column 70: expected ..." repeats what the prefix already says.
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        line = rest;
    }
    if let Some(i) = line.find(" at line ") {
        line = &line[..i];
    }
    // Advice meant for programmers using the parser, not for policy authors.
    if let Some(i) = line.find(", set DuplicateKeyPolicy") {
        line = &line[..i];
    }
    line.trim_end_matches(['.', ':']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../policies/retention.yaml");

    fn load(files: &[(&str, &str)]) -> Result<Policy> {
        Policy::from_sources(
            files
                .iter()
                .map(|(n, t)| {
                    (
                        n.to_string(),
                        PathBuf::from(format!("policies/{n}")),
                        t.as_bytes().to_vec(),
                    )
                })
                .collect(),
        )
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        load(files)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn sample_policy_loads() {
        let p = load(&[("retention.yaml", SAMPLE)]).unwrap();
        assert_eq!(p.purposes().count(), 5);
        assert_eq!(
            p.purpose("mifid-orders").unwrap().minimum,
            Some(CalendarDuration {
                months: 60,
                days: 0
            })
        );
        let m = p.matches("recordings", "calls/quality/2025/05/31/C-1.wav");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].captures["call_id"], "C-1");
        assert!(
            p.matches("other-store", "calls/quality/2025/05/31/C-1.wav")
                .is_empty()
        );
        assert!(p.is_owned("recordings", "transcripts/C-1.txt"));
        assert!(p.is_owned("recordings", "calls/quality/2025/05/31/C-1.json"));
        assert!(!p.is_owned("recordings", "notes/readme.txt"));
        assert_eq!(p.files[0].name, "retention.yaml");
        assert_eq!(p.files[0].sha256.len(), 64);
    }

    #[test]
    fn syntax_error_names_file_line_column() {
        let errs = errors(&[(
            "bad.yaml",
            "purposes:\n  quality: { retain: 6 months, basis: \"x\"\n",
        )]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("policies/bad.yaml:"), "{errs:?}");
        let parts: Vec<&str> = errs[0].splitn(4, ':').collect();
        assert!(parts[1].parse::<u32>().unwrap() >= 2, "{errs:?}");
    }

    #[test]
    fn a_second_yaml_document_names_the_rule_and_the_line_of_its_marker() {
        let errs = errors(&[(
            "two.yaml",
            "# two policies in one file\npurposes: {}\n---\npurposes: {}\n",
        )]);
        assert_eq!(
            errs,
            [
                "policies/two.yaml:3:1: a second YAML document: one YAML document per policy file (put the second in a file of its own)"
            ],
        );
    }

    #[test]
    fn a_folder_without_policy_files_names_the_files_it_ignored_and_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("retention.YAML"), "purposes: {}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "").unwrap();
        let err = Policy::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "no policy files (*.yaml or *.yml) found; refusing to run without a policy; ignored: \"notes.txt\" (not .yaml or .yml), \"retention.YAML\" (the extension must be lower case)"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_is_an_error_with_its_location() {
        let text = SAMPLE.replace("    sidecar:", "    sidecr:");
        let errs = errors(&[("retention.yaml", &text)]);
        assert!(
            errs[0].starts_with("policies/retention.yaml:31:"),
            "{errs:?}"
        );
        assert!(errs[0].contains("sidecr"), "{errs:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_locations() {
        let text = r#"
timezone: Europe/Warsw
purposes:
  quality: { retain: 6 monts, basis: "x" }
  mifid:   { retain: 3 years, minimum: 5 years, basis: "MiFID II" }
  nobasis: { retain: 1 year, basis: "" }
recordings:
  - name: a
    store: recordings
    match: "calls/{recorded}/{call_id}.wav"
  - name: b
    store: recordings
    match: "calls/{call_id}.wav"
    purposes: [training]
"#;
        let errs = errors(&[("p.yaml", text)]);
        let joined = errs.join("\n");
        assert!(
            joined.contains("policies/p.yaml:2:11: unknown time zone \"Europe/Warsw\""),
            "{joined}"
        );
        assert!(
            joined.contains("policies/p.yaml:4:22: retain: expected a duration"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "policies/p.yaml:5:40: retain (3 years) is shorter than the legal minimum (5 years)"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("policies/p.yaml:6:37: purpose \"nobasis\" needs a legal basis"),
            "{joined}"
        );
        assert!(
            joined.contains("policies/p.yaml:10:12: match: {recorded} needs a date format"),
            "{joined}"
        );
        assert!(
            joined.contains("policies/p.yaml:14:15: purpose \"training\" is not defined"),
            "{joined}"
        );
        assert_eq!(errs.len(), 6, "{joined}");
    }

    #[test]
    fn duplicates_across_files_name_both_places() {
        let a = "purposes:\n  quality: { retain: 6 months, basis: \"x\" }\nrecordings:\n  - { name: r, store: s, match: \"{purpose}/{call_id}.wav\" }\n";
        let b = "purposes:\n  quality: { retain: 7 months, basis: \"y\" }\nrecordings:\n  - { name: r, store: s, match: \"x/{purpose}/{call_id}.wav\" }\n";
        let errs = errors(&[("a.yaml", a), ("b.yaml", b)]).join("\n");
        assert!(errs.contains("policies/b.yaml:2:12: purpose \"quality\" is already defined at policies/a.yaml:2:12"), "{errs}");
        assert!(
            errs.contains("rule name \"r\" is already used at policies/a.yaml:4:"),
            "{errs}"
        );
    }

    #[test]
    fn rules_must_name_configured_stores() {
        let p = load(&[("retention.yaml", SAMPLE)]).unwrap();
        let err = p.check_stores(&["archive"]).unwrap_err().to_string();
        assert!(
            err.contains(
                "policies/retention.yaml:28:11: rule \"contact-centre\" names store \"recordings\""
            ),
            "{err}"
        );
        assert!(p.check_stores(&["recordings"]).is_ok());
    }

    #[test]
    fn a_rule_without_any_purpose_source_is_refused() {
        let text = "purposes:\n  q: { retain: 1 month, basis: \"x\" }\nrecordings:\n  - { name: r, store: s, match: \"calls/{call_id}.wav\" }\n";
        assert!(errors(&[("p.yaml", text)])[0].contains("the rule gives no purpose"));
    }

    #[test]
    fn empty_or_rule_less_policies_are_refused() {
        assert!(errors(&[("p.yaml", "   \n")])[0].contains("empty"));
        assert!(
            errors(&[(
                "p.yaml",
                "purposes:\n  q: { retain: 1 month, basis: \"x\" }\n"
            )])[0]
                .contains("no recording rules")
        );
    }

    #[test]
    fn retain_equal_to_minimum_is_fine_and_mixed_units_are_compared_on_the_calendar() {
        let ok = "purposes:\n  m: { retain: 60 months, minimum: 5 years, basis: \"x\" }\n  d: { retain: 1 year, minimum: 365 days, basis: \"x\" }\nrecordings:\n  - { name: r, store: s, match: \"{purpose}/{call_id}\" }\n";
        assert!(load(&[("p.yaml", ok)]).is_ok());
        let bad = "purposes:\n  d: { retain: 1 year, minimum: 366 days, basis: \"x\" }\nrecordings:\n  - { name: r, store: s, match: \"{purpose}/{call_id}\" }\n";
        assert!(errors(&[("p.yaml", bad)])[0].contains("shorter than the legal minimum"));
    }

    #[test]
    fn a_lawful_basis_and_recipients_are_read_and_a_misspelt_basis_is_located() {
        let ok = r#"
purposes:
  training: { retain: 12 months, lawful_basis: consent, basis: "consent to training" }
  quality:  { retain: 6 months, lawful_basis: legitimate-interest, basis: "Art. 6(1)(f)", recipients: ["QA vendor (processor)"] }
  mifid:    { retain: 5 years, minimum: 5 years, lawful_basis: legal-obligation, basis: "MiFID II" }
  plain:    { retain: 1 year, basis: "x" }
recordings:
  - { name: r, store: s, match: "{purpose}/{call_id}.wav" }
"#;
        let p = load(&[("p.yaml", ok)]).unwrap();
        let basis = |n: &str| p.purpose(n).unwrap().lawful_basis;
        assert_eq!(basis("training"), Some(LawfulBasis::Consent));
        assert_eq!(basis("mifid"), Some(LawfulBasis::LegalObligation));
        assert_eq!(basis("plain"), None, "a policy without it keeps working");
        assert_eq!(
            p.purpose("quality").unwrap().recipients,
            vec!["QA vendor (processor)".to_string()]
        );
        assert!(LawfulBasis::Consent.withdrawal().is_some());
        assert!(LawfulBasis::LegitimateInterest.withdrawal().is_some());
        assert!(LawfulBasis::LegalObligation.withdrawal().is_none());
        assert!(LawfulBasis::LegalClaims.withdrawal().is_none());
        assert!(LawfulBasis::Contract.withdrawal().is_none());

        let bad = "purposes:\n  t: { retain: 1 year, lawful_basis: consnt, basis: \"x\" }\n  q: { retain: 1 year, basis: \"x\", recipients: [\" \"] }\nrecordings:\n  - { name: r, store: s, match: \"{purpose}/{call_id}\" }\n";
        let errs = errors(&[("p.yaml", bad)]).join("\n");
        assert!(
            errs.contains("policies/p.yaml:2:38: lawful_basis: \"consnt\" is not one of consent, contract, legal-obligation"),
            "{errs}"
        );
        assert!(
            errs.contains("policies/p.yaml:3:49: recipients: a recipient must be named"),
            "{errs}"
        );
    }
}
