//! Read queries about assets: the list, one asset's versions and pins, a version's content,
//! and the pinned version of each.

use std::collections::BTreeMap;

use super::Result;
use super::db::{Dialect, Row, args};
use super::queries::{Reader, parse_status, ts0};
use crate::model::asset::{AssetDetail, AssetVersion, MAX_VERSIONS_LISTED, PinRecord};
use crate::model::{ApiError, ErrorCode, Timestamp};

/// The sentence for an asset the store does not have, naming the ones it has.
pub fn no_asset(name: &str, known: &[String]) -> ApiError {
    let valid = if known.is_empty() {
        "the store has no assets yet (put files in the workspace's assets/ directory, or `opsdeck assets put NAME FILE`)".to_string()
    } else {
        format!("assets: {}", known.join(", "))
    };
    ApiError::new(
        ErrorCode::NotFound,
        format!("there is no asset `{name}`; {valid}"),
    )
}

/// One asset as the list shows it, before the host adds where it is used.
pub struct AssetRow {
    pub name: String,
    pub pinned: Option<u32>,
    pub latest: u32,
    pub versions: u32,
    pub updated_at: Timestamp,
}

const PINNED: &str = "(SELECT version FROM asset_pins p WHERE p.name = a.name AND p.undone = 0 ORDER BY p.id DESC LIMIT 1)";

fn version(mut r: Row) -> Result<AssetVersion> {
    Ok(AssetVersion {
        version: r.u32(0)?,
        created_at: ts0(r.opt_text(1)?),
        actor: r.text(2)?,
        reason: r.text(3)?,
        bytes: r.i64(4)?.unsigned_abs(),
        content: None,
    })
}

impl Reader {
    /// The names of every asset.
    pub fn asset_names(&self) -> Result<Vec<String>> {
        self.rows("SELECT DISTINCT name FROM assets ORDER BY name", &[])?
            .into_iter()
            .map(|mut r| r.text(0))
            .collect()
    }

