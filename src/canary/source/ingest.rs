//! The `ingest` source: an external router (nginx, Envoy, a mesh) posts what it saw in
//! batches (`POST /v1/canaries/NAME/observations`) and reads the weight to route by.

use std::ops::Range;
use std::sync::Arc;

use toml::de::DeTable;

use super::{Kind, Source};
use crate::diag::Checker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingest;

impl Source for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn takes_observations(&self) -> bool {
        true
    }
}

#[allow(clippy::unnecessary_wraps)] // the signature every source's parser shares
fn parse(
    _c: &mut Checker<'_>,
    _table: Option<&DeTable<'_>>,
    _span: &Range<usize>,
    _ctx: &str,
) -> Option<Arc<dyn Source>> {
    Some(Arc::new(Ingest))
}

pub const KIND: Kind = Kind {
    name: "ingest",
    table: None,
    parse,
};
