//! Writing audit entries from handlers: each hook is one call, `audit::record(app, &req,
//! "action", target).await`, and the actor comes from the principal the guard established for
//! this request (see `guard::caller`). Sign-in events name the account tried instead
//! ([`sign_in`]). A failure to write is logged, never shown to the client.

use std::sync::Arc;

use super::guard;
use super::request::Request;
use crate::app::App;
use crate::store::audit::AuditEntry;
use crate::store::{Store, now_ms};

const DAY_MS: i64 = 86_400_000;

/// An action by the request's principal (or anonymous) on `target`.
pub async fn record(app: &Arc<App>, req: &Request, action: &str, target: &str) {
    let (actor, actor_kind) = guard::caller().unwrap_or_else(|| (String::new(), "anonymous"));
    write(app, entry(actor, actor_kind, req, action, target)).await;
}

/// A sign-in event (`login.success`, `login.failure`, `login.locked`) for `username`.
pub async fn sign_in(app: &Arc<App>, req: &Request, username: &str, action: &str) {
    let name: String = username.chars().take(64).collect();
    write(app, entry(name.clone(), "anonymous", req, action, &name)).await;
}

fn entry(actor: String, actor_kind: &str, req: &Request, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        actor,
        actor_kind: actor_kind.to_owned(),
        address: req.client_ip.to_string(),
        action: action.to_owned(),
        target: target.to_owned(),
    }
}

async fn write(app: &Arc<App>, e: AuditEntry) {
    let days = app.config.audit.retention_days;
    let r = app.blocking(move |a| append(&a.store, days, &e)).await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not write an audit entry"),
        Err(e) => tracing::error!(error = %e, "could not write an audit entry"),
    }
}

/// Appends now, pruning entries older than `retention_days` (also used by the offline CLI).
pub fn append(store: &Store, retention_days: u64, e: &AuditEntry) -> Result<(), crate::store::StoreError> {
    let now = now_ms();
    let keep_from = now.saturating_sub(i64::try_from(retention_days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS);
    store.append_audit(now, e, keep_from)
}

/// A retired refresh token used again after the grace time (its family was revoked). Written
/// from the token rotation, which has no request at hand; retention is applied by the next
/// request-made entry.
pub fn token_reuse(store: &Store, username: &str) {
    let e = AuditEntry {
        actor: String::new(),
        actor_kind: "system".into(),
        address: String::new(),
        action: "refresh_token.reuse".into(),
        target: username.to_owned(),
    };
    if let Err(err) = store.append_audit(now_ms(), &e, i64::MIN) {
        tracing::error!(error = %err, "could not write an audit entry");
    }
}
