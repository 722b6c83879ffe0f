//! `toki-sync admin`: offline administration on the data file. redb locks the file, so these
//! commands refuse to run while a server holds it, and say so.

use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::public_api::audit_cli;
use super::{CommonArgs, load_config};
use crate::app::effective_registration_mode;
use crate::auth::{password, rules};
use crate::config::{Config, RegistrationMode};
use crate::store::devices::delete_in;
use crate::store::settings::REGISTRATION_MODE;
use crate::store::teams::{Team, TeamRole, clean_name};
use crate::store::users::{NewUser, Role, User, UserError, UserStatus, delete_user_in, user_in};
use crate::store::{Store, now_secs};

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage teams and their members.
    Team {
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// List or delete devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Read or change run-time settings.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Counts and file size.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List or revoke API keys.
    ApiKey {
        #[command(subcommand)]
        command: super::public_api::ApiKeyCommand,
    },
    /// Write a user's usage records (CSV or NDJSON) to standard output.
    Export(super::public_api::ExportArgs),
    /// Show the audit log, newest first.
    Audit(super::public_api::AuditArgs),
    /// Queue all usage for VictoriaMetrics again, for a new or emptied VictoriaMetrics; the
    /// server sends it when it next runs with `backend.vm_url` set.
    VmResync,
    /// Replace the data file with a backup (from `toki-sync backup` or the [backup] schedule),
    /// after checking all of it. The server must be stopped.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// Replace an existing data file (it is kept beside it as *.before-restore-<time>).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    User,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::User => Role::User,
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an active account; the password is read from standard input.
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        /// Read the password from standard input (required; keeps it out of the process list).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an account and everything it owns.
    Delete { name: String },
    /// Set a password (read from standard input); signs the user out everywhere.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a role.
    Role {
        name: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Approve a registration waiting for approval.
    Approve { name: String },
    /// Reject (delete) a registration waiting for approval.
    Reject { name: String },
    /// Link an account to a user of the OIDC provider, who then signs in to it through the
    /// provider (the account's password, if any, keeps working while password login is on).
    LinkOidc {
        name: String,
        /// The provider's subject (`sub` claim) for that user.
        #[arg(long)]
        subject: String,
        /// The provider's issuer URL; default: `oidc.issuer_url` from the configuration.
        #[arg(long)]
        issuer: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TeamRoleArg {
    Member,
    Admin,
}

impl From<TeamRoleArg> for TeamRole {
    fn from(r: TeamRoleArg) -> TeamRole {
        match r {
            TeamRoleArg::Member => TeamRole::Member,
            TeamRoleArg::Admin => TeamRole::Admin,
        }
    }
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Create a team.
    Add { name: String },
    /// Delete a team (its members' accounts stay).
    Delete { name: String },
    /// List teams.
    List {
        #[arg(long)]
        json: bool,
    },
    /// List a team's members.
    Members {
        team: String,
        #[arg(long)]
        json: bool,
    },
    /// Add a user to a team.
    AddMember {
        team: String,
        user: String,
        #[arg(long, value_enum, default_value = "member")]
        role: TeamRoleArg,
    },
    /// Remove a user from a team.
    RemoveMember { team: String, user: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List devices (all, or one user's).
    List {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a device (by the id `device list` shows) with all its usage data. Its machine is
    /// refused until it signs in again with `toki settings sync enable`.
    Delete { id: String },
}

// The setting is named `registration_mode` everywhere (configuration file, HTTP API, issue text);
// the kebab-case spelling clap would derive is kept as an alias.
#[derive(Clone, Copy, ValueEnum)]
enum SettingKey {
    #[value(name = "registration_mode", alias = "registration-mode")]
    RegistrationMode,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Open,
    Approval,
    Closed,
}

#[derive(Subcommand)]
enum SettingsCommand {
    /// Show settings (all, or one).
    Get {
        #[arg(value_enum)]
        key: Option<SettingKey>,
    },
    /// Change a setting.
    Set {
        #[command(subcommand)]
        setting: SetCommand,
    },
}

#[derive(Subcommand)]
enum SetCommand {
    /// Who may self-register: open, approval or closed.
    #[command(name = "registration_mode", alias = "registration-mode")]
    RegistrationMode {
        #[arg(value_enum)]
        mode: ModeArg,
    },
}

/// An error to print; the exit code is 1.
pub(super) struct Failure(pub(super) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub fn run(args: AdminArgs) -> ExitCode {
    let config = match load_config(&args.common.overrides()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    match execute(&config, args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("toki-sync admin: {msg}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn open(config: &Config) -> Result<Store, Failure> {
    let path = config.db_path();
    if !path.exists() {
        return Err(Failure(format!(
            "no data file at {}; check --data-dir (or storage.data_dir / TOKI_SYNC_DATA_DIR), or start the server once to create it",
            path.display()
        )));
    }
    Ok(Store::open(&path)?)
}

fn read_password() -> Result<String, Failure> {
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .map_err(|e| Failure(format!("cannot read the password from standard input: {e}")))?;
    let password = input.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&input);
    rules::check_password(password)?;
    Ok(password.to_owned())
}

fn find(store: &Store, name: &str) -> Result<User, Failure> {
    store.user_by_name(name)?.ok_or_else(|| Failure(format!("no user named `{name}`")))
}

fn find_team(store: &Store, name: &str) -> Result<Team, Failure> {
    store.team_by_name(name)?.ok_or_else(|| Failure(format!("no team named `{name}`")))
}

fn execute(config: &Config, command: AdminCommand) -> Result<(), Failure> {
    match command {
        AdminCommand::User { command } => user(config, command),
        AdminCommand::Team { command } => team(config, command),
        AdminCommand::Device { command } => device(config, command),
        AdminCommand::Settings { command } => settings(config, command),
        AdminCommand::Stats { json } => stats(config, json),
        AdminCommand::ApiKey { command } => super::public_api::api_key(config, command),
        AdminCommand::Export(args) => super::public_api::export(config, args),
        AdminCommand::Audit(args) => super::public_api::audit(config, args),
        AdminCommand::VmResync => {
            let n = open(config)?.write(crate::store::vm_outbox::requeue_all_in)?;
            println!("queued {n} hourly buckets for VictoriaMetrics");
            Ok(())
        }
        AdminCommand::Restore { file, force } => restore(config, &file, force),
    }
}

fn restore(config: &Config, file: &std::path::Path, force: bool) -> Result<(), Failure> {
    let mut bar: Option<crate::bench::progress::Progress> = None;
    let done = crate::backup::restore::restore(file, &config.db_path(), force, |n, total| {
        bar.get_or_insert_with(|| crate::bench::progress::Progress::new(total, "entries")).update(n)
    });
    if let Some(b) = bar.as_mut() {
        b.finish();
    }
    let done = done.map_err(Failure)?;
    if let Some(previous) = &done.previous {
        println!("the previous data file was moved to {}", previous.display());
    }
    println!(
        "restored {} entries in {} tables (schema version {}, backup taken {}) into {}",
        done.header.entries,
        done.header.tables.len(),
        done.header.schema_version,
        done.header.created_at,
        config.db_path().display()
    );
    Ok(())
}

fn user(config: &Config, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add { name, role, .. } => {
            rules::check_username(&name)?;
            let password = read_password()?;
            let store = open(config)?;
            let user = store.create_user(NewUser {
                username: name,
                role: role.into(),
                status: UserStatus::Active,
                password_hash: Some(password::hash_blocking(&password)),
                oidc_subject: None,
            })?;
            audit_cli(config, &store, "user.create", &user.username)?;
            println!("created {} `{}` ({})", user.role.as_str(), user.username, user.uuid);
        }
        UserCommand::List { json } => {
            let users = open(config)?.users()?;
            if json {
                let list: Vec<_> = users.iter().map(crate::http::handlers::views::user).collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "users": list }))?);
            } else {
                println!("{:<36}  {:<32}  {:<5}  {:<8}  CREATED", "ID", "USERNAME", "ROLE", "STATUS");
                for u in users {
                    println!(
                        "{:<36}  {:<32}  {:<5}  {:<8}  {}",
                        u.uuid,
                        u.username,
                        u.role.as_str(),
                        u.status.as_str(),
                        rfc3339(u.created_at)
                    );
                }
            }
        }
        UserCommand::Delete { name } => {
            let store = open(config)?;
            let user = find(&store, &name)?;
            let gone = store.write(|txn| delete_user_in(txn, user.id, now_secs()))?;
            audit_cli(config, &store, "user.delete", &user.username)?;
            println!("deleted user `{}` and {} device(s)", user.username, gone.devices.len());
        }
        UserCommand::Passwd { name, .. } => {
            let password = read_password()?;
            let store = open(config)?;
            let user = find(&store, &name)?;
            store.set_password(user.id, password::hash_blocking(&password))?;
            audit_cli(config, &store, "user.password", &user.username)?;
            println!("password of `{}` changed; their refresh tokens were revoked", user.username);
        }
        UserCommand::Role { name, role } => {
            let store = open(config)?;
            let user = find(&store, &name)?;
            let role: Role = role.into();
            store.update_user(user.id, |u| u.role = role)?;
            audit_cli(config, &store, "user.role", &format!("{} {}", user.username, role.as_str()))?;
            println!("`{}` is now {}", user.username, role.as_str());
        }
        UserCommand::Approve { name } => {
            let store = open(config)?;
            let user = find(&store, &name)?;
            if user.status != UserStatus::Pending {
                return Err(Failure(format!(
                    "`{}` is not waiting for approval (status: {})",
                    user.username,
                    user.status.as_str()
                )));
            }
            store.update_user(user.id, |u| u.status = UserStatus::Active)?;
            audit_cli(config, &store, "user.approve", &user.username)?;
            println!("approved `{}`", user.username);
        }
        UserCommand::LinkOidc { name, subject, issuer } => {
            let issuer = issuer.or_else(|| config.oidc.issuer_url.clone()).ok_or_else(|| {
                Failure("no issuer: give --issuer URL or set `oidc.issuer_url` in the configuration".into())
            })?;
            let subject = subject.trim();
            if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
                return Err(Failure("--subject must be 1-255 characters without control characters".into()));
            }
            let store = open(config)?;
            let user = find(&store, &name)?;
            let key = crate::store::users::oidc_key(&issuer, subject);
            store.link_oidc(user.id, &key)?;
            println!("`{}` now signs in as subject `{subject}` of {issuer}", user.username);
        }
        UserCommand::Reject { name } => {
            let store = open(config)?;
            let user = find(&store, &name)?;
            let id = user.id;
            store
                .write(|txn| {
                    // Checked inside the transaction that deletes.
                    match user_in(txn, id)? {
                        Some(u) if u.status == UserStatus::Pending => {
                            delete_user_in(txn, id, now_secs()).map(drop)
                        }
                        _ => Err(UserError::NotFound),
                    }
                })
                .map_err(|e| match e {
                    UserError::NotFound => {
                        Failure(format!("`{}` is not waiting for approval", user.username))
                    }
                    other => other.into(),
                })?;
            audit_cli(config, &store, "user.reject", &user.username)?;
            println!("rejected and deleted `{}`", user.username);
        }
    }
    Ok(())
}

fn team(config: &Config, command: TeamCommand) -> Result<(), Failure> {
    let store = open(config)?;
    match command {
        TeamCommand::Add { name } => {
            let name = clean_name(&name)?;
            let team = store.create_team(&name, now_secs())?;
            audit_cli(config, &store, "team.create", &team.name)?;
            println!("created team `{}` ({})", team.name, team.uuid);
        }
        TeamCommand::Delete { name } => {
            let team = find_team(&store, &name)?;
            store.delete_team(team.id)?;
            audit_cli(config, &store, "team.delete", &team.name)?;
            println!("deleted team `{}`", team.name);
        }
        TeamCommand::List { json } => {
            let teams = store.teams()?;
            if json {
                let list: Vec<_> = teams
                    .iter()
                    .map(|(t, n)| json!({ "id": t.uuid.to_string(), "name": t.name, "created_at": t.created_at, "member_count": n }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "teams": list }))?);
            } else {
                println!("{:<36}  {:<32}  MEMBERS", "ID", "NAME");
                for (t, n) in teams {
                    println!("{:<36}  {:<32}  {n}", t.uuid, t.name);
                }
            }
        }
        TeamCommand::Members { team, json } => {
            let team = find_team(&store, &team)?;
            let mut rows = Vec::new();
            for (id, m) in store.team_members(team.id)? {
                let Some(u) = store.user(id)? else { continue };
                rows.push((u, m));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(u, m)| json!({ "user_id": u.uuid.to_string(), "username": u.username, "role": m.role.as_str(), "added_at": m.added_at }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "members": list }))?);
            } else {
                println!("{:<32}  ROLE", "USERNAME");
                for (u, m) in rows {
                    println!("{:<32}  {}", u.username, m.role.as_str());
                }
            }
        }
        TeamCommand::AddMember { team, user, role } => {
            let team = find_team(&store, &team)?;
            let user = find(&store, &user)?;
            let role: TeamRole = role.into();
            store.add_team_member(team.id, user.id, role, now_secs())?;
            audit_cli(config, &store, "team.member_add", &format!("{} {}", team.name, user.username))?;
            println!("added `{}` to `{}` as {}", user.username, team.name, role.as_str());
        }
        TeamCommand::RemoveMember { team, user } => {
            let team = find_team(&store, &team)?;
            let user = find(&store, &user)?;
            store.remove_team_member(team.id, user.id)?;
            audit_cli(config, &store, "team.member_remove", &format!("{} {}", team.name, user.username))?;
            println!("removed `{}` from `{}`", user.username, team.name);
        }
    }
    Ok(())
}

