//! The OpenID Connect client's HTTP (discovery, keys, code exchange, userinfo) goes through the
//! shared outbound client ([`crate::outbound`]).

use crate::outbound::{HttpError, HttpRequest, HttpResponse, Outbound};

/// Discovery documents, key sets and token responses are a few KiB; anything larger is refused.
pub const MAX_RESPONSE_BYTES: u64 = 512 * 1024;

impl openidconnect::SyncHttpClient for Outbound {
    type Error = HttpError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send(request)
    }
}