    /// One asset with `version` (else the pinned, else the newest) and its content, and
    /// `used_by` left for the caller, who knows the pipelines; or why there is none.
    pub fn asset_detail(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Result<AssetDetail, ApiError>> {
        let latest = self.asset_latest(name)?;
        if latest == 0 {
            return Ok(Err(no_asset(name, &self.asset_names()?)));
        }
        let pins = self.asset_pins(name)?;
        let pinned = pins.iter().find(|p| !p.undone).map(|p| p.version);
        let want = version.or(pinned).unwrap_or(latest);
        let Some(shown) = self.asset_version(name, want)? else {
            return Ok(Err(ApiError::new(
                ErrorCode::NotFound,
                format!("asset `{name}` has no version {want}; it has versions 1 to {latest}"),
            )));
        };
        Ok(Ok(AssetDetail {
            name: name.to_string(),
            pinned,
            versions: self.asset_versions(name)?,
            pins,
            used_by: Vec::new(),
            shown,
        }))
    }

    /// Every asset, by name.
    pub fn assets(&self) -> Result<Vec<AssetRow>> {
        let greatest = match self.dialect()? {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        };
        let sql = format!(
            "SELECT a.name, {PINNED}, MAX(a.version), COUNT(*),
                {greatest}(COALESCE((SELECT MAX(at) FROM asset_pins p WHERE p.name = a.name), ''), MAX(a.created_at))
             FROM assets a GROUP BY a.name ORDER BY a.name"
        );
        self.rows(&sql, &[])?
            .into_iter()
            .map(|mut r| {
                Ok(AssetRow {
                    name: r.text(0)?,
                    pinned: r.opt_i64(1)?.and_then(|v| u32::try_from(v).ok()),
                    latest: r.u32(2)?,
                    versions: r.u32(3)?,
                    updated_at: ts0(r.opt_text(4)?),
                })
            })
            .collect()
    }

    /// The version of each asset runs use now.
    pub fn pinned_assets(&self) -> Result<BTreeMap<String, u32>> {
        let rows = self.rows(
            &format!("SELECT a.name, {PINNED} FROM (SELECT DISTINCT name FROM assets) a"),
            &[],
        )?;
        let mut out = BTreeMap::new();
        for mut r in rows {
            if let Some(v) = r.opt_i64(1)?.and_then(|v| u32::try_from(v).ok()) {
                out.insert(r.text(0)?, v);
            }
        }
        Ok(out)
    }

    /// An asset's versions, newest first, without content (at most [`MAX_VERSIONS_LISTED`]).
    pub fn asset_versions(&self, name: &str) -> Result<Vec<AssetVersion>> {
        self.rows(
            "SELECT version, created_at, actor, reason, OCTET_LENGTH(content)
             FROM assets WHERE name = ?1 ORDER BY version DESC LIMIT ?2",
            args![name, MAX_VERSIONS_LISTED],
        )?
        .into_iter()
        .map(version)
        .collect()
    }

    /// One version with its content.
    pub fn asset_version(&self, name: &str, version: u32) -> Result<Option<AssetVersion>> {
        let Some(mut r) = self.row(
            "SELECT version, created_at, actor, reason, 0, content FROM assets WHERE name = ?1 AND version = ?2",
            args![name, version],
        )?
        else {
            return Ok(None);
        };
        let content = r.text(5)?;
        let mut v = self::version(r)?;
        v.bytes = content.len() as u64;
        v.content = Some(content);
        Ok(Some(v))
    }

    /// The newest version number of an asset (0 when there is none).
    pub fn asset_latest(&self, name: &str) -> Result<u32> {
        self.row(
            "SELECT COALESCE(MAX(version), 0) FROM assets WHERE name = ?1",
            args![name],
        )?
        .map_or(Ok(0), |mut r| r.u32(0))
    }

    /// The version holding exactly `content`, if one does (seeding never stores a duplicate).
    pub fn asset_with_content(&self, name: &str, content: &str) -> Result<Option<u32>> {
        self.row(
            "SELECT version FROM assets WHERE name = ?1 AND content = ?2 ORDER BY version DESC LIMIT 1",
            args![name, content],
        )?
        .map(|mut r| r.u32(0))
        .transpose()
    }

    /// An asset's pins, newest first (at most [`MAX_VERSIONS_LISTED`]).
    pub fn asset_pins(&self, name: &str) -> Result<Vec<PinRecord>> {
        self.rows(
            "SELECT version, at, actor, reason, undone FROM asset_pins WHERE name = ?1 ORDER BY id DESC LIMIT ?2",
            args![name, MAX_VERSIONS_LISTED],
        )?
        .into_iter()
        .map(|mut r| {
            Ok(PinRecord {
                version: r.u32(0)?,
                at: ts0(r.opt_text(1)?),
                actor: r.text(2)?,
                reason: r.text(3)?,
                undone: r.bool(4)?,
            })
        })
        .collect()
    }

    /// The versions a rollback would move between: the current pin and the live pin before it.
    pub fn pin_and_previous(&self, name: &str) -> Result<(Option<u32>, Option<u32>)> {
        let live = self
            .rows(
                "SELECT version FROM asset_pins WHERE name = ?1 AND undone = 0 ORDER BY id DESC LIMIT 2",
                args![name],
            )?
            .into_iter()
            .map(|mut r| r.u32(0))
            .collect::<Result<Vec<u32>>>()?;
        Ok((live.first().copied(), live.get(1).copied()))
    }
}

impl Reader {
    /// The input stage `stage` had in its last attempt of run `from` (when given), else of
    /// the pipeline's newest successful production run; with that run's id.
    pub fn stage_input(
        &self,
        pipeline: &str,
        stage: &str,
        from: Option<crate::model::RunId>,
    ) -> Result<Option<(crate::model::RunId, String)>> {
        let run: Option<i64> = match from {
            Some(id) => Some(id.0),
            None => self
                .row(
                    "SELECT r.id FROM runs r JOIN stages s ON s.run_id = r.id AND s.stage_id = ?2
                     WHERE r.pipeline = ?1 AND r.status = 'succeeded' AND r.test = 0
                     ORDER BY r.id DESC LIMIT 1",
                    args![pipeline, stage],
                )?
                .map(|mut r| r.i64(0))
                .transpose()?,
        };
        let Some(run) = run else {
            return Ok(None);
        };
        let input = self
            .row(
                "SELECT input FROM attempts WHERE run_id = ?1 AND stage_id = ?2 ORDER BY n DESC LIMIT 1",
                args![run, stage],
            )?
            .map(|mut r| r.text(0))
            .transpose()?;
        Ok(input.map(|i| (crate::model::RunId(run), i)))
    }
}

impl Reader {
    /// The pipeline's last `n` production runs (newest first) and their attempts, without
    /// inputs or outputs.
    pub fn lens_rows(
        &self,
        pipeline: &str,
        n: usize,
    ) -> Result<(
        Vec<crate::model::RunId>,
        Vec<crate::model::lens::AttemptRow>,
    )> {
        let ids = self
            .rows(
                "SELECT id FROM runs WHERE pipeline = ?1 AND test = 0 ORDER BY id DESC LIMIT ?2",
                args![pipeline, n],
            )?
            .into_iter()
            .map(|mut r| r.i64(0))
            .collect::<Result<Vec<i64>>>()?;
        let (Some(&newest), Some(&oldest)) = (ids.first(), ids.last()) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let rows = self
            .rows(
                "SELECT a.run_id, a.stage_id, a.n, a.status, a.started_at, a.duration_ms, a.error_code, s.status
                 FROM attempts a JOIN stages s ON s.run_id = a.run_id AND s.stage_id = a.stage_id
                 JOIN runs r ON r.id = a.run_id
                 WHERE r.pipeline = ?1 AND r.test = 0 AND a.run_id BETWEEN ?2 AND ?3",
                args![pipeline, oldest, newest],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(crate::model::lens::AttemptRow {
                    run: crate::model::RunId(r.i64(0)?),
                    stage: r.text(1)?,
                    n: r.u32(2)?,
                    status: parse_status(&r.text(3)?)?,
                    started_at: ts0(r.opt_text(4)?),
                    duration_ms: r.opt_i64(5)?,
                    error: r.opt_text(6)?,
                    stage_status: parse_status(&r.text(7)?)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok((ids.into_iter().map(crate::model::RunId).collect(), rows))
    }
}
