//! Configuration: built-in defaults < TOML file < environment < command-line flags.
//!
//! Every file key is declared once, in [`KEYS`]: its type, default, help text and where it goes
//! in [`Config`]. The file reader, the environment reader, `config print-default`, the unknown-key
//! report and the README table all come from that one list, so they cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::net::Cidr;

/// Prefix of every environment variable the server reads (besides the two secrets).
pub const ENV_PREFIX: &str = "TOKI_SYNC_";
pub const ENV_CONFIG: &str = "TOKI_SYNC_CONFIG";
pub const ENV_ADMIN_PASSWORD: &str = "TOKI_ADMIN_PASSWORD";
pub const ENV_JWT_SECRET: &str = "JWT_SECRET";
/// Environment variables that are not configuration keys but are allowed to be set.
const ENV_NOT_KEYS: &[&str] = &[ENV_CONFIG, "TOKI_SYNC_FULL_TESTS"];
/// Short environment names for the most common keys (the long form works too).
const ENV_SHORTCUTS: &[(&str, &str, &str)] = &[
    ("TOKI_SYNC_DATA_DIR", "storage", "data_dir"),
    ("TOKI_SYNC_BIND", "server", "bind"),
    ("TOKI_SYNC_HTTP_PORT", "server", "http_port"),
    ("TOKI_SYNC_SYNC_PORT", "server", "sync_port"),
];

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub sync: SyncConfig,
    pub tls: TlsConfig,
    pub backend: BackendConfig,
    pub pricing: PricingConfig,
    pub log: LogConfig,
    pub secrets: Secrets,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Problems that do not stop start-up (unknown keys); shown once the logger is up.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: IpAddr,
    pub http_port: u16,
    pub sync_port: u16,
    /// Public base URL without a trailing slash (`https://toki.example.com`).
    pub external_url: Option<String>,
    /// Peers whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<Cidr>,
    pub shutdown_grace_secs: u64,
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub header_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_connections: usize,
}

#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationMode {
    Open,
    Approval,
    Closed,
}

impl RegistrationMode {
    pub const NAMES: &'static [&'static str] = &["open", "approval", "closed"];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Approval => "approval",
            RegistrationMode::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(RegistrationMode::Open),
            "approval" => Some(RegistrationMode::Approval),
            "closed" => Some(RegistrationMode::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for RegistrationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub registration_mode: RegistrationMode,
    pub brute_force_max_attempts: u32,
    pub brute_force_window_secs: u64,
    pub brute_force_lockout_secs: u64,
    pub refresh_reuse_grace_secs: u64,
    pub device_code_ttl_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaintextPolicy {
    /// Plaintext only from loopback peers (and `plaintext_allow`).
    Loopback,
    Always,
    Never,
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub plaintext: PlaintextPolicy,
    /// Extra networks allowed to sync without TLS.
    pub plaintext_allow: Vec<Cidr>,
    pub idle_timeout_secs: u64,
    pub handshake_timeout_secs: u64,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub sync_err_delay_secs: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub vm_url: Option<String>,
    pub vm_timeout_secs: u64,
}

#[derive(Clone, Debug, Default)]
pub struct PricingConfig {
    /// TOML file whose prices replace or add to the built-in table.
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub level: String,
}

/// Values that only come from the environment and must never be logged.
#[derive(Clone, Default)]
pub struct Secrets {
    pub admin_password: Option<String>,
    pub jwt_secret: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("admin_password", &shown(&self.admin_password))
            .field("jwt_secret", &shown(&self.jwt_secret))
            .finish()
    }
}

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

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The type of a key, which decides how file and environment values are read and checked.
#[derive(Clone, Copy)]
enum Kind {
    Int {
        min: u64,
        max: u64,
    },
    Str,
    Ip,
    Enum(&'static [&'static str]),
    /// An http(s) URL; empty means unset.
    Url,
    /// A list of CIDR networks; from the environment, comma-separated.
    CidrList,
    /// A tracing filter: a level or `target=level` directives.
    LogFilter,
    /// A file path; empty means unset.
    OptPath,
}

/// A checked value, ready to be stored.
enum Parsed {
    Int(u64),
    Str(String),
    OptStr(Option<String>),
    Ip(IpAddr),
    Cidrs(Vec<Cidr>),
}

