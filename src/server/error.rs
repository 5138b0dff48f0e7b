//! The envelope every response wears, and errors as responses: a code, an HTTP status and a
//! sentence, never a stack trace, an internal path or a secret.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{ApiError, ErrorCode};

/// The HTTP status of each error code (the README's API reference lists them).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Validation => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Upstream => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error on its way out, with optional details (the field at fault, a retry time).
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: ApiError,
    pub details: Value,
    pub retry_after_s: Option<u64>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            error: ApiError::new(code, message),
            details: json!({}),
            retry_after_s: None,
        }
    }

    #[must_use]
    pub fn with_details(mut self, details: Value) -> Failure {
        self.details = details;
        self
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error,
            details: json!({}),
            retry_after_s: None,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status_of(self.error.code);
        // Internal errors are logged in full and answered with a sentence that leaks nothing.
        let message = if self.error.code == ErrorCode::Internal {
            tracing::error!(error = %self.error.message, "internal error answering a request");
            "the server could not complete the request; the server log has the details".to_string()
        } else {
            self.error.message
        };
        let body = json!({
            "data": null,
            "error": { "code": self.error.code, "message": message, "details": self.details },
        });
        let mut r = (status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    }
}

/// A successful answer in the envelope.
pub fn ok<T: Serialize>(data: T) -> Response {
    json_response(envelope(&data))
}

/// The envelope of `data`, serialized once, straight from the value (no intermediate tree).
pub fn envelope<T: Serialize>(data: &T) -> axum::body::Bytes {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        data: &'a T,
        error: Option<()>,
    }
    match serde_json::to_vec(&Envelope { data, error: None }) {
        Ok(bytes) => bytes.into(),
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be serialized");
            axum::body::Bytes::from_static(
                br#"{"data":null,"error":{"code":"internal","message":"the server could not complete the request; the server log has the details","details":null}}"#,
            )
        }
    }
}

/// A 200 with a JSON body already serialized.
pub fn json_response(body: axum::body::Bytes) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub type ApiResult = Result<Response, Failure>;

/// A JSON body that could not be read: 400 naming what was wrong (or 413 when too large).
impl From<JsonRejection> for Failure {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Failure::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the server accepts (`server.body_limit`)",
            );
        }
        let text = r.body_text();
        // serde's message names the field ("unknown field `x`", "missing field `reason`"); a
        // body that is not JSON at all has no field at fault.
        let field = matches!(r, JsonRejection::JsonDataError(_))
            .then(|| text.split('`').nth(1).map(str::to_string))
            .flatten();
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "the request body must be JSON with `content-type: application/json`".to_string()
            }
            _ => format!(
                "the request body is not valid: {}",
                text.trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            ),
        };
        Failure::new(ErrorCode::Validation, message).with_details(json!({ "field": field }))
    }
}

impl From<QueryRejection> for Failure {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let detail = text.trim_start_matches("Failed to deserialize query string: ");
        // serde_urlencoded names the parameter as `name: problem` or in backquotes.
        let field = detail
            .split_once(": ")
            .map(|(f, _)| f.to_string())
            .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .or_else(|| detail.split('`').nth(1).map(str::to_string));
        // serde's words for a number that does not parse say nothing of what would.
        let number = ["invalid digit", "too large", "cannot parse integer"]
            .iter()
            .any(|w| detail.contains(w));
        let message = match (&field, number) {
            (Some(f), true) => format!(
                "`{f}` in the query string must be a whole number of 0 or more (and not too large)"
            ),
            _ => format!("the query string is not valid: {detail}"),
        };
        Failure::new(ErrorCode::Validation, message).with_details(json!({ "field": field }))
    }
}

/// A JSON object body deserialized into `T`; every failure is a 400 (or 413) naming the field
/// at fault in `details.field`.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        let Json(value) = Json::<Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(Failure::new(
                ErrorCode::Validation,
                "the request body must be a JSON object",
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(|e| {
                let inner = e.inner().to_string();
                // serde names unknown and missing fields in backticks; type errors get the path.
                let named = ["unknown field `", "missing field `"]
                    .iter()
                    .find_map(|p| inner.split_once(p))
                    .and_then(|(_, rest)| rest.split('`').next())
                    .map(str::to_string);
                let path = e.path().to_string();
                let field = named.or_else(|| (path != ".").then_some(path));
                let message = match &field {
                    Some(f) if !inner.contains(&format!("`{f}`")) => format!("`{f}`: {inner}"),
                    _ => inner,
                };
                Failure::new(
                    ErrorCode::Validation,
                    format!("the request body is not valid: {message}"),
                )
                .with_details(json!({ "field": field }))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code has its documented status, the envelope, and internal errors leak nothing.
    #[test]
    fn every_code_answers_in_the_envelope_with_its_status() {
        let want = [
            (ErrorCode::Validation, 400),
            (ErrorCode::Unauthenticated, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::Upstream, 503),
            (ErrorCode::Internal, 500),
        ];
        assert_eq!(want.len(), ErrorCode::ALL.len());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (code, status) in want {
            let secret = "/srv/opsdeck/.opsdeck/state.db: disk I/O error";
            let r = Failure::new(code, secret).into_response();
            assert_eq!(r.status().as_u16(), status, "{code}");
            let body = rt
                .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
                .unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(v["data"].is_null());
            assert_eq!(v["error"]["code"], code.as_str());
            let message = v["error"]["message"].as_str().unwrap();
            if code == ErrorCode::Internal {
                assert!(
                    !message.contains("/srv"),
                    "internal errors never show paths: {message}"
                );
            } else {
                assert_eq!(message, secret);
            }
        }
    }
}
