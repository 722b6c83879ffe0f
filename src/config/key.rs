//! What a key is, the kinds of value a key can hold, and how each kind is read from the file
//! (TOML values) or the environment and flags (text), checked and stored.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use super::{Config, ConfigError};
use crate::net::Cidr;

/// A `[section]` of the file: its keys and the line `print-default` shows above it.
pub(super) struct Section {
    pub name: &'static str,
    pub help: &'static str,
    pub keys: &'static [Key],
}

/// The type of a key, which decides how file and environment values are read and checked.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Int {
        min: u64,
        max: u64,
    },
    Str,
    Ip,
    Enum(&'static [&'static str]),
    /// An http(s) URL; empty means unset.
    Url,
    /// A list of CIDR networks; from the environment, comma-separated or a TOML list.
    CidrList,
    /// A tracing filter: a level or `target=level` directives.
    LogFilter,
    /// A file path; empty means unset.
    OptPath,
    /// `true` or `false`.
    Bool,
    /// A string; empty means unset.
    OptStr,
    /// A list of non-empty strings; from the environment, comma-separated.
    StrList,
    /// An IP address and port such as `127.0.0.1:9464`; empty means unset.
    OptSocketAddr,
    /// A TCP port (0 to 65535); empty means unset.
    OptPort,
}

/// A checked value, ready to be stored.
pub(super) enum Parsed {
    Int(u64),
    Str(String),
    OptStr(Option<String>),
    Ip(IpAddr),
    Cidrs(Vec<Cidr>),
    Bool(bool),
    Strs(Vec<String>),
}

pub(super) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// Default in environment-string form; empty for "unset".
    pub default: &'static str,
    /// Shown (commented out) by `print-default` when the default is unset.
    pub example: &'static str,
    pub help: &'static str,
    pub set: fn(&mut Config, Parsed),
}

macro_rules! setter {
    ($($field:ident).+, Int, $ty:ty) => {
        |c: &mut Config, p: Parsed| if let Parsed::Int(v) = p { c.$($field).+ = v as $ty }
    };
    ($($field:ident).+, OptPath) => {
        |c: &mut Config, p: Parsed| if let Parsed::OptStr(v) = p { c.$($field).+ = v.map(std::path::PathBuf::from) }
    };
    ($($field:ident).+, $variant:ident) => {
        |c: &mut Config, p: Parsed| if let Parsed::$variant(v) = p { c.$($field).+ = v }
    };
}

/// Where a value came from, for error messages.
pub(super) enum Origin<'a> {
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
pub(super) enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

impl Kind {
    pub fn allowed(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Str => "a string".into(),
            Kind::Ip => "an IP address such as \"0.0.0.0\", \"127.0.0.1\" or \"::\"".into(),
            Kind::Enum(names) => {
                format!("one of {}", names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "))
            }
            Kind::Url => "an http:// or https:// URL without query or fragment (or \"\" for unset)".into(),
            Kind::CidrList => "a list of IP addresses or CIDR networks such as [\"10.0.0.0/8\"] (from the environment also comma-separated: 10.0.0.0/8,127.0.0.1)".into(),
            Kind::LogFilter => format!(
                "a level ({}) or comma-separated directives TARGET=LEVEL after an optional level, such as \"info,toki_sync::http=debug\"",
                LOG_LEVELS.join(", ")
            ),
            Kind::OptPath => "a file path (or \"\" for unset)".into(),
            Kind::Bool => "true or false".into(),
            Kind::OptStr => "a string (or \"\" for unset)".into(),
            Kind::StrList => "a list of non-empty strings such as [\"a\", \"b\"]".into(),
            Kind::OptSocketAddr => {
                "an IP address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\" (or \"\" for unset)"
                    .into()
            }
            Kind::OptPort => "a port from 0 to 65535 (or \"\" for unset)".into(),
        }
    }

