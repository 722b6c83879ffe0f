//! JSON shapes shared by the self-service and admin endpoints, and parsing of ids in paths.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::store::devices::Device;
use crate::store::rfc3339;
use crate::store::users::User;

/// An id from the path. Anything that is not a UUID cannot name a record: 404 with `what`.
pub fn path_uuid(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::not_found(what))
}

pub fn user(u: &User) -> Value {
    json!({
        "id": u.uuid.to_string(),
        "username": u.username,
        "role": u.role.as_str(),
        "status": u.status.as_str(),
        "auth": if u.oidc_subject.is_some() { "oidc" } else { "password" },
        "created_at": u.created_at,
    })
}

/// A device with both key sets (compat.md row 16): the toki client's `id`, `name`, `device_key`,
/// `last_seen_at` (epoch seconds) and the reference's `device_id`, `device_name`, `last_seen`
/// (RFC 3339). Never seen: `null` for both times.
pub fn device(d: &Device) -> Value {
    let id = d.uuid.to_string();
    json!({
        "id": id,
        "name": d.name,
        "device_key": d.key,
        "last_seen_at": d.last_seen_at,
        "device_id": id,
        "device_name": d.name,
        "last_seen": d.last_seen_at.and_then(rfc3339),
        "created_at": d.created_at,
    })
}
