//! Which asset versions a run uses, and isolated stage tests. A run's versions are resolved
//! once, when it is created (an override, else the version its stage names, else the pinned
//! one), and stored with it, so a pin that changes mid-run, a retry or a resume never mixes
//! versions within a run.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::engine::Engine;
use super::error::{Result, RuntimeError};
use super::spec::Pipeline;
use crate::model::asset::{AssetVersions, INPUT_KEY, Overrides, StageTest};

/// Each stage's asset versions, by stage id (stages without assets are left out).
pub(crate) type Resolved = BTreeMap<String, AssetVersions>;

/// The versions each stage of `p` uses under `overrides`, or a sentence naming what is
/// missing: an asset the store does not have, a version that does not exist, an override of
/// an asset no stage uses.
pub(crate) async fn resolve(e: &Engine, p: &Pipeline, overrides: &Overrides) -> Result<Resolved> {
    let used: Vec<&str> = p
        .stages
        .iter()
        .flat_map(|s| s.assets.iter().map(|a| a.name.as_str()))
        .collect();
    for name in overrides.keys() {
        if !used.contains(&name.as_str()) {
            let mut names: Vec<&str> = used.clone();
            names.sort_unstable();
            names.dedup();
            let valid = if names.is_empty() {
                format!("`{}` uses no assets", p.name)
            } else {
                format!("`{}` uses {}", p.name, names.join(", "))
            };
            return Err(RuntimeError::BadInput(format!(
                "the override names asset `{name}`, which no stage of the run uses; {valid}"
            )));
        }
    }
    if let Some((name, _)) = overrides.iter().find(|(_, v)| **v == 0) {
        return Err(RuntimeError::BadInput(format!(
            "the override of asset `{name}` names version 0; a version is a whole number from 1"
        )));
    }
    if used.is_empty() {
        return Ok(Resolved::new());
    }
    let (pinned, latest) = e
        .reads
        .with({
            let names: Vec<String> = used.iter().map(|s| (*s).to_string()).collect();
            move |r| {
                let pinned = r.pinned_assets()?;
                let mut latest = BTreeMap::new();
                for n in &names {
                    let v = r.asset_latest(n)?;
                    latest.insert(n.clone(), v);
                }
                Ok((pinned, latest))
            }
        })
        .await?;
    let mut out = Resolved::new();
    for s in &p.stages {
        let mut versions = AssetVersions::new();
        for a in &s.assets {
            let newest = latest.get(&a.name).copied().unwrap_or(0);
            if newest == 0 {
                return Err(RuntimeError::BadInput(format!(
                    "stage `{}` of `{}` uses asset `{}`, which the store does not have; add assets/{}.txt to the workspace or `opsdeck assets put {} FILE`",
                    s.id, p.name, a.name, a.name, a.name
                )));
            }
            let (version, why) = match (overrides.get(&a.name), a.version) {
                (Some(v), _) => (*v, "the override".to_string()),
                (None, Some(v)) => (v, format!("stage `{}`", s.id)),
                (None, None) => match pinned.get(&a.name) {
                    Some(v) => (*v, "the pin".to_string()),
                    None => {
                        return Err(RuntimeError::BadInput(format!(
                            "asset `{}` has no pinned version (every pin was rolled back); pin one with `opsdeck assets pin {} N --reason R` or pass --override {}=N",
                            a.name, a.name, a.name
                        )));
                    }
                },
            };
            if version > newest {
                return Err(RuntimeError::BadInput(format!(
                    "{why} asks for version {version} of asset `{}`, which has versions 1 to {newest}",
                    a.name
                )));
            }
            versions.insert(a.name.clone(), version);
        }
        if !versions.is_empty() {
            out.insert(s.id.clone(), versions);
        }
    }
    Ok(out)
}

/// The contents a driver hands its stages, loaded once per run.
pub(crate) async fn load(
    e: &Engine,
    resolved: &Resolved,
) -> Result<BTreeMap<String, BTreeMap<String, (u32, Arc<str>)>>> {
    let wanted: Vec<(String, u32)> = {
        let mut w: Vec<(String, u32)> = resolved
            .values()
            .flat_map(|m| m.iter().map(|(n, v)| (n.clone(), *v)))
            .collect();
        w.sort();
        w.dedup();
        w
    };
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let contents = e
        .reads
        .with(move |r| {
            let mut out = BTreeMap::new();
            for (name, v) in &wanted {
                if let Some(av) = r.asset_version(name, *v)? {
                    out.insert(
                        (name.clone(), *v),
                        Arc::<str>::from(av.content.unwrap_or_default()),
                    );
                }
            }
            Ok(out)
        })
        .await?;
    let mut out = BTreeMap::new();
    for (stage, versions) in resolved {
        let mut m = BTreeMap::new();
        for (name, v) in versions {
            let content = contents.get(&(name.clone(), *v)).cloned().ok_or_else(|| {
                RuntimeError::Io(format!(
                    "version {v} of asset `{name}` is missing from the store"
                ))
            })?;
            m.insert(name.clone(), (*v, content));
        }
        out.insert(stage.clone(), m);
    }
    Ok(out)
}

/// A test run's pipeline (the one stage, needing nothing) and the input its stage gets,
/// without assets (the driver adds the versions this test uses).
pub(crate) async fn test_run(e: &Engine, p: &Pipeline, t: &StageTest) -> Result<(Pipeline, Value)> {
    let Some(stage) = p.stages.iter().find(|s| s.id == t.stage) else {
        let ids: Vec<&str> = p.stages.iter().map(|s| s.id.as_str()).collect();
        return Err(RuntimeError::BadInput(format!(
            "`{}` has no stage `{}`; its stages: {}",
            p.name,
            t.stage,
            ids.join(", ")
        )));
    };
    if t.input.is_some() && t.from_run.is_some() {
        return Err(RuntimeError::BadInput(
            "give the test's input or a run to take it from (--input or --from-run), not both"
                .into(),
        ));
    }
    let mut input = match &t.input {
        Some(v) => v.clone(),
        None => {
            let (pipeline, stage_id, from) = (p.name.clone(), stage.id.clone(), t.from_run);
            let found = e
                .reads
                .with(move |r| r.stage_input(&pipeline, &stage_id, from))
                .await?;
            match (found, t.from_run) {
                (Some((_, text)), _) => serde_json::from_str(&text).map_err(|_| {
                    RuntimeError::BadInput(format!(
                        "the recorded input of stage `{}` was stored truncated; give the input with --input FILE",
                        stage.id
                    ))
                })?,
                (None, Some(run)) => {
                    let exists = e.reads.with(move |r| r.run_summary(run)).await?.is_some();
                    return Err(RuntimeError::BadInput(if exists {
                        format!(
                            "run {run} has no attempt of stage `{}` to take the input from",
                            stage.id
                        )
                    } else {
                        format!("there is no run {run}; list runs with `opsdeck runs`")
                    }));
                }
                (None, None) => {
                    return Err(RuntimeError::BadInput(format!(
                        "`{}` has no successful run to take stage `{}`'s input from; give one with --input FILE or --from-run RUN",
                        p.name, stage.id
                    )));
                }
            }
        }
    };
    let Value::Object(map) = &mut input else {
        return Err(RuntimeError::BadInput(
            "a stage's input is a JSON object, like {\"params\": {}, \"stages\": {}}".into(),
        ));
    };
    map.remove(INPUT_KEY);
    let mut one = p.clone();
    let mut s = stage.clone();
    s.needs.clear();
    one.stages = vec![s];
    one.schedule = None;
    Ok((one, input))
}
