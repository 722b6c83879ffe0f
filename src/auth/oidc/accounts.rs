//! Which account a verified identity signs in to. An account is found by (issuer, subject) only;
//! the first sign-in creates one under the registration mode; group membership decides access
//! (`allowed_groups`) and the admin role (`admin_groups`) at every sign-in.

use super::Identity;
use crate::auth::rules;
use crate::config::{OidcConfig, RegistrationMode};
use crate::store::users::{NewUser, Role, User, UserError, UserStatus, oidc_key};
use crate::store::{Store, StoreError};

/// A sign-in that ends without tokens, with the sentence shown to the person.
#[derive(Debug)]
pub enum Refusal {
    NotInAllowedGroup,
    RegistrationClosed,
    /// Created or found, waiting for an admin.
    Pending,
    Disabled,
}

impl Refusal {
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NotInAllowedGroup => {
                "Your account at the identity provider is not in a group allowed to use this server. Ask an administrator for access."
            }
            Refusal::RegistrationClosed => {
                "No account on this server is linked to your identity, and registration is closed. Ask an administrator to create or link your account."
            }
            Refusal::Pending => {
                "Your account is waiting for an administrator's approval. Sign in again once it is approved."
            }
            Refusal::Disabled => "This account is disabled. Ask an administrator.",
        }
    }
}

#[derive(Debug)]
pub enum SignInError {
    Refused(Refusal),
    Store(StoreError),
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        SignInError::Store(e)
    }
}

impl From<UserError> for SignInError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Store(s) => SignInError::Store(s),
            other => SignInError::Store(StoreError::Corrupt(other.to_string())),
        }
    }
}

fn in_any(groups: &[String], wanted: &[String]) -> bool {
    groups.iter().any(|g| wanted.contains(g))
}

/// The account for `identity`, created if this is its first sign-in and registration allows.
/// Blocking.
pub fn sign_in(
    store: &Store,
    cfg: &OidcConfig,
    mode: RegistrationMode,
    identity: &Identity,
) -> Result<User, SignInError> {
    let groups = identity.groups.as_deref().unwrap_or(&[]);
    if !cfg.allowed_groups.is_empty() && !in_any(groups, &cfg.allowed_groups) {
        return Err(SignInError::Refused(Refusal::NotInAllowedGroup));
    }
    let wants_admin = in_any(groups, &cfg.admin_groups);
    let key = oidc_key(&identity.issuer, &identity.subject);
    let user = match store.user_by_oidc(&key)? {
        Some(user) => user,
        None => register(store, mode, identity, key, wants_admin)?,
    };
    match user.status {
        UserStatus::Active => {}
        UserStatus::Pending => return Err(SignInError::Refused(Refusal::Pending)),
        UserStatus::Disabled => return Err(SignInError::Refused(Refusal::Disabled)),
    }
    if cfg.admin_groups.is_empty() {
        return Ok(user);
    }
    let role = if wants_admin { Role::Admin } else { Role::User };
    if user.role == role {
        return Ok(user);
    }
    match store.update_user(user.id, |u| u.role = role) {
        Ok(u) => {
            tracing::info!(user = %u.username, role = role.as_str(), "role set from the identity provider's groups");
            Ok(u)
        }
        Err(UserError::LastAdmin) => {
            tracing::warn!(user = %user.username, "left the admin groups but stays admin: it is the last active admin");
            Ok(user)
        }
        Err(e) => Err(e.into()),
    }
}

fn register(
    store: &Store,
    mode: RegistrationMode,
    identity: &Identity,
    key: String,
    admin: bool,
) -> Result<User, SignInError> {
    let status = match mode {
        RegistrationMode::Closed => return Err(SignInError::Refused(Refusal::RegistrationClosed)),
        RegistrationMode::Approval => UserStatus::Pending,
        RegistrationMode::Open => UserStatus::Active,
    };
    let base = base_username(identity);
    let role = if admin { Role::Admin } else { Role::User };
    for n in 1..=1000u32 {
        let name = numbered(&base, n);
        if store.user_by_name(&name)?.is_some() {
            continue;
        }
        let new =
            NewUser { username: name, role, status, password_hash: None, oidc_subject: Some(key.clone()) };
        match store.create_user(new) {
            Ok(user) => {
                tracing::info!(user = %user.username, status = status.as_str(), "account created at first OIDC sign-in");
                return Ok(user);
            }
            // Taken meanwhile: try the next number.
            Err(UserError::DuplicateName) => continue,
            // The same person signing in twice at once: the other sign-in created it.
            Err(UserError::IdentityTaken) => {
                return store.user_by_oidc(&key)?.ok_or(SignInError::Store(StoreError::Corrupt(
                    "OIDC identity index points nowhere".into(),
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SignInError::Store(StoreError::Corrupt(format!("no free username like `{base}`"))))
}

/// Keeps the characters usernames allow, at most 32.
fn sanitise(raw: &str) -> String {
    raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(32).collect()
}

/// The configured claim, else the email's local part, else `user`; always a valid username.
pub fn base_username(identity: &Identity) -> String {
    let candidates = [
        identity.username.as_deref().map(sanitise),
        identity.email.as_deref().and_then(|e| e.split('@').next()).map(sanitise),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|name| rules::check_username(name).is_ok())
        .unwrap_or_else(|| "user".to_owned())
}

/// `base`, then `base2`, `base3`, … (shortened to stay within 32 characters).
fn numbered(base: &str, n: u32) -> String {
    if n == 1 {
        return base.to_owned();
    }
    let suffix = n.to_string();
    let keep = 32 - suffix.len();
    format!("{}{suffix}", &base[..base.len().min(keep)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(username: Option<&str>, email: Option<&str>) -> Identity {
        Identity {
            issuer: "https://idp".into(),
            subject: "s".into(),
            username: username.map(str::to_owned),
            email: email.map(str::to_owned),
            groups: None,
        }
    }

    #[test]
    fn usernames_from_claims() {
        assert_eq!(base_username(&identity(Some("alice"), None)), "alice");
        assert_eq!(base_username(&identity(Some("Ali Ce!"), None)), "AliCe");
        assert_eq!(base_username(&identity(Some("ü"), Some("bob.smith+x@example.com"))), "bob.smithx");
        assert_eq!(base_username(&identity(None, Some("jo@example.com"))), "user");
        assert_eq!(base_username(&identity(None, None)), "user");
        assert_eq!(numbered("abc", 1), "abc");
        assert_eq!(numbered("abc", 2), "abc2");
        assert_eq!(numbered(&"x".repeat(32), 12).len(), 32);
    }
}
