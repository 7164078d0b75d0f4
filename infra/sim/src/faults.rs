//! Faults by rate: drawn from a seeded generator in request order (one seed, one sequence),
//! then applied to the response. 5xx and malformed bodies replace the handler; truncated
//! bodies and dropped connections mangle its real answer.

use std::sync::Mutex;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::config::{FaultKind, FaultKinds};
use super::errors::ApiError;
use super::limits::Policy;
use super::rng::SplitMix64;
use wire::headers;

/// One drawn fault, with its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ServerError(StatusCode),
    Truncated,
    Malformed { html: bool },
    Dropped,
    RateLimited,
}

impl Fault {
    pub fn kind(self) -> FaultKind {
        match self {
            Fault::ServerError(_) => FaultKind::ServerError,
            Fault::Truncated => FaultKind::Truncated,
            Fault::Malformed { .. } => FaultKind::Malformed,
            Fault::Dropped => FaultKind::Dropped,
            Fault::RateLimited => FaultKind::RateLimited,
        }
    }

    /// Does the fault replace the handler's answer (rather than mangle it)?
    pub fn replaces_handler(self) -> bool {
        matches!(
            self,
            Fault::ServerError(_) | Fault::Malformed { .. } | Fault::RateLimited
        )
    }
}

/// The seeded fault generator.
#[derive(Debug)]
pub struct FaultDice {
    rng: Mutex<SplitMix64>,
}

const SERVER_ERRORS: [StatusCode; 3] = [
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

impl FaultDice {
    pub fn new(seed: u64) -> Self {
        FaultDice {
            rng: Mutex::new(SplitMix64::new(seed ^ 0xFA_17_FA_17)),
        }
    }

    /// Draws whether this request faults (with chance `rate`) and how. Draws nothing at
    /// rate 0, so a portal without faults does not advance the sequence.
    pub fn draw(&self, rate: f64, kinds: FaultKinds) -> Option<Fault> {
        if rate <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if rng.unit() >= rate {
            return None;
        }
        let kinds = kinds.kinds();
        let kind = *kinds.get(rng.below(kinds.len() as u64) as usize)?;
        let variant = rng.next_u64();
        Some(match kind {
            FaultKind::ServerError => ServerError(SERVER_ERRORS[(variant % 3) as usize]),
            FaultKind::Truncated => Fault::Truncated,
            FaultKind::Malformed => Fault::Malformed {
                html: variant.is_multiple_of(2),
            },
            FaultKind::Dropped => Fault::Dropped,
            FaultKind::RateLimited => Fault::RateLimited,
        })
    }
}

use Fault::ServerError;

const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n";
const BROKEN_JSON: &str = r#"{"results":[{"id":"1" "properties":{"hs_object_id":"1"}},]"#;

/// The answer of a fault that replaces the handler.
pub fn replacement(fault: Fault) -> Response {
    match fault {
        ServerError(status) => ApiError::server_error(status).into_response(),
        Fault::RateLimited => {
            let mut response = ApiError::rate_limited(Policy::Secondly).into_response();
            let h = response.headers_mut();
            h.insert(headers::RATE_REMAINING, HeaderValue::from(0u32));
            h.insert(headers::RATE_INTERVAL_MS, HeaderValue::from(1000u32));
            response
        }
        Fault::Malformed { html: true } => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            HTML_PAGE,
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            )],
            BROKEN_JSON,
        )
            .into_response(),
    }
}

/// Mangles the handler's real answer: cut in the middle, or cut and the connection
/// dropped (the body stream fails after its first chunk, so hyper aborts the connection).
pub async fn mangle(fault: Fault, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("reading the response to mangle: {e}")).into_response(),
    };
    let half: Bytes = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match fault {
        Fault::Dropped => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated dropped connection",
                )),
            ];
            Body::from_stream(futures::stream::iter(chunks))
        }
        _ => Body::from(half),
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_respect_rate_and_kinds() {
        let kinds = FaultKinds::from_kinds(&[FaultKind::Truncated, FaultKind::Dropped]);
        let seq = |seed| {
            let d = FaultDice::new(seed);
            (0..200).map(|_| d.draw(0.3, kinds)).collect::<Vec<_>>()
        };
        let a = seq(1);
        assert_eq!(a, seq(1));
        let hits = a.iter().flatten().count();
        assert!((30..90).contains(&hits), "{hits} faults at rate 0.3");
        assert!(a
            .iter()
            .flatten()
            .all(|f| matches!(f, Fault::Truncated | Fault::Dropped)));
        let always = FaultDice::new(2);
        assert!((0..50).all(|_| always.draw(1.0, FaultKinds::ALL).is_some()));
        assert!(FaultDice::new(3).draw(0.0, FaultKinds::ALL).is_none());
    }
}
