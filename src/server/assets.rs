//! The asset routes: viewers read, admins put and pin, operators roll back. Each change goes
//! down the host's control path like every other.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiResult, ok};
use super::routes::{control, gate, read_body};
use crate::client::Backend;
use crate::model::Command;
use crate::model::asset::MAX_ASSET_BYTES;

/// A put's body may carry an asset at its limit, escaped as JSON.
pub const BODY_LIMIT: usize = MAX_ASSET_BYTES * 2 + 64 * 1024;

pub async fn list(State(s): State<AppState>, _p: Principal) -> ApiResult {
    Ok(ok(s.backend.assets().await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    version: Option<u32>,
}

pub async fn show(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
    q: Result<Query<ShowParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    Ok(ok(s.backend.asset(&name, q.version).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    content: String,
    #[serde(default)]
    pin: bool,
    #[serde(default)]
    reason: String,
}

pub async fn put(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    gate(&s, &p, "asset.put", &format!("asset/{name}")).await?;
    let body: PutBody = read_body(req, &s).await?;
    let cmd = Command::PutAsset {
        name,
        content: body.content,
        pin: body.pin,
    };
    Ok(ok(control(&s, &p, cmd, &body.reason).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    version: u32,
    #[serde(default)]
    reason: String,
}

pub async fn pin(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    gate(&s, &p, "asset.pin", &format!("asset/{name}")).await?;
    let body: PinBody = read_body(req, &s).await?;
    let cmd = Command::PinAsset {
        name,
        version: body.version,
    };
    Ok(ok(control(&s, &p, cmd, &body.reason).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: String,
}

pub async fn rollback(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    gate(&s, &p, "asset.rollback", &format!("asset/{name}")).await?;
    let body: ReasonBody = read_body(req, &s).await?;
    Ok(ok(control(
        &s,
        &p,
        Command::RollbackAsset { name },
        &body.reason,
    )
    .await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    runs: Option<usize>,
}

/// The pipeline lens: each stage's health over the last `runs` runs (1 to 200, default 20).
pub async fn pipeline_stats(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
    q: Result<Query<StatsParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let runs = q.runs.unwrap_or(crate::model::lens::DEFAULT_LENS_RUNS);
    if !(1..=crate::model::lens::MAX_LENS_RUNS).contains(&runs) {
        return Err(super::error::Failure::new(
            crate::model::ErrorCode::Validation,
            format!(
                "`runs` must be from 1 to {}, not {runs}",
                crate::model::lens::MAX_LENS_RUNS
            ),
        )
        .with_details(serde_json::json!({ "field": "runs" })));
    }
    Ok(ok(s.backend.pipeline_stats(&name, runs).await?))
}