struct Key {
    section: &'static str,
    name: &'static str,
    kind: Kind,
    /// Default in environment-string form; empty for "unset".
    default: &'static str,
    /// Shown (commented out) by `print-default` when the default is unset.
    example: &'static str,
    help: &'static str,
    set: fn(&mut Config, Parsed),
}

macro_rules! setter {
    ($($field:ident).+, Int, $ty:ty) => {
        |c: &mut Config, p: Parsed| if let Parsed::Int(v) = p { c.$($field).+ = v as $ty }
    };
    ($($field:ident).+, OptPath) => {
        |c: &mut Config, p: Parsed| if let Parsed::OptStr(v) = p { c.$($field).+ = v.map(PathBuf::from) }
    };
    ($($field:ident).+, $variant:ident) => {
        |c: &mut Config, p: Parsed| if let Parsed::$variant(v) = p { c.$($field).+ = v }
    };
}

const KEYS: &[Key] = &[
    Key {
        section: "server",
        name: "bind",
        kind: Kind::Ip,
        default: "0.0.0.0",
        example: "",
        help: "IP address both listeners bind to (\"::\" for all IPv6 and IPv4 addresses).",
        set: setter!(server.bind, Ip),
    },
    Key {
        section: "server",
        name: "http_port",
        kind: Kind::Int { min: 0, max: 65535 },
        default: "9091",
        example: "",
        help: "HTTP port: JSON API, device login and pages. 0 picks a free port (tests).",
        set: setter!(server.http_port, Int, u16),
    },
    Key {
        section: "server",
        name: "sync_port",
        kind: Kind::Int { min: 0, max: 65535 },
        default: "9090",
        example: "",
        help: "TCP sync port for toki daemons (TLS and plaintext on one port). 0 picks a free port.",
        set: setter!(server.sync_port, Int, u16),
    },
    Key {
        section: "server",
        name: "external_url",
        kind: Kind::Url,
        default: "",
        example: "\"https://toki.example.com\"",
        help: "Public base URL of the HTTP side, used in links handed to clients (device login).",
        set: setter!(server.external_url, OptStr),
    },
    Key {
        section: "server",
        name: "trusted_proxies",
        kind: Kind::CidrList,
        default: "",
        example: "[\"127.0.0.1\", \"10.0.0.0/8\"]",
        help: "Reverse proxies whose X-Forwarded-For header gives the client address (IPs or CIDRs).",
        set: setter!(server.trusted_proxies, Cidrs),
    },
    Key {
        section: "server",
        name: "shutdown_grace_secs",
        kind: Kind::Int { min: 1, max: 3600 },
        default: "30",
        example: "",
        help: "On SIGINT/SIGTERM, how long in-flight requests may take to finish.",
        set: setter!(server.shutdown_grace_secs, Int, u64),
    },
    Key {
        section: "http",
        name: "max_body_bytes",
        kind: Kind::Int { min: 1024, max: 64 << 20 },
        default: "1048576",
        example: "",
        help: "Largest accepted request body; larger requests get 413.",
        set: setter!(http.max_body_bytes, Int, usize),
    },
    Key {
        section: "http",
        name: "header_timeout_secs",
        kind: Kind::Int { min: 1, max: 600 },
        default: "10",
        example: "",
        help: "Time a client has to send the request headers (also the keep-alive idle time).",
        set: setter!(http.header_timeout_secs, Int, u64),
    },
    Key {
        section: "http",
        name: "request_timeout_secs",
        kind: Kind::Int { min: 1, max: 3600 },
        default: "30",
        example: "",
        help: "Time a request (body and handling) may take before it is answered with 503.",
        set: setter!(http.request_timeout_secs, Int, u64),
    },
    Key {
        section: "http",
        name: "max_connections",
        kind: Kind::Int { min: 1, max: 1_000_000 },
        default: "1024",
        example: "",
        help: "Concurrent HTTP connections; further ones get 503 and are closed.",
        set: setter!(http.max_connections, Int, usize),
    },
    Key {
        section: "storage",
        name: "data_dir",
        kind: Kind::Str,
        default: "data",
        example: "",
        help: "Directory holding toki-sync.redb (created if missing). Relative paths start at the working directory.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.storage.data_dir = PathBuf::from(v)
            }
        },
    },
    Key {
        section: "auth",
        name: "access_token_ttl_secs",
        kind: Kind::Int { min: 60, max: 30 * 86400 },
        default: "3600",
        example: "",
        help: "Lifetime of access tokens.",
        set: setter!(auth.access_token_ttl_secs, Int, u64),
    },
    Key {
        section: "auth",
        name: "refresh_token_ttl_secs",
        kind: Kind::Int { min: 300, max: 3650 * 86400 },
        default: "7776000",
        example: "",
        help: "Lifetime of refresh tokens (90 days). Each use rotates the token.",
        set: setter!(auth.refresh_token_ttl_secs, Int, u64),
    },
    Key {
        section: "auth",
        name: "registration_mode",
        kind: Kind::Enum(RegistrationMode::NAMES),
        default: "closed",
        example: "",
        help: "Self-registration: \"open\", \"approval\" (an admin approves) or \"closed\". An admin can change it at run time; the stored setting then wins.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.auth.registration_mode = RegistrationMode::parse(&v).unwrap_or(RegistrationMode::Closed)
            }
        },
    },
    Key {
        section: "auth",
        name: "brute_force_max_attempts",
        kind: Kind::Int { min: 1, max: 1000 },
        default: "5",
        example: "",
        help: "Failed attempts (per client IP and username) allowed within the window.",
        set: setter!(auth.brute_force_max_attempts, Int, u32),
    },
    Key {
        section: "auth",
        name: "brute_force_window_secs",
        kind: Kind::Int { min: 1, max: 86400 },
        default: "300",
        example: "",
        help: "Window in which failures are counted.",
        set: setter!(auth.brute_force_window_secs, Int, u64),
    },
    Key {
        section: "auth",
        name: "brute_force_lockout_secs",
        kind: Kind::Int { min: 1, max: 86400 },
        default: "900",
        example: "",
        help: "How long a key stays locked (429) once it reaches the limit.",
        set: setter!(auth.brute_force_lockout_secs, Int, u64),
    },
    Key {
        section: "auth",
        name: "refresh_reuse_grace_secs",
        kind: Kind::Int { min: 0, max: 300 },
        default: "30",
        example: "",
        help: "A rotated refresh token presented again within this time gets the same new pair (concurrent refreshes); later reuse revokes the whole token family.",
        set: setter!(auth.refresh_reuse_grace_secs, Int, u64),
    },
    Key {
        section: "auth",
        name: "device_code_ttl_secs",
        kind: Kind::Int { min: 60, max: 3600 },
        default: "900",
        example: "",
        help: "How long a device-login code (`toki settings sync enable`) stays valid before it must be approved in the browser.",
        set: setter!(auth.device_code_ttl_secs, Int, u64),
    },
    Key {
        section: "sync",
        name: "plaintext",
        kind: Kind::Enum(&["loopback", "always", "never"]),
        default: "loopback",
        example: "",
        help: "Who may sync without TLS: \"loopback\" (127.0.0.0/8, ::1, plus plaintext_allow), \"always\" or \"never\". The toki client speaks plaintext to localhost. A refused peer is told to use TLS.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.sync.plaintext = match v.as_str() {
                    "always" => PlaintextPolicy::Always,
                    "never" => PlaintextPolicy::Never,
                    _ => PlaintextPolicy::Loopback,
                }
            }
        },
    },
    Key {
        section: "sync",
        name: "plaintext_allow",
        kind: Kind::CidrList,
        default: "",
        example: "[\"10.0.0.0/8\", \"192.168.0.0/16\"]",
        help: "Networks also allowed to sync without TLS when plaintext = \"loopback\".",
        set: setter!(sync.plaintext_allow, Cidrs),
    },
    Key {
        section: "sync",
        name: "idle_timeout_secs",
        kind: Kind::Int { min: 61, max: 86400 },
        default: "180",
        example: "",
        help: "A sync connection with no frame for this long is closed (the client pings every 60 s).",
        set: setter!(sync.idle_timeout_secs, Int, u64),
    },
    Key {
        section: "sync",
        name: "handshake_timeout_secs",
        kind: Kind::Int { min: 1, max: 300 },
        default: "15",
        example: "",
        help: "Time a new connection has for its first byte, for the TLS handshake, and for its AUTH frame.",
        set: setter!(sync.handshake_timeout_secs, Int, u64),
    },
    Key {
        section: "sync",
        name: "max_connections",
        kind: Kind::Int { min: 1, max: 1_000_000 },
        default: "1024",
        example: "",
        help: "Concurrent sync connections (each daemon opens one per provider). Over the cap a client is answered AUTH_ERR \"server busy\"; beyond twice the cap connections are closed unanswered.",
        set: setter!(sync.max_connections, Int, usize),
    },
    Key {
        section: "sync",
        name: "max_frame_bytes",
        kind: Kind::Int { min: 65536, max: 16_777_216 },
        default: "16777216",
        example: "",
        help: "Largest frame payload accepted (the protocol's limit is 16 MiB); a larger announced length closes the connection.",
        set: setter!(sync.max_frame_bytes, Int, usize),
    },
    Key {
        section: "sync",
        name: "max_decompressed_bytes",
        kind: Kind::Int { min: 1_048_576, max: 268_435_456 },
        default: "67108864",
        example: "",
        help: "Largest decompressed SYNC_BATCH_ZSTD payload (64 MiB); beyond it the batch is refused.",
        set: setter!(sync.max_decompressed_bytes, Int, usize),
    },
    Key {
        section: "sync",
        name: "sync_err_delay_secs",
        kind: Kind::Int { min: 0, max: 60 },
        default: "3",
        example: "",
        help: "Pause before a SYNC_ERR (storage trouble), so clients that retry at once do not spin.",
        set: setter!(sync.sync_err_delay_secs, Int, u64),
    },
    Key {
        section: "tls",
        name: "cert_file",
        kind: Kind::OptPath,
        default: "",
        example: "\"/etc/toki-sync/cert.pem\"",
        help: "PEM certificate chain for the sync port's TLS. Unset: a self-signed certificate is generated into <data_dir>/tls/ on first start and reused.",
        set: setter!(tls.cert_file, OptPath),
    },
    Key {
        section: "tls",
        name: "key_file",
        kind: Kind::OptPath,
        default: "",
        example: "\"/etc/toki-sync/key.pem\"",
        help: "PEM private key for cert_file.",
        set: setter!(tls.key_file, OptPath),
    },
    Key {
        section: "backend",
        name: "vm_url",
        kind: Kind::Url,
        default: "",
        example: "\"http://127.0.0.1:8428\"",
        help: "VictoriaMetrics base URL. Set: accepted usage is written there (run it with -dedup.minScrapeInterval=1h, see the README) and the PromQL proxy serves /api/v1/query*. Unset: the proxy answers 503.",
        set: setter!(backend.vm_url, OptStr),
    },
    Key {
        section: "backend",
        name: "vm_timeout_secs",
        kind: Kind::Int { min: 1, max: 600 },
        default: "30",
        example: "",
        help: "Time one VictoriaMetrics request (a write of queued usage, or a proxied query) may take.",
        set: setter!(backend.vm_timeout_secs, Int, u64),
    },
    Key {
        section: "pricing",
        name: "file",
        kind: Kind::OptPath,
        default: "",
        example: "\"/etc/toki-sync/prices.toml\"",
        help: "TOML file with model prices (USD per million tokens) that replace or add to the built-in table; see the README for the format. Read at start-up; a bad file stops start-up.",
        set: setter!(pricing.file, OptPath),
    },
    Key {
        section: "log",
        name: "level",
        kind: Kind::LogFilter,
        default: "info",
        example: "",
        help: "Log level (error, warn, info, debug, trace) or tracing directives such as \"info,toki_sync::http=debug\". RUST_LOG wins when set.",
        set: |c, p| {
            if let Parsed::Str(v) = p {
                c.log.level = v
            }
        },
    },
];

