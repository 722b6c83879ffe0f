//! The one error type of the HTTP API: every failure becomes `{"error": "..."}` with a status.
//! Internal details go to the log, never to the client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::auth::lockout::retry_secs;
use crate::store::StoreError;
use crate::store::teams::TeamError;
use crate::store::users::UserError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
}

/// Attached to error responses so the access log can say what went wrong.
#[derive(Clone, Debug)]
pub struct ErrorNote(pub String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after: None, allow: None }
    }

    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }

    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }

    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }

    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }

    pub fn unprocessable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, m)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        ApiError { allow: Some(allow), ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") }
    }

    /// 429 with the reference's message and a `Retry-After` header.
    pub fn locked(retry_after: Duration) -> Self {
        let secs = retry_secs(retry_after).max(1);
        ApiError {
            retry_after: Some(secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, format!("too many attempts, retry after {secs}s"))
        }
    }

    /// 503 with a `Retry-After` header: a bounded queue is full; the caller may retry soon.
    pub fn busy(message: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// The same status and headers with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Any status with a `Retry-After` header.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 500 with a generic message; `detail` is logged.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error while handling a request");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.message });
        let mut resp = super::response::json(self.status, &body);
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        }
        resp.extensions_mut().insert(ErrorNote(self.message));
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CommitFailed(_) => {
                tracing::error!(error = %e, "storage failure");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; the server is restarting")
            }
            other => Self::internal(other),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound => Self::not_found("user not found"),
            UserError::DuplicateName => Self::conflict("username already exists"),
            UserError::IdentityTaken => {
                Self::conflict("this OIDC identity is already linked to another account")
            }
            UserError::LastAdmin => Self::conflict("cannot remove, demote or disable the last active admin"),
            UserError::Store(s) => s.into(),
        }
    }
}

impl From<TeamError> for ApiError {
    fn from(e: TeamError) -> Self {
        match e {
            TeamError::NotFound | TeamError::UserNotFound | TeamError::NotMember => {
                Self::not_found(e.to_string())
            }
            TeamError::DuplicateName | TeamError::AlreadyMember => Self::conflict(e.to_string()),
            TeamError::Store(s) => s.into(),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("background task failed: {e}"))
    }
}
