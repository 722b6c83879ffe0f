//! The configuration's documentation, generated from the sections: `config print-default` (also
//! shipped as `packaging/toki-sync.toml`), the README key table and `--help`'s environment list.

use super::key::Kind;
use super::{ENV_ADMIN_PASSWORD, ENV_CONFIG, ENV_JWT_SECRET, ENV_SHORTCUTS, SECTIONS, all_keys, env_name};

/// Where the packaged systemd unit keeps the data (its `StateDirectory=`). The packaged
/// configuration file is the one place that says so: `serve`, `config check` and `admin` given
/// `--config /etc/toki-sync/toki-sync.toml` then all find the same data file.
pub const PACKAGED_DATA_DIR: &str = "/var/lib/toki-sync";

/// The commented example configuration with the built-in defaults (`toki-sync config
/// print-default`).
pub fn default_file() -> String {
    config_file(None)
}

/// The configuration shipped as `packaging/toki-sync.toml` and installed as
/// `/etc/toki-sync/toki-sync.toml` (`toki-sync config print-default --packaged`): the defaults,
/// with the packaged data directory.
pub fn packaged_file() -> String {
    config_file(Some(PACKAGED_DATA_DIR))
}

fn config_file(packaged_data_dir: Option<&str>) -> String {
    let mut out = String::from(
        "# toki-sync configuration.\n\
         #\n\
         # Every key is optional; the values shown are the built-in defaults, and commented-out\n\
         # keys are unset. Precedence, lowest first: built-in defaults < this file <\n\
         # environment < command-line flags. Any key can be set from the environment as\n\
         # TOKI_SYNC_<SECTION>__<KEY>, e.g. TOKI_SYNC_AUTH__REGISTRATION_MODE=open.\n\
         #\n\
         # Secrets come only from the environment: TOKI_ADMIN_PASSWORD (password of the first\n\
         # admin, created when the data file has no active admin; generated and printed once if\n\
         # unset) and JWT_SECRET (token signing key, at least 32 characters; generated and kept\n\
         # in the data file if unset). TOKI_OIDC_CLIENT_SECRET holds the OIDC client secret\n\
         # (or use oidc.client_secret_file).\n",
    );
    if packaged_data_dir.is_some() {
        out.push_str(
            "#\n\
             # This is the packaged file (/etc/toki-sync/toki-sync.toml), which the systemd unit\n\
             # passes with --config. It differs from the defaults only in storage.data_dir; use\n\
             # the same --config with `toki-sync config check` and `toki-sync admin`. The unit\n\
             # reads the secrets from /etc/toki-sync/env (optional; mode 0600, owned by root).\n",
        );
    }
    for section in SECTIONS {
        out.push_str(&format!("\n# {}\n[{}]\n", section.help, section.name));
        for key in section.keys {
            for line in wrap(key.help, 94) {
                out.push_str(&format!("# {line}\n"));
            }
            let shortcut = ENV_SHORTCUTS
                .iter()
                .find(|s| s.1 == section.name && s.2 == key.name)
                .map(|s| s.0.to_owned())
                .unwrap_or_else(|| env_name(section.name, key));
            out.push_str(&format!("# Environment: {shortcut}\n"));
            if let (Some(dir), "storage", "data_dir") = (packaged_data_dir, section.name, key.name) {
                out.push_str(&format!("{} = \"{dir}\"\n", key.name));
            } else if key.default.is_empty() {
                let example = if key.example.is_empty() { "\"\"" } else { key.example };
                out.push_str(&format!("#{} = {example}\n", key.name));
            } else {
                out.push_str(&format!("{} = {}\n", key.name, key.kind.toml_literal(key.default)));
            }
        }
    }
    out
}

/// One row per key, for documentation (`config keys`) and the README table.
pub fn key_table() -> String {
    let mut out = String::from("| Key | Default | Environment | Meaning |\n|---|---|---|---|\n");
    for (section, key) in all_keys() {
        let default = match (key.default.is_empty(), key.kind) {
            (true, Kind::CidrList | Kind::StrList) => "`[]`".to_owned(),
            (true, _) => "unset".to_owned(),
            (false, kind) => format!("`{}`", kind.toml_literal(key.default)),
        };
        out.push_str(&format!(
            "| `{section}.{}` | {} | `{}` | {} |\n",
            key.name,
            default,
            env_name(section, key),
            key.help.replace('|', "\\|")
        ));
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Every environment variable the server reads, for `--help`.
pub fn env_help() -> String {
    let mut out = String::from("Environment:\n");
    out.push_str(&format!("  {ENV_CONFIG:<34} config file (like --config)\n"));
    for (name, section, key) in ENV_SHORTCUTS {
        out.push_str(&format!("  {name:<34} {section}.{key}\n"));
    }
    out.push_str(&format!(
        "  {:<34} any file key, e.g. TOKI_SYNC_AUTH__REGISTRATION_MODE\n",
        "TOKI_SYNC_<SECTION>__<KEY>"
    ));
    out.push_str(&format!(
        "  {ENV_ADMIN_PASSWORD:<34} password of the first admin (used when no active admin exists)\n"
    ));
    out.push_str(&format!(
        "  {ENV_JWT_SECRET:<34} JWT signing secret (>= 32 chars; default: generated, kept in the data file)\n"
    ));
    out.push_str(&format!(
        "  {:<34} OIDC client secret (or oidc.client_secret_file)\n",
        super::ENV_OIDC_CLIENT_SECRET
    ));
    out.push_str(&format!("  {:<34} log filter, overrides log.level (checked the same way)\n", "RUST_LOG"));
    out
}