const SECTION_HELP: &[(&str, &str)] = &[
    ("server", "Listeners and public address."),
    ("http", "HTTP limits."),
    ("storage", "Where the single redb data file lives."),
    ("auth", "Tokens, registration and brute-force protection."),
    ("sync", "The TCP sync listener for toki daemons."),
    ("tls", "TLS for the sync port."),
    ("backend", "Optional VictoriaMetrics for PromQL."),
    ("pricing", "Model prices for the costs in usage responses."),
    ("log", "Logging (to stderr)."),
];

/// Where a value came from, for error messages.
enum Origin<'a> {
    Default,
    File(&'a Path),
    Env(&'a str),
    Flag(&'static str),
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "built-in default"),
            Origin::File(p) => write!(f, "in {}", p.display()),
            Origin::Env(name) => write!(f, "from environment variable {name}"),
            Origin::Flag(flag) => write!(f, "from command-line flag {flag}"),
        }
    }
}

/// A raw value before checking.
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

impl Kind {
    fn allowed(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Str => "a string".into(),
            Kind::Ip => "an IP address such as \"0.0.0.0\", \"127.0.0.1\" or \"::\"".into(),
            Kind::Enum(names) => {
                format!("one of {}", names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "))
            }
            Kind::Url => "an http:// or https:// URL without query or fragment (or \"\" for unset)".into(),
            Kind::CidrList => "a list of IP addresses or CIDR networks such as [\"10.0.0.0/8\"]".into(),
            Kind::LogFilter => "a level (error, warn, info, debug, trace) or tracing directives".into(),
            Kind::OptPath => "a file path (or \"\" for unset)".into(),
        }
    }