fn device(config: &Config, command: DeviceCommand) -> Result<(), Failure> {
    let store = open(config)?;
    match command {
        DeviceCommand::List { user, json } => {
            let owner = user.map(|name| find(&store, &name)).transpose()?;
            let devices = store.devices(owner.as_ref().map(|u| u.id))?;
            let names: HashMap<u32, String> =
                store.users()?.into_iter().map(|u| (u.id, u.username)).collect();
            let owner_name = |id: u32| names.get(&id).cloned().unwrap_or_default();
            if json {
                let list: Vec<_> = devices
                    .iter()
                    .map(|d| {
                        json!({
                            "id": d.uuid.to_string(),
                            "name": d.name,
                            "device_key": d.key,
                            "username": owner_name(d.user),
                            "created_at": d.created_at,
                            "last_seen_at": d.last_seen_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "devices": list }))?);
            } else {
                println!("{:<36}  {:<24}  {:<20}  LAST SEEN", "ID", "NAME", "USER");
                for d in devices {
                    let seen = d.last_seen_at.map(rfc3339).unwrap_or_else(|| "never".into());
                    println!("{:<36}  {:<24}  {:<20}  {seen}", d.uuid, d.name, owner_name(d.user));
                }
            }
        }
        DeviceCommand::Delete { id } => {
            let uuid = uuid::Uuid::try_parse(&id)
                .map_err(|_| Failure(format!("`{id}` is not a device id; `device list` shows them")))?;
            let device =
                store.device_by_uuid(uuid)?.ok_or_else(|| Failure(format!("no device with id {uuid}")))?;
            store.write(|txn| delete_in(txn, device.id, now_secs()))?;
            audit_cli(config, &store, "device.delete", &device.uuid.to_string())?;
            println!("deleted device `{}` ({}) and its usage data", device.name, device.uuid);
        }
    }
    Ok(())
}

