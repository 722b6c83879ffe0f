//! `toki-sync config check`: everything `serve` would refuse, found without starting: the
//! layered configuration, the pricing file, the configured TLS files and ACME's CA file. Every problem is shown,
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
    match cfg.server.https_port {
        Some(port) if cfg.server.redirect_http_to_https => {
            println!(
                "https:       {}:{port} (plain HTTP from the network is redirected there)",
                cfg.server.bind
            )
        }
        Some(port) => println!("https:       {}:{port}", cfg.server.bind),
        None => println!("https:       off"),
    }
    if cfg.acme.enabled() {
        let stored = crate::acme::stored(&cfg).map(|s| s.info);
        let have = match stored {
            Some(info) => format!(
                "stored certificate for {:?} valid until {}, renewed {} days before",
                info.names,
                time::OffsetDateTime::from_unix_timestamp(info.not_after)
                    .map(|t| t.date().to_string())
                    .unwrap_or_default(),
                cfg.acme.renew_before_days
            ),
            None => "no certificate yet (serve orders one at start)".into(),
        };
        println!(
            "TLS:         ACME for {} from {} ({:?}); {have}",
            cfg.acme.domains.join(", "),
            cfg.acme.directory(),
            crate::acme::challenge_type(&cfg)
        );
        if let Some(ca) = &cfg.acme.ca_file {
            if let Err(e) = crate::outbound::trusting(ca) {
                errors.push(format!("`acme.ca_file`: {e}"));
            }
        }
    } else {
        match crate::tls::files::check_configured(&cfg) {
            Ok(Some(line)) => println!("TLS:         {line} (loaded again when the files change)"),
            Ok(None) => println!(
                "TLS:         self-signed, generated into {} (created or renewed by serve)",
                crate::tls::files::self_signed_paths(&cfg.storage.data_dir).0.display()
            ),
            Err(e) => errors.push(e),
        }
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