    pub fn parse(&self, raw: Raw<'_>) -> Result<Parsed, String> {
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
            (Kind::OptPort, raw) => {
                let text = match raw {
                    Raw::Toml(toml::Value::Integer(i)) => i.to_string(),
                    Raw::Toml(toml::Value::String(s)) => s.trim().to_owned(),
                    Raw::Text(s) => s.trim().to_owned(),
                    Raw::Toml(_) => return Err(String::new()),
                };
                if text.is_empty() {
                    return Ok(Parsed::OptStr(None));
                }
                text.parse::<u16>().map(|p| Parsed::OptStr(Some(p.to_string()))).map_err(|_| String::new())
            }
            (Kind::Bool, raw) => match raw {
                Raw::Toml(toml::Value::Boolean(b)) => Ok(Parsed::Bool(*b)),
                Raw::Text(s) => match s.trim() {
                    "true" => Ok(Parsed::Bool(true)),
                    "false" => Ok(Parsed::Bool(false)),
                    _ => Err(String::new()),
                },
                Raw::Toml(_) => Err(String::new()),
            },
            (Kind::StrList, raw) => {
                let items: Vec<String> = match raw {
                    Raw::Toml(toml::Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_str().map(|s| s.trim().to_owned()).ok_or_else(String::new))
                        .collect::<Result<_, _>>()?,
                    Raw::Text(s) => {
                        s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
                    }
                    Raw::Toml(_) => return Err(String::new()),
                };
                if items.iter().any(|s| s.is_empty() || s.chars().any(char::is_control)) {
                    return Err("entries must not be empty".into());
                }
                Ok(Parsed::Strs(items))
            }
            (Kind::CidrList, raw) => {
                let items: Vec<String> = match raw {
                    Raw::Toml(toml::Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(String::new))
                        .collect::<Result<_, _>>()?,
                    // The TOML form the file uses (`["127.0.0.1"]`), or plain commas.
                    Raw::Text(s) if s.trim_start().starts_with('[') => toml_list(s)?,
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
            Kind::OptStr => Ok(Parsed::OptStr(Some(s.trim()).filter(|p| !p.is_empty()).map(str::to_owned))),
            Kind::OptSocketAddr => match s.trim() {
                "" => Ok(Parsed::OptStr(None)),
                t => t
                    .parse::<std::net::SocketAddr>()
                    .map(|a| Parsed::OptStr(Some(a.to_string())))
                    .map_err(|_| String::new()),
            },
            Kind::LogFilter => {
                check_log_filter(s)?;
                Ok(Parsed::Str(s.trim().to_owned()))
            }
            Kind::Int { .. } | Kind::CidrList | Kind::Bool | Kind::StrList | Kind::OptPort => {
                unreachable!("handled in parse")
            }
        }
    }

    /// The default rendered as a TOML literal for `print-default`.
    pub fn toml_literal(&self, text: &str) -> String {
        match self {
            Kind::Int { .. } | Kind::Bool | Kind::OptPort => text.to_owned(),
            Kind::CidrList | Kind::StrList => {
                let items: Vec<String> =
                    text.split(',').filter(|s| !s.is_empty()).map(|s| format!("\"{s}\"")).collect();
                format!("[{}]", items.join(", "))
            }
            _ => format!("\"{text}\""),
        }
    }
}

/// The levels `log.level` and `RUST_LOG` accept, alone or after `target=`.
pub(super) const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// tracing accepts a bare word as a target name (`verbose` = "everything from target verbose"),
/// so a mistyped level would silently switch all logging off. Every directive must therefore be
/// a level or `target=level`.
fn check_log_filter(s: &str) -> Result<(), String> {
    let is_level = |l: &str| LOG_LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    let directives: Vec<&str> = s.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err("it must not be empty".into());
    }
    for d in directives {
        match d.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() && is_level(level) => {}
            Some(_) => return Err(format!("`{d}` is not TARGET=LEVEL with a known level")),
            None if is_level(d) => {}
            None => return Err(format!("`{d}` is not a level")),
        }
    }
    tracing_subscriber::EnvFilter::builder().parse(s).map(drop).map_err(|e| e.to_string())
}

/// A list in TOML syntax, as the file writes it: `["10.0.0.0/8", "127.0.0.1"]`.
fn toml_list(s: &str) -> Result<Vec<String>, String> {
    let not_a_list = || "not a TOML list of strings".to_owned();
    let mut table = format!("v = {s}").parse::<toml::Table>().map_err(|_| not_a_list())?;
    let value = table.remove("v").ok_or_else(not_a_list)?;
    match value {
        toml::Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "list items must be strings".to_owned()))
            .collect(),
        _ => Err(not_a_list()),
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

/// Checks `raw` as `section.key` and stores it; a bad value is an error naming the key, where
/// the value came from, and what is allowed.
pub(super) fn apply(
    cfg: &mut Config,
    section: &str,
    key: &Key,
    raw: Raw<'_>,
    origin: Origin<'_>,
) -> Result<(), ConfigError> {
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
                section,
                key.name,
                key.kind.allowed()
            )))
        }
    }
}