fn settings(config: &Config, command: SettingsCommand) -> Result<(), Failure> {
    let store = open(config)?;
    match command {
        SettingsCommand::Get { key: None | Some(SettingKey::RegistrationMode) } => {
            let mode = effective_registration_mode(&store, config)?;
            let origin = if store.setting(REGISTRATION_MODE)?.is_some() {
                "stored setting"
            } else {
                "configuration default"
            };
            println!("registration_mode = {mode} ({origin})");
        }
        SettingsCommand::Set { setting: SetCommand::RegistrationMode { mode } } => {
            let mode = match mode {
                ModeArg::Open => RegistrationMode::Open,
                ModeArg::Approval => RegistrationMode::Approval,
                ModeArg::Closed => RegistrationMode::Closed,
            };
            store.set_setting(REGISTRATION_MODE, mode.as_str())?;
            audit_cli(config, &store, "setting.change", &format!("registration_mode=\"{mode}\""))?;
            println!("registration_mode = {mode}");
        }
    }
    Ok(())
}

fn stats(config: &Config, as_json: bool) -> Result<(), Failure> {
    let store = open(config)?;
    let users = store.users()?;
    let pending = users.iter().filter(|u| u.status == UserStatus::Pending).count();
    let admins = users.iter().filter(|u| u.role == Role::Admin).count();
    let s = store.stats()?;
    if as_json {
        let mut v = serde_json::to_value(&s)?;
        v["admins"] = json!(admins);
        v["pending_users"] = json!(pending);
        v["path"] = json!(store.path().display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("data file:      {}", store.path().display());
        println!("file size:      {} bytes", s.file_bytes);
        println!("users:          {} ({admins} admin, {pending} pending)", s.users);
        println!("devices:        {}", s.devices);
        println!("events:         {}", s.events);
        println!("rollup buckets: {}", s.rollup_buckets);
        println!("cursors:        {}", s.cursors);
        println!("teams:          {}", s.teams);
        println!("refresh tokens: {}", s.refresh_tokens);
    }
    Ok(())
}

fn rfc3339(secs: i64) -> String {
    crate::store::rfc3339(secs).unwrap_or_else(|| secs.to_string())
}
