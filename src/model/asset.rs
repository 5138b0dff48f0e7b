//! Assets: named, versioned text (a prompt, a query, a rule table, a threshold) that stages
//! read from the store instead of from files, so a change to one is a new version with an
//! author and a reason, a run records which version each stage used, and undoing a change is
//! one audited step (re-pin the version pinned before).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RunId, Timestamp};

/// The largest asset version kept, in bytes: assets are configuration, not data.
pub const MAX_ASSET_BYTES: usize = 1 << 20;

/// The most versions `assets list` and the API name for one asset; older ones stay readable
/// by number.
pub const MAX_VERSIONS_LISTED: usize = 200;

/// Whether `s` may name an asset (and a pipeline or stage): 1-64 letters, digits, `-`, `_` or
/// `.`, starting with a letter or digit, so names are safe in paths, URLs and file names.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The sentence for a name [`valid_name`] refuses.
pub fn name_rule(what: &str, name: &str) -> String {
    format!(
        "{what} `{name}` is not valid; use 1-64 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
    )
}

/// How a stage names an asset: `NAME` (whatever version is pinned when the run starts) or
/// `NAME@N` (always version N).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl AssetRef {
    /// `NAME` or `NAME@N`, or a sentence saying what is wrong.
    pub fn parse(text: &str) -> Result<AssetRef, String> {
        let (name, version) = match text.split_once('@') {
            Some((name, v)) => {
                let n = v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!(
                        "`{text}` names version `{v}`; a version is a whole number from 1, as in `{name}@2`"
                    )
                })?;
                (name, Some(n))
            }
            None => (text, None),
        };
        if !valid_name(name) {
            return Err(name_rule("asset name", name));
        }
        Ok(AssetRef {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for AssetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Asset versions a run uses instead of the pinned ones, by asset name.
pub type Overrides = BTreeMap<String, u32>;

/// Which version of each asset a stage used, by asset name.
pub type AssetVersions = BTreeMap<String, u32>;

/// `NAME=N` as `--override` takes it, or a sentence with the expected form.
pub fn parse_override(text: &str) -> Result<(String, u32), String> {
    let Some((name, v)) = text.split_once('=') else {
        return Err(format!(
            "`{text}` is not an override; write NAME=VERSION, as in `--override prompt=3`"
        ));
    };
    let name = name.trim();
    if !valid_name(name) {
        return Err(name_rule("asset name", name));
    }
    let n = v
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            format!("`{text}` gives version `{v}`; a version is a whole number from 1")
        })?;
    Ok((name.to_string(), n))
}

/// A version number as the command line takes it, or a sentence saying what one is.
pub fn parse_version(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("`{text}` is not a version; a version is a whole number from 1"))
}

/// `--override` pairs as one map, or a sentence naming an asset given twice.
pub fn overrides_from(pairs: &[(String, u32)]) -> Result<Overrides, String> {
    let mut out = Overrides::new();
    for (name, v) in pairs {
        if let Some(before) = out.insert(name.clone(), *v) {
            return Err(format!(
                "--override names asset `{name}` twice ({before} and {v}); give each asset once"
            ));
        }
    }
    Ok(out)
}

/// One version of an asset. `content` is left out of lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetVersion {
    pub version: u32,
    pub created_at: Timestamp,
    pub actor: String,
    pub reason: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One pin of an asset: who chose which version and why. A rollback marks the pin it undid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    pub version: u32,
    pub at: Timestamp,
    pub actor: String,
    pub reason: String,
    /// Undone by a rollback: the pin before it is current again.
    pub undone: bool,
}

/// Where an asset is used: a pipeline's stage, and the version it asks for when fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetUse {
    pub pipeline: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// A row of the assets list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSummary {
    pub name: String,
    /// Absent only for an asset whose every pin was rolled back.
    pub pinned: Option<u32>,
    pub latest: u32,
    pub versions: u32,
    pub updated_at: Timestamp,
    /// Stages of the host's pipelines that name it.
    pub used_by: Vec<AssetUse>,
}

/// One asset: its versions (newest first, without content), its pins (newest first), and one
/// version with its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetDetail {
    pub name: String,
    pub pinned: Option<u32>,
    pub versions: Vec<AssetVersion>,
    pub pins: Vec<PinRecord>,
    pub used_by: Vec<AssetUse>,
    pub shown: AssetVersion,
}

/// Run one stage alone: with `input` as given, else the input it had in `from_run`, else the
/// input it had in the pipeline's last successful run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageTest {
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_run: Option<RunId>,
}

/// The key a stage's input holds its assets under: `asset.NAME.{version,content}`.
pub const INPUT_KEY: &str = "asset";

/// What a stage using assets receives beside `params` and `stages`.
pub fn input_value(assets: &BTreeMap<String, (u32, std::sync::Arc<str>)>) -> Value {
    Value::Object(
        assets
            .iter()
            .map(|(name, (version, content))| {
                (
                    name.clone(),
                    serde_json::json!({ "version": version, "content": &**content }),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_overrides_parse_or_say_why() {
        assert_eq!(
            AssetRef::parse("prompt@3").unwrap(),
            AssetRef {
                name: "prompt".into(),
                version: Some(3)
            }
        );
        assert_eq!(AssetRef::parse("prompt").unwrap().version, None);
        assert!(AssetRef::parse("prompt@0").unwrap_err().contains("from 1"));
        assert!(AssetRef::parse("../x").unwrap_err().contains("not valid"));
        assert_eq!(parse_override("rules=2").unwrap(), ("rules".into(), 2));
        assert!(
            parse_override("rules")
                .unwrap_err()
                .contains("NAME=VERSION")
        );
        assert!(
            parse_override("rules=x")
                .unwrap_err()
                .contains("whole number")
        );
    }
}