    fn parse(&self, raw: Raw<'_>) -> Result<Parsed, String> {
        match (self, raw) {
            (Kind::Int { min, max }, raw) => {
                let v = match raw {
                    Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
                    Raw::Text(s) => s.trim().parse::<u64>().ok(),
                    Raw::Toml(_) => None,
                };
                match v {
                    Some(v) if v >= *min && v <= *max => Ok(Parsed::Int(v)),
                    _ => Err(String::new()),
                }
            }
            (Kind::CidrList, raw) => {
                let items: Vec<String> = match raw {
                    Raw::Toml(toml::Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(String::new))
                        .collect::<Result<_, _>>()?,
                    Raw::Text(s) => {
                        s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
                    }
                    Raw::Toml(_) => return Err(String::new()),
                };
                items.iter().map(|s| s.parse::<Cidr>()).collect::<Result<Vec<_>, _>>().map(Parsed::Cidrs)
            }
            (kind, raw) => {
                let s = match raw {
                    Raw::Toml(toml::Value::String(s)) => s.as_str(),
                    Raw::Text(s) => s,
                    Raw::Toml(_) => return Err(String::new()),
                };
                kind.parse_text(s)
            }
        }
    }

    fn parse_text(&self, s: &str) -> Result<Parsed, String> {
        match self {
            Kind::Str => {
                if s.is_empty() {
                    Err("it must not be empty".into())
                } else {
                    Ok(Parsed::Str(s.to_owned()))
                }
            }
            Kind::Ip => s.trim().parse::<IpAddr>().map(Parsed::Ip).map_err(|_| String::new()),
            Kind::Enum(names) => {
                if names.contains(&s) {
                    Ok(Parsed::Str(s.to_owned()))
                } else {
                    Err(String::new())
                }
            }
            Kind::Url => parse_url(s).map(Parsed::OptStr),
            Kind::OptPath => Ok(Parsed::OptStr(Some(s.trim()).filter(|p| !p.is_empty()).map(str::to_owned))),
            Kind::LogFilter => {
                tracing_subscriber::EnvFilter::try_new(s).map_err(|e| e.to_string())?;
                Ok(Parsed::Str(s.to_owned()))
            }
            Kind::Int { .. } | Kind::CidrList => unreachable!("handled in parse"),
        }
    }

