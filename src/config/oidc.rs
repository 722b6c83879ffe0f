//! `[oidc]`: Sign-in through an OpenID Connect provider.
//!
//! The section's settings and, below them, its keys: type, default, documentation and where each
//! value goes. Readers, printers and the README table are generated from these entries. The
//! client secret is not a key: it comes from `TOKI_OIDC_CLIENT_SECRET` or `client_secret_file`
//! and is kept in [`super::Secrets`], never logged.

use std::path::PathBuf;

use super::key::{Key, Kind, Parsed, Section};
use super::{Config, ConfigError};

/// The environment variable holding the client secret.
pub const ENV_OIDC_CLIENT_SECRET: &str = "TOKI_OIDC_CLIENT_SECRET";

#[derive(Clone, Debug, Default)]
pub struct OidcConfig {
    /// Unset: OIDC is off.
    pub issuer_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Unset: `server.external_url` + `/auth/callback`.
    pub redirect_url: Option<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: Option<String>,
    pub admin_groups: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub button_label: String,
    pub password_login: bool,
    pub break_glass_admin: Option<String>,
    pub http_timeout_secs: u64,
}

impl OidcConfig {
    pub fn enabled(&self) -> bool {
        self.issuer_url.is_some()
    }
}

/// The redirect URL the provider sends the browser back to.
pub fn redirect_url(cfg: &Config) -> Option<String> {
    cfg.oidc
        .redirect_url
        .clone()
        .or_else(|| cfg.server.external_url.as_ref().map(|u| format!("{u}/auth/callback")))
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.starts_with("127.")
        || host.starts_with("[::1]")
        || host == "localhost"
        || host.starts_with("localhost:")
}

