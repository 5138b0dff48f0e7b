use serde::{Deserialize, Serialize};

use super::status::string_enum;

string_enum!(
    /// Why a request failed, shared by the CLI, the API and the dashboard. Each code has one
    /// HTTP status and one CLI exit code.
    ErrorCode, "error code" {
        Validation => "validation",
        Unauthenticated => "unauthenticated",
        Forbidden => "forbidden",
        NotFound => "not_found",
        Conflict => "conflict",
        PayloadTooLarge => "payload_too_large",
        RateLimited => "rate_limited",
        Upstream => "upstream",
        Internal => "internal",
    }
);

/// A failed request: a code and a sentence fit to show a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}