    /// The default rendered as a TOML literal for `print-default`.
    fn toml_literal(&self, text: &str) -> String {
        match self {
            Kind::Int { .. } => text.to_owned(),
            Kind::CidrList => {
                let items: Vec<String> =
                    text.split(',').filter(|s| !s.is_empty()).map(|s| format!("\"{s}\"")).collect();
                format!("[{}]", items.join(", "))
            }
            _ => format!("\"{text}\""),
        }
    }
}

fn parse_url(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| "it must start with http:// or https://".to_owned())?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("it has no host".into());
    }
    if s.contains('?') || s.contains('#') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it must not contain a query, a fragment or spaces".into());
    }
    Ok(Some(s.trim_end_matches('/').to_owned()))
}

fn find_key(section: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

fn env_name(key: &Key) -> String {
    format!("{ENV_PREFIX}{}__{}", key.section.to_uppercase(), key.name.to_uppercase())
}

fn apply(cfg: &mut Config, key: &Key, raw: Raw<'_>, origin: Origin<'_>) -> Result<(), ConfigError> {
    let shown = match &raw {
        Raw::Toml(v) => v.to_string(),
        Raw::Text(s) => format!("{s:?}"),
    };
    match key.kind.parse(raw) {
        Ok(parsed) => {
            (key.set)(cfg, parsed);
            Ok(())
        }
        Err(detail) => {
            let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
            Err(ConfigError(format!(
                "invalid value for `{}.{}` {origin}: got {shown}{detail}; expected {}",
                key.section,
                key.name,
                key.kind.allowed()
            )))
        }
    }
}

impl Config {
    /// The built-in defaults, exactly as `print-default` shows them.
    pub fn defaults() -> Config {
        let mut cfg = Config {
            server: ServerConfig {
                bind: IpAddr::from([0, 0, 0, 0]),
                http_port: 0,
                sync_port: 0,
                external_url: None,
                trusted_proxies: Vec::new(),
                shutdown_grace_secs: 0,
            },
            http: HttpConfig {
                max_body_bytes: 0,
                header_timeout_secs: 0,
                request_timeout_secs: 0,
                max_connections: 0,
            },
            storage: StorageConfig { data_dir: PathBuf::new() },
            auth: AuthConfig {
                access_token_ttl_secs: 0,
                refresh_token_ttl_secs: 0,
                registration_mode: RegistrationMode::Closed,
                brute_force_max_attempts: 0,
                brute_force_window_secs: 0,
                brute_force_lockout_secs: 0,
                refresh_reuse_grace_secs: 0,
                device_code_ttl_secs: 0,
            },
            sync: SyncConfig {
                plaintext: PlaintextPolicy::Loopback,
                plaintext_allow: Vec::new(),
                idle_timeout_secs: 0,
                handshake_timeout_secs: 0,
                max_connections: 0,
                max_frame_bytes: 0,
                max_decompressed_bytes: 0,
                sync_err_delay_secs: 0,
            },
            tls: TlsConfig::default(),
            backend: BackendConfig { vm_url: None, vm_timeout_secs: 0 },
            pricing: PricingConfig::default(),
            log: LogConfig { level: String::new() },
            secrets: Secrets::default(),
            file: None,
            warnings: Vec::new(),
        };
        for key in KEYS {
            apply(&mut cfg, key, Raw::Text(key.default), Origin::Default)
                .expect("built-in defaults are valid");
        }
        cfg
    }

    /// Reads the configuration in precedence order: defaults, file, environment, flags.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        let mut cfg = Config::defaults();

        let file = overrides
            .config_file
            .clone()
            .or_else(|| env.get(ENV_CONFIG).filter(|s| !s.is_empty()).map(PathBuf::from));
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
            cfg.apply_file(path, &text)?;
            cfg.file = Some(path.clone());
        }

        cfg.apply_env(env)?;

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
                apply(&mut cfg, key, Raw::Text(&v), Origin::Flag(flag))?;
            }
        }

        cfg.secrets = Secrets {
            admin_password: env.get(ENV_ADMIN_PASSWORD).filter(|s| !s.is_empty()).map(str::to_owned),
            jwt_secret: env.get(ENV_JWT_SECRET).filter(|s| !s.is_empty()).map(str::to_owned),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(format!("config file {} is not valid TOML: {e}", path.display()))
        })?;
        for (section, value) in &table {
            let Some(inner) = value.as_table() else {
                if KEYS.iter().any(|k| k.section == section) {
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
                    Some(key) => apply(self, key, Raw::Toml(v), Origin::File(path))?,
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
        // Long names first, so the shortcuts win if both are given.
        for (name, value) in &env.0 {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            if ENV_NOT_KEYS.contains(&name.as_str()) || ENV_SHORTCUTS.iter().any(|s| s.0 == name) {
                continue;
            }
            let key = rest.split_once("__").and_then(|(s, k)| find_key(&s.to_lowercase(), &k.to_lowercase()));
            match key {
                Some(key) => apply(self, key, Raw::Text(value), Origin::Env(name))?,
                None => self.warnings.push(format!(
                    "unknown environment variable {name} (ignored); keys are set as {ENV_PREFIX}<SECTION>__<KEY>, e.g. TOKI_SYNC_AUTH__REGISTRATION_MODE"
                )),
            }
        }
        for (name, section, key) in ENV_SHORTCUTS {
            if let (Some(v), Some(key)) = (env.get(name), find_key(section, key)) {
                apply(self, key, Raw::Text(v), Origin::Env(name))?;
            }
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
        if self.server.http_port != 0 && self.server.http_port == self.server.sync_port {
            return Err(ConfigError(format!(
                "`server.http_port` and `server.sync_port` are both {}; they must differ",
                self.server.http_port
            )));
        }
        Ok(())
    }

    /// `<data_dir>/toki-sync.redb`
    pub fn db_path(&self) -> PathBuf {
        self.storage.data_dir.join(crate::store::DB_FILE_NAME)
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
    for key in KEYS {
        consider(format!("{}.{}", key.section, key.name));
        consider(key.section.to_owned());
    }
    // A right key in the wrong section.
    if let Some((_, name)) = given.split_once('.') {
        if let Some(key) = KEYS.iter().find(|k| k.name == name) {
            return format!("; did you mean `{}.{}`?", key.section, key.name);
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

/// The commented example configuration (`toki-sync config print-default`, also shipped as
/// `packaging/toki-sync.toml`).
pub fn default_file() -> String {
    let mut out = String::from(
        "# toki-sync configuration.\n\
         #\n\
         # Every key is optional; the values shown are the built-in defaults, and commented-out\n\
         # keys are unset. Precedence, lowest first: built-in defaults < this file <\n\
         # environment < command-line flags. Any key can be set from the environment as\n\
         # TOKI_SYNC_<SECTION>__<KEY>, e.g. TOKI_SYNC_AUTH__REGISTRATION_MODE=open.\n\
         #\n\
         # Secrets come only from the environment: TOKI_ADMIN_PASSWORD (password of the first\n\
         # admin account, created on first start; generated and printed once if unset) and\n\
         # JWT_SECRET (token signing key, at least 32 characters; generated and kept in the\n\
         # data file if unset).\n",
    );
    for (section, help) in SECTION_HELP {
        out.push_str(&format!("\n# {help}\n[{section}]\n"));
        for key in KEYS.iter().filter(|k| k.section == *section) {
            for line in wrap(key.help, 94) {
                out.push_str(&format!("# {line}\n"));
            }
            let shortcut = ENV_SHORTCUTS
                .iter()
                .find(|s| s.1 == key.section && s.2 == key.name)
                .map(|s| s.0.to_owned())
                .unwrap_or_else(|| env_name(key));
            out.push_str(&format!("# Environment: {shortcut}\n"));
            if key.default.is_empty() {
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
    for key in KEYS {
        let default = match (key.default.is_empty(), key.kind) {
            (true, Kind::CidrList) => "`[]`".to_owned(),
            (true, _) => "unset".to_owned(),
            (false, kind) => format!("`{}`", kind.toml_literal(key.default)),
        };
        out.push_str(&format!(
            "| `{}.{}` | {} | `{}` | {} |\n",
            key.section,
            key.name,
            default,
            env_name(key),
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
    out.push_str(&format!("  {ENV_ADMIN_PASSWORD:<34} password of the first admin (first start only)\n"));
    out.push_str(&format!(
        "  {ENV_JWT_SECRET:<34} JWT signing secret (>= 32 chars; default: generated, kept in the data file)\n"
    ));
    out.push_str(&format!("  {:<34} log filter, overrides log.level\n", "RUST_LOG"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], ov: Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let mut ov = ov;
        if let Some(text) = file {
            let p = dir.path().join("toki-sync.toml");
            std::fs::write(&p, text).unwrap();
            ov.config_file = Some(p);
        }
        Config::load(&ov, &Env::from_pairs(env.iter().copied()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::defaults();
        assert_eq!(c.server.http_port, 9091);
        assert_eq!(c.server.sync_port, 9090);
        assert_eq!(c.auth.access_token_ttl_secs, 3600);
        assert_eq!(c.auth.refresh_token_ttl_secs, 7_776_000);
        assert_eq!(c.auth.registration_mode, RegistrationMode::Closed);
        assert_eq!(c.auth.brute_force_max_attempts, 5);
        assert_eq!(c.auth.brute_force_window_secs, 300);
        assert_eq!(c.auth.brute_force_lockout_secs, 900);
        assert_eq!(c.auth.device_code_ttl_secs, 900);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
        assert!(c.backend.vm_url.is_none());
        assert!(c.server.external_url.is_none());
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let file = "[server]\nhttp_port = 1000\nsync_port = 1001\nbind = \"127.0.0.1\"\n[auth]\nregistration_mode = \"open\"\n";
        let c = load(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(c.server.http_port, 1000);
        assert_eq!(c.auth.registration_mode, RegistrationMode::Open);

        let env = [("TOKI_SYNC_HTTP_PORT", "2000"), ("TOKI_SYNC_AUTH__REGISTRATION_MODE", "approval")];
        let c = load(Some(file), &env, Overrides::default()).unwrap();
        assert_eq!(c.server.http_port, 2000);
        assert_eq!(c.server.sync_port, 1001);
        assert_eq!(c.auth.registration_mode, RegistrationMode::Approval);

        let ov = Overrides { http_port: Some("3000".into()), ..Default::default() };
        let c = load(Some(file), &env, ov).unwrap();
        assert_eq!(c.server.http_port, 3000);
    }

    #[test]
    fn shortcut_env_beats_long_env() {
        let env = [("TOKI_SYNC_SERVER__HTTP_PORT", "2000"), ("TOKI_SYNC_HTTP_PORT", "2001")];
        let c = load(None, &env, Overrides::default()).unwrap();
        assert_eq!(c.server.http_port, 2001);
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        let e = load(Some("[server]\nhttp_port = 70000\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("server.http_port") && e.contains("0 to 65535"), "{e}");
        let e = load(None, &[("TOKI_SYNC_AUTH__REGISTRATION_MODE", "sometimes")], Overrides::default())
            .unwrap_err()
            .0;
        assert!(
            e.contains("auth.registration_mode")
                && e.contains("\"approval\"")
                && e.contains("TOKI_SYNC_AUTH__REGISTRATION_MODE"),
            "{e}"
        );
        let e = load(Some("[server]\nbind = 5\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("server.bind") && e.contains("IP address"), "{e}");
        let e = load(Some("[backend]\nvm_url = \"ftp://x\"\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("backend.vm_url") && e.contains("http://"), "{e}");
        let e = load(Some("server = 1\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("must be a table"), "{e}");
        let e = load(Some("[server\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("not valid TOML"), "{e}");
        let e = load(None, &[("JWT_SECRET", "short")], Overrides::default()).unwrap_err().0;
        assert!(e.contains("at least 32"), "{e}");
        let e = load(None, &[("TOKI_ADMIN_PASSWORD", "short")], Overrides::default()).unwrap_err().0;
        assert!(e.contains("TOKI_ADMIN_PASSWORD") && e.contains("8-128"), "{e}");
        let ov = Overrides { sync_port: Some("x".into()), ..Default::default() };
        let e = load(None, &[], ov).unwrap_err().0;
        assert!(e.contains("--sync-port"), "{e}");
        let e =
            load(Some("[auth]\nrefresh_token_ttl_secs = 600\n"), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("refresh_token_ttl_secs"), "{e}");
    }

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let c = load(
            Some("[server]\nhtp_port = 1\n[auth]\nbind = \"x\"\n[nonsense]\na = 1\n"),
            &[("TOKI_SYNC_WHATEVER", "1"), ("TOKI_SYNC_FULL_TESTS", "1")],
            Overrides::default(),
        )
        .unwrap();
        let w = c.warnings.join("\n");
        assert!(w.contains("`server.htp_port`") && w.contains("did you mean `server.http_port`"), "{w}");
        assert!(w.contains("`auth.bind`") && w.contains("did you mean `server.bind`"), "{w}");
        assert!(w.contains("nonsense.a"), "{w}");
        assert!(w.contains("TOKI_SYNC_WHATEVER"), "{w}");
        assert!(!w.contains("FULL_TESTS"), "{w}");
    }

    #[test]
    fn lists_urls_and_secrets() {
        let c = load(
            Some("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nexternal_url = \"https://t.example.com/\"\n"),
            &[("JWT_SECRET", "0123456789abcdef0123456789abcdef"), ("TOKI_ADMIN_PASSWORD", "correct horse")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(c.server.external_url.as_deref(), Some("https://t.example.com"));
        assert!(c.secrets.jwt_secret.is_some());
        assert!(!format!("{:?}", c.secrets).contains("correct horse"));
        let c = load(
            None,
            &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", "127.0.0.1, 10.1.0.0/16")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn default_file_round_trips_to_defaults() {
        let text = default_file();
        let c = load(Some(&text), &[], Overrides::default()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let d = Config::defaults();
        assert_eq!(format!("{:?}", c.server), format!("{:?}", d.server));
        assert_eq!(format!("{:?}", c.auth), format!("{:?}", d.auth));
        assert_eq!(format!("{:?}", c.http), format!("{:?}", d.http));
        // Every key appears, set or commented out.
        for key in KEYS {
            assert!(text.contains(&format!("{} = ", key.name)), "{} missing", key.name);
        }
    }

    #[test]
    fn shipped_example_is_current() {
        let shipped = include_str!("../packaging/toki-sync.toml");
        assert_eq!(
            shipped,
            default_file(),
            "packaging/toki-sync.toml is stale: regenerate it with `toki-sync config print-default > packaging/toki-sync.toml`"
        );
    }
}
