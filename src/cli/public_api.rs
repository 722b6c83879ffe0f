//! `toki-sync admin api-key list|revoke`, `admin export` and `admin audit`: the public API's
//! offline commands, on the data file (the server must be stopped; redb says so otherwise).

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::admin::{Failure, open};
use crate::config::Config;
use crate::query::export::{self, Format};
use crate::query::pricing::PriceTable;
use crate::query::records::Filter;
use crate::store::audit::{AuditEntry, AuditFilter};
use crate::store::{Store, rfc3339};

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// List API keys (all, or one user's); never shows the secrets.
    List {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by the id `api-key list` shows; it stops working at once.
    Revoke { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Whose records to export.
    #[arg(long, value_name = "NAME")]
    user: String,
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
    /// Only records at or after this time (RFC 3339, Unix seconds or milliseconds).
    #[arg(long)]
    start: Option<String>,
    /// Only records before this time.
    #[arg(long)]
    end: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// A device id (UUID, as `device list` shows).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Most entries to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Only entries by this user.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (`api_key.revoke`), or a family ending in a dot (`login.`).
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    json: bool,
}

/// An audit entry for an offline change (actor kind `cli`).
pub(super) fn audit_cli(config: &Config, store: &Store, action: &str, target: &str) -> Result<(), Failure> {
    let e = AuditEntry {
        actor: String::new(),
        actor_kind: "cli".into(),
        address: String::new(),
        action: action.into(),
        target: target.into(),
    };
    Ok(crate::http::audit::append(store, config.audit.retention_days, &e)?)
}

pub fn api_key(config: &Config, command: ApiKeyCommand) -> Result<(), Failure> {
    let store = open(config)?;
    match command {
        ApiKeyCommand::List { user, json } => {
            let owner = match &user {
                Some(name) => Some(
                    store.user_by_name(name)?.ok_or_else(|| Failure(format!("no user named `{name}`")))?.id,
                ),
                None => None,
            };
            let keys = store.api_keys(owner)?;
            let name_of = |id: u32| store.user(id).ok().flatten().map(|u| u.username).unwrap_or_default();
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id.to_string(), "username": name_of(k.user), "name": k.name, "prefix": k.prefix,
                            "scopes": k.scopes.names(), "created_at": rfc3339(k.created_at),
                            "expires_at": k.expires_at.and_then(rfc3339), "last_used_at": k.last_used_at.and_then(rfc3339),
                            "last_used_from": k.last_used_from,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "api_keys": list }))?);
            } else {
                println!("{:<36}  {:<16}  {:<12}  {:<20}  SCOPES", "ID", "USER", "PREFIX", "NAME");
                for k in keys {
                    println!(
                        "{:<36}  {:<16}  {:<12}  {:<20}  {}",
                        k.id,
                        name_of(k.user),
                        k.prefix,
                        k.name,
                        k.scopes.names().join(",")
                    );
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let uuid = uuid::Uuid::try_parse(&id)
                .map_err(|_| Failure(format!("`{id}` is not an API key id (a UUID)")))?;
            let key = store
                .revoke_api_key(uuid, None)?
                .ok_or_else(|| Failure(format!("no API key with id {id}")))?;
            audit_cli(config, &store, "api_key.revoke", &key.id.to_string())?;
            println!("revoked API key {} ({})", key.id, key.prefix);
        }
    }
    Ok(())
}

pub fn export(config: &Config, args: ExportArgs) -> Result<(), Failure> {
    let store = open(config)?;
    let user =
        store.user_by_name(&args.user)?.ok_or_else(|| Failure(format!("no user named `{}`", args.user)))?;
    let values = [
        ("start", args.start),
        ("end", args.end),
        ("provider", args.provider),
        ("model", args.model),
        ("project", args.project),
        ("session", args.session),
        ("device", args.device),
    ];
    let filter = Filter::parse(|k| values.iter().find(|(n, _)| *n == k).and_then(|(_, v)| v.clone()))
        .map_err(Failure)?;
    let format = match args.format {
        FormatArg::Csv => Format::Csv,
        FormatArg::Ndjson => Format::Ndjson,
    };
    let prices = PriceTable::load(config.pricing.file.as_deref()).map_err(Failure)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = None;
    let n = export::run(&store, &prices, &[user.id], &filter, format, |chunk| match out.write_all(&chunk) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed.filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe) {
        return Err(Failure(format!("cannot write the export: {e}")));
    }
    out.flush().ok();
    eprintln!("exported {n} records of `{}`", user.username);
    Ok(())
}

pub fn audit(config: &Config, args: AuditArgs) -> Result<(), Failure> {
    let store = open(config)?;
    let filter = AuditFilter { actor: args.actor, action: args.action };
    let (entries, _) = store.audit_page(&filter, None, args.limit.max(1))?;
    if args.json {
        let list: Vec<_> = entries
            .iter()
            .map(|(k, e)| json!({ "time": crate::query::time::rfc3339_at(k.0, 0), "actor": e.actor, "actor_kind": e.actor_kind, "address": e.address, "action": e.action, "target": e.target }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "audit": list }))?);
    } else {
        println!(
            "{:<24}  {:<16}  {:<9}  {:<22}  {:<24}  TARGET",
            "TIME", "ACTOR", "KIND", "ADDRESS", "ACTION"
        );
        for (k, e) in entries {
            println!(
                "{:<24}  {:<16}  {:<9}  {:<22}  {:<24}  {}",
                crate::query::time::rfc3339_at(k.0, 0),
                if e.actor.is_empty() { "-" } else { &e.actor },
                e.actor_kind,
                if e.address.is_empty() { "-" } else { &e.address },
                e.action,
                e.target
            );
        }
    }
    Ok(())
}