/// The checks that span keys; run by `Config::load`. Reads `client_secret_file`.
pub(super) fn validate(cfg: &mut Config) -> Result<(), ConfigError> {
    let o = &cfg.oidc;
    let err = |m: String| Err(ConfigError(m));
    let Some(issuer) = &o.issuer_url else {
        if o.client_id.is_some() || o.client_secret_file.is_some() || cfg.secrets.oidc_client_secret.is_some()
        {
            return err("`oidc.issuer_url` must be set to use OIDC (client_id or a client secret is set without it); set it to the provider's issuer, e.g. \"https://auth.example.com\"".into());
        }
        if !o.password_login {
            return err("`oidc.password_login = false` needs OIDC configured (`oidc.issuer_url`); otherwise nobody could sign in".into());
        }
        return Ok(());
    };
    let scheme_ok = issuer.starts_with("https://") || issuer.starts_with("http://");
    let host_part = issuer.split_once("://").map_or("", |(_, r)| r);
    if !scheme_ok || host_part.is_empty() || host_part.starts_with('/') || issuer.contains(['?', '#', ' ']) {
        return err(format!(
            "invalid value for `oidc.issuer_url`: got {issuer:?}; expected the provider's issuer URL (https://…, no query or fragment), exactly as its /.well-known/openid-configuration shows it"
        ));
    }
    if issuer.starts_with("http://") && !is_loopback_url(issuer) {
        cfg.warnings.push(format!(
            "`oidc.issuer_url` {issuer} is plain http: tokens and codes cross the network unencrypted; use https"
        ));
    }
    if o.client_id.is_none() {
        return err("`oidc.client_id` must be set when `oidc.issuer_url` is (the client id registered at the provider)".into());
    }
    if redirect_url(cfg).is_none() {
        return err("`oidc.redirect_url` is unset and so is `server.external_url`: set one (the redirect URL is <external_url>/auth/callback and must be registered at the provider)".into());
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        return err(format!(
            "invalid value for `oidc.scopes`: got {:?}; it must include \"openid\"",
            o.scopes
        ));
    }
    if o.scopes.iter().any(|s| s.contains(' ')) {
        return err("invalid value for `oidc.scopes`: a scope must not contain spaces (give a list)".into());
    }
    if o.groups_claim.is_none() && (!o.admin_groups.is_empty() || !o.allowed_groups.is_empty()) {
        return err("`oidc.admin_groups` and `oidc.allowed_groups` need `oidc.groups_claim` (the claim holding the user's groups, often \"groups\")".into());
    }
    if let Some(name) = &o.break_glass_admin {
        crate::auth::rules::check_username(name)
            .map_err(|e| ConfigError(format!("invalid value for `oidc.break_glass_admin`: {e}")))?;
    }
    if let Some(path) = &o.client_secret_file {
        if cfg.secrets.oidc_client_secret.is_some() {
            return err(format!(
                "both {ENV_OIDC_CLIENT_SECRET} and `oidc.client_secret_file` are set; use one"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("`oidc.client_secret_file`: cannot read {}: {e}", path.display()))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return err(format!("`oidc.client_secret_file`: {} is empty", path.display()));
        }
        cfg.secrets.oidc_client_secret = Some(secret.to_owned());
    }
    Ok(())
}

pub(super) const SECTION: Section = Section {
    name: "oidc",
    help: "Sign-in through an OpenID Connect provider (Authelia, Authentik, Keycloak, Kanidm, Google, …). The client secret comes from TOKI_OIDC_CLIENT_SECRET or client_secret_file.",
    keys: &[
        Key {
            name: "issuer_url",
            kind: Kind::OptStr,
            default: "",
            example: "\"https://auth.example.com\"",
            help: "The provider's issuer URL, exactly as its discovery document states it. Unset: OIDC is off. An unreachable provider does not stop start-up: discovery is retried with back-off.",
            set: setter!(oidc.issuer_url, OptStr),
        },
        Key {
            name: "client_id",
            kind: Kind::OptStr,
            default: "",
            example: "\"toki-sync\"",
            help: "Client id registered at the provider.",
            set: setter!(oidc.client_id, OptStr),
        },
        Key {
            name: "client_secret_file",
            kind: Kind::OptPath,
            default: "",
            example: "\"/etc/toki-sync/oidc-secret\"",
            help: "File holding the client secret (or set TOKI_OIDC_CLIENT_SECRET). Neither: a public client (PKCE only).",
            set: setter!(oidc.client_secret_file, OptPath),
        },
        Key {
            name: "redirect_url",
            kind: Kind::Url,
            default: "",
            example: "\"https://toki.example.com/auth/callback\"",
            help: "Redirect URL registered at the provider. Unset: server.external_url + /auth/callback.",
            set: setter!(oidc.redirect_url, OptStr),
        },
        Key {
            name: "scopes",
            kind: Kind::StrList,
            default: "openid,profile,email",
            example: "",
            help: "Scopes requested; must include \"openid\". Add \"groups\" when the provider needs it for the groups claim.",
            set: setter!(oidc.scopes, Strs),
        },
        Key {
            name: "username_claim",
            kind: Kind::Str,
            default: "preferred_username",
            example: "",
            help: "Claim giving the username of a new account; missing or unusable: the sanitised local part of the email, made unique with a number.",
            set: setter!(oidc.username_claim, Str),
        },
        Key {
            name: "groups_claim",
            kind: Kind::OptStr,
            default: "",
            example: "\"groups\"",
            help: "Claim holding the user's groups (a list of strings), for admin_groups and allowed_groups.",
            set: setter!(oidc.groups_claim, OptStr),
        },
        Key {
            name: "admin_groups",
            kind: Kind::StrList,
            default: "",
            example: "[\"toki-admins\"]",
            help: "Members of these groups are made admins at each sign-in, and lose the role at their next sign-in after leaving them. Empty: roles are managed here only.",
            set: setter!(oidc.admin_groups, Strs),
        },
        Key {
            name: "allowed_groups",
            kind: Kind::StrList,
            default: "",
            example: "[\"toki-users\", \"toki-admins\"]",
            help: "Only members of these groups may sign in through the provider. Empty: everyone the provider signs in.",
            set: setter!(oidc.allowed_groups, Strs),
        },
        Key {
            name: "button_label",
            kind: Kind::Str,
            default: "Sign in with SSO",
            example: "",
            help: "Label of the sign-in button on the login and device pages.",
            set: setter!(oidc.button_label, Str),
        },
        Key {
            name: "password_login",
            kind: Kind::Bool,
            default: "true",
            example: "",
            help: "false: password sign-in is hidden and refused for everyone but break_glass_admin.",
            set: setter!(oidc.password_login, Bool),
        },
        Key {
            name: "break_glass_admin",
            kind: Kind::OptStr,
            default: "",
            example: "\"admin\"",
            help: "With password_login = false, the one account that may still sign in with its password (for when the provider is down).",
            set: setter!(oidc.break_glass_admin, OptStr),
        },
        Key {
            name: "http_timeout_secs",
            kind: Kind::Int { min: 1, max: 120 },
            default: "10",
            example: "",
            help: "Time one request to the provider (discovery, keys, code exchange) may take.",
            set: setter!(oidc.http_timeout_secs, Int, u64),
        },
    ],
};
