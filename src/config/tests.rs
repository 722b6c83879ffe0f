//! Tests of the whole configuration: layering, errors, printers.

use super::load::{Env, Overrides};
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
fn shortcut_and_long_env_must_agree() {
    let env = [("TOKI_SYNC_SERVER__HTTP_PORT", "2000"), ("TOKI_SYNC_HTTP_PORT", "2001")];
    let e = load(None, &env, Overrides::default()).unwrap_err().0;
    assert!(
        e.contains("TOKI_SYNC_HTTP_PORT (\"2001\")")
            && e.contains("TOKI_SYNC_SERVER__HTTP_PORT (\"2000\")")
            && e.contains("server.http_port"),
        "{e}"
    );
    let env = [("TOKI_SYNC_STORAGE__DATA_DIR", "/srv/toki"), ("TOKI_SYNC_DATA_DIR", "/srv/toki")];
    let c = load(None, &env, Overrides::default()).unwrap();
    assert_eq!(c.storage.data_dir, std::path::Path::new("/srv/toki"));
    let c = load(None, &[("TOKI_SYNC_HTTP_PORT", "2001")], Overrides::default()).unwrap();
    assert_eq!(c.server.http_port, 2001);
}

#[test]
fn log_levels_are_checked_and_rust_log_wins() {
    for good in ["info", "DEBUG", "off", "warn,toki_sync::http=debug", "toki_sync=trace", "info,"] {
        let c = load(Some(&format!("[log]\nlevel = {good:?}\n")), &[], Overrides::default()).unwrap();
        assert_eq!(c.log.level, good);
    }
    for bad in ["verbose", "inf", "info,toki_sync=loud", "=debug", ""] {
        let e = load(Some(&format!("[log]\nlevel = {bad:?}\n")), &[], Overrides::default()).unwrap_err().0;
        assert!(e.contains("log.level") && e.contains("error, warn, info, debug, trace"), "{bad}: {e}");
    }
    let c = load(Some("[log]\nlevel = \"warn\"\n"), &[("RUST_LOG", "debug")], Overrides::default()).unwrap();
    assert_eq!(c.log.level, "debug");
    let e = load(None, &[("RUST_LOG", "chatty")], Overrides::default()).unwrap_err().0;
    assert!(e.contains("RUST_LOG") && e.contains("`chatty` is not a level"), "{e}");
    let c = load(None, &[("RUST_LOG", "")], Overrides::default()).unwrap();
    assert_eq!(c.log.level, "info", "an empty RUST_LOG is unset");
}

#[test]
fn warnings_come_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.toml");
    std::fs::write(&p, "[server]\nhtp_port = 1\nhttp_port = 99999\n").unwrap();
    let ov = Overrides { config_file: Some(p), ..Default::default() };
    let f = Config::load_reporting(&ov, &Env::default()).unwrap_err();
    assert!(f.error.0.contains("server.http_port"), "{}", f.error);
    assert_eq!(f.warnings.len(), 1);
    assert!(f.warnings[0].contains("server.htp_port"), "{:?}", f.warnings);
}

