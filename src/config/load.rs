//! Reading a configuration: the layers in precedence order (built-in defaults, TOML file,
//! environment, command-line flags), unknown-key reports, and the checks that span keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::key::{Origin, Raw, apply};
use super::{
    Config, ConfigError, ENV_ADMIN_PASSWORD, ENV_CONFIG, ENV_JWT_SECRET, ENV_NOT_KEYS, ENV_PREFIX,
    ENV_SHORTCUTS, SECTIONS, Secrets, all_keys, find_key,
};

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub http_port: Option<String>,
    pub sync_port: Option<String>,
}

/// The environment, passed in rather than read globally so tests can run side by side.
#[derive(Clone, Debug, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Env {
        // Non-UTF-8 variables cannot be ours (all our names and values are UTF-8); skip them.
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A configuration that cannot be used, with the warnings found before the error (a file with
/// an unknown key and a bad value gets both reported).
#[derive(Debug)]
pub struct LoadFailure {
    pub error: ConfigError,
    pub warnings: Vec<String>,
}

/// The variable that, when set, replaces `log.level` (tracing's usual name).
const ENV_RUST_LOG: &str = "RUST_LOG";

impl Config {
    /// Reads the configuration in precedence order: defaults, file, environment, flags.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        Config::load_reporting(overrides, env).map_err(|f| f.error)
    }

    /// As [`Config::load`], but a failure keeps the warnings found so far.
    pub fn load_reporting(overrides: &Overrides, env: &Env) -> Result<Config, LoadFailure> {
        let mut cfg = Config::defaults();
        match cfg.load_layers(overrides, env) {
            Ok(()) => Ok(cfg),
            Err(error) => Err(LoadFailure { error, warnings: std::mem::take(&mut cfg.warnings) }),
        }
    }

    fn load_layers(&mut self, overrides: &Overrides, env: &Env) -> Result<(), ConfigError> {
        let cfg = self;

        let file = overrides
            .config_file
            .clone()
            .or_else(|| env.get(ENV_CONFIG).filter(|s| !s.is_empty()).map(PathBuf::from));
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
            cfg.file = Some(path.clone());
            cfg.apply_file(path, &text)?;
        }

        cfg.apply_env(env)?;
        // RUST_LOG wins over `log.level` and is checked the same way: tracing would read a typo
        // as a target name and log nothing at all.
        if let (Some(v), Some(key)) =
            (env.get(ENV_RUST_LOG).filter(|v| !v.trim().is_empty()), find_key("log", "level"))
        {
            apply(cfg, "log", key, Raw::Text(v), Origin::Env(ENV_RUST_LOG))?;
        }

        let flags: [(&'static str, &str, &str, Option<String>); 4] = [
            (
                "--data-dir",
                "storage",
                "data_dir",
                overrides.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("--bind", "server", "bind", overrides.bind.clone()),
            ("--http-port", "server", "http_port", overrides.http_port.clone()),
            ("--sync-port", "server", "sync_port", overrides.sync_port.clone()),
        ];
        for (flag, section, name, value) in flags {
            if let (Some(v), Some(key)) = (value, find_key(section, name)) {
                apply(cfg, section, key, Raw::Text(&v), Origin::Flag(flag))?;
            }
        }

        cfg.secrets = Secrets {
            admin_password: env.get(ENV_ADMIN_PASSWORD).filter(|s| !s.is_empty()).map(str::to_owned),
            jwt_secret: env.get(ENV_JWT_SECRET).filter(|s| !s.is_empty()).map(str::to_owned),
            oidc_client_secret: env
                .get(super::ENV_OIDC_CLIENT_SECRET)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        };
        // With ACME the certificate is served on HTTPS: port 443 unless another is set. Before
        // the checks, so that a clash with another listener is found here.
        if cfg.acme.enabled() && cfg.server.https_port.is_none() {
            cfg.server.https_port = Some(443);
        }
        cfg.validate()?;
        super::acme::validate(cfg)?;
        super::oidc::validate(cfg)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(format!("config file {} is not valid TOML: {e}", path.display()))
        })?;
        for (section, value) in &table {
            let Some(inner) = value.as_table() else {
                if SECTIONS.iter().any(|s| s.name == section) {
                    return Err(ConfigError(format!(
                        "in {}: `{section}` must be a table ([{section}]), not a plain value",
                        path.display()
                    )));
                }
                self.warnings.push(format!(
                    "unknown top-level key `{section}` in {} (ignored){}",
                    path.display(),
                    suggestion(section)
                ));
                continue;
            };
            for (name, v) in inner {
                match find_key(section, name) {
                    Some(key) => apply(self, section, key, Raw::Toml(v), Origin::File(path))?,
                    None => self.warnings.push(format!(
                        "unknown key `{section}.{name}` in {} (ignored){}",
                        path.display(),
                        suggestion(&format!("{section}.{name}"))
                    )),
                }
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        for (name, value) in &env.0 {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_KEYS.contains(&name.as_str()) || ENV_SHORTCUTS.iter().any(|s| s.0 == name) {
                continue;
            }
            let section_key = rest.split_once("__").map(|(s, k)| (s.to_lowercase(), k.to_lowercase()));
            let key = section_key.as_ref().and_then(|(s, k)| Some((s.as_str(), find_key(s, k)?)));
            match key {
                Some((section, key)) => apply(self, section, key, Raw::Text(value), Origin::Env(name))?,
                None => self.warnings.push(format!(
                    "unknown environment variable {name} (ignored); keys are set as {ENV_PREFIX}<SECTION>__<KEY>, e.g. TOKI_SYNC_AUTH__REGISTRATION_MODE"
                )),
            }
        }
        for (name, section, key) in ENV_SHORTCUTS {
            let Some(key) = find_key(section, key) else { continue };
            let Some(v) = env.get(name) else { continue };
            // Both spellings of one key with different values: neither may silently win.
            let long = super::env_name(section, key);
            if let Some(other) = env.get(&long).filter(|o| o.trim() != v.trim()) {
                return Err(ConfigError(format!(
                    "{name} ({v:?}) and {long} ({other:?}) both set `{section}.{}` to different values; set only one of them",
                    key.name
                )));
            }
            apply(self, section, key, Raw::Text(v), Origin::Env(name))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.refresh_token_ttl_secs <= self.auth.access_token_ttl_secs {
            return Err(ConfigError(format!(
                "`auth.refresh_token_ttl_secs` ({}) must be longer than `auth.access_token_ttl_secs` ({})",
                self.auth.refresh_token_ttl_secs, self.auth.access_token_ttl_secs
            )));
        }
        if let Some(secret) = &self.secrets.jwt_secret {
            if secret.len() < 32 {
                return Err(ConfigError(
                    "JWT_SECRET must be at least 32 characters long; generate one with `openssl rand -base64 48`, or unset it to let the server keep a generated secret in its data file".into(),
                ));
            }
        }
        if let Some(pw) = &self.secrets.admin_password {
            if let Err(msg) = crate::auth::rules::check_password(pw) {
                return Err(ConfigError(format!("{ENV_ADMIN_PASSWORD}: {msg}")));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError(
                "`tls.cert_file` and `tls.key_file` must be set together (or neither, for a generated self-signed certificate)".into(),
            ));
        }
        if self.server.redirect_http_to_https && self.server.https_port.is_none() {
            return Err(ConfigError(
                "`server.redirect_http_to_https` needs `server.https_port` (there is nothing to redirect to)"
                    .into(),
            ));
        }
        let ports = [
            ("server.http_port", Some(self.server.http_port)),
            ("server.sync_port", Some(self.server.sync_port)),
            ("server.https_port", self.server.https_port),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if let (Some(pa), Some(pb)) = (pa, pb) {
                    if *pa != 0 && pa == pb {
                        return Err(ConfigError(format!("`{a}` and `{b}` are both {pa}; they must differ")));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// A warning when plain HTTP, which carries password logins and tokens, is reachable from the
    /// network with nothing that would add HTTPS: no reverse proxy listed in
    /// `server.trusted_proxies`, and no HTTPS listener of our own that plain HTTP redirects to.
    pub fn plain_http_warning(&self) -> Option<String> {
        let https_in_front = !self.server.trusted_proxies.is_empty();
        if self.server.bind.is_loopback() || https_in_front || self.server.redirect_http_to_https {
            return None;
        }
        if let Some(port) = self.server.https_port {
            return Some(format!(
                "plain HTTP is served on {}:{} beside HTTPS on port {port}, reachable from the network: a client that uses the http:// address sends passwords and tokens unencrypted. Set `server.redirect_http_to_https = true`, or bind plain HTTP to loopback",
                self.server.bind, self.server.http_port
            ));
        }
        Some(format!(
            "plain HTTP is served on {}:{}, reachable from the network, and no HTTPS reverse proxy is configured (`server.trusted_proxies` is empty): passwords and tokens would cross the network unencrypted. Put an HTTPS reverse proxy in front and list it in `server.trusted_proxies`, or bind to 127.0.0.1 (`server.bind`)",
            self.server.bind, self.server.http_port
        ))
    }
}

/// "did you mean" for a mistyped `section.key` or section.
fn suggestion(given: &str) -> String {
    let mut best: Option<(usize, String)> = None;
    let mut consider = |cand: String| {
        let d = edit_distance(given, &cand);
        if d <= 3 && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, cand));
        }
    };
    for (section, key) in all_keys() {
        consider(format!("{section}.{}", key.name));
        consider(section.to_owned());
    }
    // A right key in the wrong section.
    if let Some((_, name)) = given.split_once('.') {
        if let Some((section, key)) = all_keys().find(|(_, k)| k.name == name) {
            return format!("; did you mean `{section}.{}`?", key.name);
        }
    }
    best.map(|(_, c)| format!("; did you mean `{c}`?")).unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
