//! The demo's history: on the first start of the bundled demo, `fraud-model` gets one run
//! with version 1 of its rule table and one with a stricter, slower version 2, so Compare,
//! Assets and Pipelines show a real change from the first minute. Every step is opsdeck's
//! own command down the control path, audited with a reason that says it is the demo's.

use super::Host;
use crate::model::{Actor, Command, StartRun};

/// The demo pipeline and asset.
const PIPELINE: &str = "fraud-model";
const ASSET: &str = "fraud-rules";

/// Version 2 of the demo's rule table: a lower threshold and one more rule, slower to run.
const RULES_V2: &str = include_str!("../../assets/demo-history/fraud-rules.v2.json");

/// Adds the demo's history unless it (or anything after it) is there already.
pub async fn prime(host: &Host) {
    let Ok(detail) = host.asset(ASSET, None).await else {
        return;
    };
    if detail.versions.len() != 1 || host.workspace().pipeline(PIPELINE).is_err() {
        return;
    }
    let actor = Actor::automatic();
    let start = || {
        Command::StartRun(StartRun {
            pipeline: PIPELINE.into(),
            ..StartRun::default()
        })
    };
    let steps = [
        (
            start(),
            "demo: a run with version 1 of the rule table, to compare against",
        ),
        (
            Command::PutAsset {
                name: ASSET.into(),
                content: RULES_V2.into(),
                pin: true,
            },
            "demo: a stricter rule table (threshold 0.85, one more rule); roll it back with u in Assets",
        ),
        (start(), "demo: a run with version 2 of the rule table"),
    ];
    for (cmd, reason) in steps {
        if let Err(e) = host.control(cmd, &actor, reason).await {
            tracing::warn!(error = %e, "could not set up the demo's asset history");
            return;
        }
    }
}