#[test]
fn plain_http_on_the_network_is_warned_about() {
    let c = Config::defaults();
    let w = c.plain_http_warning().expect("0.0.0.0 without a proxy");
    assert!(w.contains("0.0.0.0:9091") && w.contains("server.trusted_proxies"), "{w}");
    let c = load(None, &[("TOKI_SYNC_BIND", "127.0.0.1")], Overrides::default()).unwrap();
    assert_eq!(c.plain_http_warning(), None);
    let c = load(None, &[("TOKI_SYNC_BIND", "::1")], Overrides::default()).unwrap();
    assert_eq!(c.plain_http_warning(), None);
    let c = load(None, &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", "10.0.0.5")], Overrides::default()).unwrap();
    assert_eq!(c.plain_http_warning(), None, "a reverse proxy fronts it");
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
    let e = load(Some("[auth]\nrefresh_token_ttl_secs = 600\n"), &[], Overrides::default()).unwrap_err().0;
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
    let c =
        load(None, &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", "127.0.0.1, 10.1.0.0/16")], Overrides::default())
            .unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 2);
    // The TOML form, as in the file (and as the error message shows it).
    let c = load(
        None,
        &[
            ("TOKI_SYNC_SERVER__TRUSTED_PROXIES", " [\"127.0.0.1\", \"10.1.0.0/16\"]"),
            ("TOKI_SYNC_SYNC__PLAINTEXT_ALLOW", "[]"),
        ],
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert!(c.sync.plaintext_allow.is_empty());
    for bad in ["[\"127.0.0.1\"", "[1, 2]", "[\"nope\"]"] {
        let e =
            load(None, &[("TOKI_SYNC_SERVER__TRUSTED_PROXIES", bad)], Overrides::default()).unwrap_err().0;
        assert!(e.contains("server.trusted_proxies") && e.contains("comma-separated"), "{bad}: {e}");
    }
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
    for (_, key) in all_keys() {
        assert!(text.contains(&format!("{} = ", key.name)), "{} missing", key.name);
    }
}

#[test]
fn shipped_example_is_current() {
    let shipped = include_str!("../../packaging/toki-sync.toml");
    assert_eq!(
        shipped,
        packaged_file(),
        "packaging/toki-sync.toml is stale: regenerate it with `cargo run -q -- config print-default --packaged > packaging/toki-sync.toml`"
    );
}

/// One source of truth for where the packaged server keeps its data: the packaged file says it,
/// the unit passes that file and sets no data-directory variable that would override it, and
/// the directory is the unit's StateDirectory.
#[test]
fn packaged_config_and_unit_agree() {
    let unit = include_str!("../../packaging/toki-sync.service");
    let c = load(Some(&packaged_file()), &[], Overrides::default()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.storage.data_dir, std::path::Path::new(PACKAGED_DATA_DIR));
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains("--config /etc/toki-sync/toki-sync.toml") && !exec.contains("--data-dir"),
        "{exec}"
    );
    let state = unit.lines().find_map(|l| l.strip_prefix("StateDirectory=")).unwrap();
    assert_eq!(format!("/var/lib/{}", state.trim()), PACKAGED_DATA_DIR);
    for line in unit.lines().filter(|l| l.starts_with("Environment=")) {
        assert!(!line.contains("DATA_DIR") && !line.contains("TOKI_SYNC_CONFIG"), "{line}");
    }
    // Besides data_dir, the packaged file is the default file.
    let d = default_file();
    let diff: Vec<_> = d.lines().filter(|l| !packaged_file().lines().any(|p| p == *l)).collect();
    assert_eq!(diff, vec!["data_dir = \"data\""]);
}

#[test]
fn oidc_section_is_checked_and_its_secret_kept_out_of_debug_output() {
    let ok = "[server]\nexternal_url = \"https://toki.example.com\"\n[oidc]\nissuer_url = \"https://auth.example.com\"\nclient_id = \"toki\"\nscopes = [\"openid\", \"groups\"]\ngroups_claim = \"groups\"\nadmin_groups = [\"admins\"]\npassword_login = false\nbreak_glass_admin = \"admin\"\n";
    let c =
        load(Some(ok), &[("TOKI_OIDC_CLIENT_SECRET", "very-secret-value")], Overrides::default()).unwrap();
    assert!(c.oidc.enabled());
    assert_eq!(
        crate::config::oidc_redirect_url(&c).as_deref(),
        Some("https://toki.example.com/auth/callback")
    );
    assert_eq!(c.oidc.scopes, ["openid", "groups"]);
    assert!(!c.oidc.password_login);
    assert!(!format!("{c:?}").contains("very-secret-value"), "the client secret is never shown");
    assert_eq!(c.secrets.oidc_client_secret.as_deref(), Some("very-secret-value"));

    let defaults = Config::defaults();
    assert!(!defaults.oidc.enabled());
    assert_eq!(defaults.oidc.scopes, ["openid", "profile", "email"]);
    assert_eq!(defaults.oidc.username_claim, "preferred_username");
    assert!(defaults.oidc.password_login);

    let err = |file: &str, env: &[(&str, &str)]| load(Some(file), env, Overrides::default()).unwrap_err().0;
    let base = "[oidc]\nissuer_url = \"https://auth.example.com\"\nclient_id = \"toki\"\nredirect_url = \"https://t.example.com/auth/callback\"\n";
    let e = err("[oidc]\nclient_id = \"toki\"\n", &[]);
    assert!(e.contains("oidc.issuer_url"), "{e}");
    let e = err("[oidc]\nissuer_url = \"https://auth.example.com\"\nclient_id = \"toki\"\n", &[]);
    assert!(e.contains("oidc.redirect_url") && e.contains("server.external_url"), "{e}");
    let e = err("[oidc]\nissuer_url = \"auth.example.com\"\nclient_id = \"x\"\n", &[]);
    assert!(e.contains("oidc.issuer_url"), "{e}");
    let e = err(&format!("{base}scopes = [\"profile\"]\n"), &[]);
    assert!(e.contains("oidc.scopes") && e.contains("openid"), "{e}");
    let e = err(&format!("{base}admin_groups = [\"a\"]\n"), &[]);
    assert!(e.contains("oidc.groups_claim"), "{e}");
    let e = err(&format!("{base}password_login = \"no\"\n"), &[]);
    assert!(e.contains("oidc.password_login") && e.contains("true or false"), "{e}");
    let e = err(&format!("{base}client_secret_file = \"/nonexistent/secret\"\n"), &[]);
    assert!(e.contains("oidc.client_secret_file") && e.contains("/nonexistent/secret"), "{e}");
    let e = err("[oidc]\npassword_login = false\n", &[]);
    assert!(e.contains("password_login"), "{e}");
    let e = err(&format!("{base}break_glass_admin = \"a b\"\n"), &[]);
    assert!(e.contains("oidc.break_glass_admin"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let file = format!("{base}client_secret_file = {:?}\n", secret.display().to_string());
    let c = load(Some(&file), &[], Overrides::default()).unwrap();
    assert_eq!(c.secrets.oidc_client_secret.as_deref(), Some("from-a-file"));
    let e = err(&file, &[("TOKI_OIDC_CLIENT_SECRET", "x")]);
    assert!(e.contains("use one"), "{e}");
    let c = load(None, &[("TOKI_SYNC_OIDC__SCOPES", "openid, email")], Overrides::default());
    assert_eq!(c.unwrap().oidc.scopes, ["openid", "email"]);
}

#[test]
fn acme_defaults_https_to_443_and_refuses_what_cannot_work() {
    let c = load(Some("[acme]\ndomains = [\"toki.example.com\"]\n"), &[], Overrides::default()).unwrap();
    assert_eq!(c.server.https_port, Some(443));
    assert_eq!(c.acme.directory(), super::acme::LETS_ENCRYPT);
    let c =
        load(Some("[acme]\ndomains = [\"toki.example.com\"]\nstaging = true\n"), &[], Overrides::default())
            .unwrap();
    assert_eq!(c.acme.directory(), super::acme::LETS_ENCRYPT_STAGING);
    let c = load(None, &[("TOKI_SYNC_SERVER__HTTPS_PORT", "8443")], Overrides::default()).unwrap();
    assert_eq!(c.server.https_port, Some(8443));
    assert!(!c.acme.enabled());
    let c = load(Some("[server]\nhttps_port = 0\n"), &[], Overrides::default()).unwrap();
    assert_eq!(c.server.https_port, Some(0));

    let refused = |toml: &str| load(Some(toml), &[], Overrides::default()).unwrap_err().0;
    let e = refused("[acme]\ndomains = [\"*.example.com\"]\n");
    assert!(e.contains("wildcard"), "{e}");
    let e = refused("[acme]\ndomains = [\"10.0.0.1\"]\n");
    assert!(e.contains("not a DNS name"), "{e}");
    let e = refused("[acme]\ndomains = [\"a.example.com\"]\nemail = \"nobody\"\n");
    assert!(e.contains("acme.email"), "{e}");
    let e = refused("[acme]\nemail = \"ops@example.com\"\n");
    assert!(e.contains("acme.domains") && e.contains("empty"), "{e}");
    let e = refused(
        "[acme]\ndomains = [\"a.example.com\"]\n[tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n",
    );
    assert!(e.contains("tls.cert_file"), "{e}");
    let e = refused(
        "[acme]\ndomains = [\"a.example.com\"]\nstaging = true\ndirectory_url = \"https://ca.example/dir\"\n",
    );
    assert!(e.contains("choose one"), "{e}");
    let e = refused("[server]\nredirect_http_to_https = true\n");
    assert!(e.contains("server.https_port"), "{e}");
    let e = refused("[server]\nhttps_port = 9090\n");
    assert!(e.contains("server.sync_port") && e.contains("server.https_port"), "{e}");
    let e = refused("[server]\nhttps_port = 70000\n");
    assert!(e.contains("0 to 65535"), "{e}");
    let e = refused("[acme]\ndomains = [\"a.example.com\"]\nchallenge = \"dns-01\"\n");
    assert!(e.contains("acme.challenge") && e.contains("tls-alpn-01"), "{e}");
}

#[test]
fn plain_http_beside_https_warns_until_it_redirects() {
    let env = [("TOKI_SYNC_SERVER__HTTPS_PORT", "443")];
    let c = load(None, &env, Overrides::default()).unwrap();
    let w = c.plain_http_warning().expect("plain HTTP still served to the network");
    assert!(w.contains("redirect_http_to_https"), "{w}");
    let env = [("TOKI_SYNC_SERVER__HTTPS_PORT", "443"), ("TOKI_SYNC_SERVER__REDIRECT_HTTP_TO_HTTPS", "true")];
    assert_eq!(load(None, &env, Overrides::default()).unwrap().plain_http_warning(), None);
}
