//! HubSpot's error responses: the JSON body of `wire::ErrorBody`, with a
//! fresh correlation id, for every way the simulated API refuses a request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wire::ErrorBody;

use super::limits::Policy;

/// A refusal: status and HubSpot's body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in `Result`s on the hot path, where a large `Err` costs every call.
    pub body: Box<ErrorBody>,
}

fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl ApiError {
    fn new(status: StatusCode, category: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody::new(category, message, correlation_id())),
        }
    }

    /// 400: the request is not one HubSpot accepts.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// 404: an unknown object type or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    /// 414: the request target is longer than `URL_LIMIT_CHARS` (HubSpot's edge answers this
    /// before the API sees the request; its body may not be JSON there, so clients must not
    /// rely on it).
    pub fn uri_too_long(len: usize) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!(
                "URI Too Long: the request URL is {len} characters, over the limit of {}; \
                 ask for fewer properties per request or use batch read",
                super::gate::URL_LIMIT_CHARS
            ),
        )
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication \
             and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    }

    /// 429 with HubSpot's rate-limit body (`errorType` and `policyName`, no category).
    pub fn rate_limited(policy: Policy) -> Self {
        let mut body = ErrorBody::new("", policy.message(), correlation_id());
        body.category = None;
        body.error_type = Some("RATE_LIMIT".into());
        body.policy_name = Some(policy.name().into());
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Box::new(body),
        }
    }

    /// A 5xx as HubSpot answers under load.
    pub fn server_error(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("Server Error");
        Self::new(
            status,
            "INTERNAL_ERROR",
            format!("{reason}: the request could not be completed, retry"),
        )
    }

    /// 500 for the simulator's own failures (a panicked task).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(*self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_body_is_hubspots() {
        let e = ApiError::rate_limited(Policy::TenSecondlyRolling);
        let json = serde_json::to_value(&e.body).unwrap();
        let keys: Vec<&String> = json.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(
            keys,
            ["correlationId", "errorType", "message", "policyName", "status"]
        );
        assert_eq!(json["policyName"], "TEN_SECONDLY_ROLLING");
        assert_eq!(
            json["message"],
            "You have reached your ten_secondly_rolling limit."
        );
    }
}
