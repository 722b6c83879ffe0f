//! `toki-sync config check`: everything `serve` would refuse, found without starting: the
//! layered configuration, the pricing file and the configured TLS files. Every problem is shown,
//! warnings as well as errors.

use std::process::ExitCode;

use super::{CommonArgs, load_config};

pub fn run(common: &CommonArgs) -> ExitCode {
    let cfg = match load_config(&common.overrides()) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let mut warnings = cfg.warnings.clone();
    warnings.extend(cfg.plain_http_warning());
    let mut errors = Vec::new();
    match &cfg.file {
        Some(f) => println!("config file: {}", f.display()),
        None => println!("config file: none (defaults and environment)"),
    }
    println!("data file:   {}", cfg.db_path().display());
    println!("http:        {}:{}", cfg.server.bind, cfg.server.http_port);
    println!("sync:        {}:{}", cfg.server.bind, cfg.server.sync_port);
    println!("log filter:  {}", cfg.log.level);
    match crate::query::pricing::PriceTable::load(cfg.pricing.file.as_deref()) {
        Ok(table) => println!("pricing:     {}", table.describe()),
        Err(e) => errors.push(e),
    }
    match crate::tls::files::check_configured(&cfg) {
        Ok(Some(line)) => println!("sync TLS:    {line}"),
        Ok(None) => println!(
            "sync TLS:    self-signed, generated into {} (created or renewed by serve)",
            crate::tls::files::self_signed_paths(&cfg.storage.data_dir).0.display()
        ),
        Err(e) => errors.push(e),
    }
    match (&cfg.oidc.issuer_url, crate::config::oidc_redirect_url(&cfg)) {
        (Some(issuer), Some(redirect)) => println!(
            "oidc:        {issuer}, client {}, redirect {redirect}, client secret {} (the provider is contacted by serve)",
            cfg.oidc.client_id.as_deref().unwrap_or("?"),
            if cfg.secrets.oidc_client_secret.is_some() { "set" } else { "unset (public client)" }
        ),
        _ => println!("oidc:        off"),
    }
    for w in &warnings {
        eprintln!("toki-sync: warning: {w}");
    }
    for e in &errors {
        eprintln!("toki-sync: configuration error: {e}");
    }
    if errors.is_empty() {
        println!("configuration is valid");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
