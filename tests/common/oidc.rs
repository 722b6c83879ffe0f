//! The real OpenID provider for tests (tests/oidc/provider.mjs, npm oidc-provider) and a small
//! HTTP user agent that walks a sign-in through it, following redirects by hand and keeping the
//! provider's cookies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{TestServer, test_config};
use toki_sync::config::Config;

pub const CLIENT_ID: &str = "toki-sync-test";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789";

pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// What is missing to run the provider, if anything.
pub fn missing_provider() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` not found (Debian package `nodejs`)".into()),
    }
    if !provider_dir().join("node_modules/oidc-provider/package.json").exists() {
        return Some("oidc-provider is not installed: run `npm ci` in tests/oidc".into());
    }
    None
}

/// Returns false (after saying so) when the test must be skipped.
pub fn provider_present() -> bool {
    let Some(missing) = missing_provider() else { return true };
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("OIDC test cannot run: {missing}. tests/run.sh installs what it needs.");
    }
    eprintln!("SKIPPED OIDC test: {missing} (set TOKI_SYNC_FULL_TESTS=1 to make this a failure)");
    false
}

/// A free loopback port (bound and released; the caller uses it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Provider {
    /// Starts the provider on `port` (0: any) for a server whose callback is `redirect_uri`.
    pub fn start(port: u16, redirect_uri: &str) -> Provider {
        Self::start_with(port, redirect_uri, &[])
    }

    /// Like `start`, with extra environment for provider.mjs (e.g. CLAIMS_IN_USERINFO=1).
    pub fn start_with(port: u16, redirect_uri: &str, extra_env: &[(&str, &str)]) -> Provider {
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(provider_dir())
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node provider.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("listening ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = rx.recv_timeout(Duration::from_secs(30)).expect("the provider starts within 30 s");
        Provider { child, issuer }
    }

    fn control(&self, path: &str, body: serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let resp = agent
            .post(&format!("{}{path}", self.issuer))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("provider control request");
        assert_eq!(resp.status().as_u16(), 204, "provider control {path}");
    }

    /// Sets the claims the provider gives subject `sub`.
    pub fn account(&self, sub: &str, username: &str, groups: &[&str]) {
        self.control(
            "/__test/account",
            serde_json::json!({"sub": sub, "preferred_username": username, "groups": groups}),
        );
    }

    /// "", "wrong-aud" or "wrong-nonce" (see provider.mjs).
    pub fn mode(&self, mode: &str) {
        self.control("/__test/mode", serde_json::json!({ "mode": mode }));
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A browser without a browser: keeps cookies, never follows a redirect by itself.
pub struct UserAgent {
    agent: ureq::Agent,
    cookies: HashMap<String, String>,
}

impl Default for UserAgent {
    fn default() -> Self {
        UserAgent {
            agent: ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into(),
            cookies: HashMap::new(),
        }
    }
}

/// `base` + a Location that may be relative.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        let origin: String = base.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{location}")
    }
}

/// A query parameter of a URL (decoded).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| toki_sync::http::request::percent_decode(v))
    })
}

impl UserAgent {
    fn finish(&mut self, resp: ureq::http::Response<ureq::Body>) -> Reply {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap_or("");
            if let Some((name, rest)) = v.split_once('=') {
                let value = rest.split(';').next().unwrap_or("");
                self.cookies.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().read_to_string().unwrap_or_default();
        Reply { status, location, body }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn get(&mut self, url: &str) -> Reply {
        let resp = self.agent.get(url).header("Cookie", &self.cookie_header()).call().expect("GET");
        self.finish(resp)
    }

    pub fn post_form(&mut self, url: &str, form: &str) -> Reply {
        let resp = self
            .agent
            .post(url)
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form.to_owned())
            .expect("POST");
        self.finish(resp)
    }

    /// Follows redirects (GET) from `url` until a response that is not a redirect, or until the
    /// next URL starts with `stop_at`; returns the last reply and the URL it came from.
    pub fn follow(&mut self, mut url: String, stop_at: &str) -> (String, Reply) {
        for _ in 0..10 {
            let reply = self.get(&url);
            match (&reply.location, reply.status) {
                (Some(loc), 301..=308) => {
                    let next = absolute(&url, loc);
                    if next.starts_with(stop_at) {
                        return (next, reply);
                    }
                    url = next;
                }
                _ => return (url, reply),
            }
        }
        panic!("too many redirects from {url}");
    }

    /// From the provider's authorization URL to the callback URL on the server (not fetched):
    /// signs in at the provider's page as `login`.
    pub fn sign_in_at_provider(&mut self, provider_auth_url: &str, login: &str, server_base: &str) -> String {
        let (page_url, page) = self.follow(provider_auth_url.to_owned(), server_base);
        assert_eq!(page.status, 200, "the provider's sign-in page: {}", page.body);
        let login_url = format!("{}/login", page_url.split('?').next().unwrap());
        let done = self.post_form(&login_url, &format!("login={login}"));
        let next = absolute(&login_url, done.location.as_deref().expect("redirect after provider sign-in"));
        let (callback, _) = self.follow(next, server_base);
        assert!(callback.starts_with(server_base), "back at the server: {callback}");
        callback
    }

    /// Cancels at the provider's page; returns the callback URL (with `error`).
    pub fn cancel_at_provider(&mut self, provider_auth_url: &str, server_base: &str) -> String {
        let (page_url, page) = self.follow(provider_auth_url.to_owned(), server_base);
        assert_eq!(page.status, 200, "{}", page.body);
        let abort_url = format!("{}/abort", page_url.split('?').next().unwrap());
        let done = self.post_form(&abort_url, "");
        let next = absolute(&abort_url, done.location.as_deref().expect("redirect after cancel"));
        let (callback, _) = self.follow(next, server_base);
        callback
    }
}

pub struct Setup {
    pub s: TestServer,
    pub base: String,
    pub provider: Option<Provider>,
}

impl Setup {
    pub fn provider(&self) -> &Provider {
        self.provider.as_ref().unwrap()
    }
}

/// Starts the server on a port known in advance (the provider must know its callback), with the
/// provider at `provider_port` (0: start one now on any port; otherwise it is not started).
pub async fn start(provider_port: u16, adjust: impl FnOnce(&mut Config)) -> Setup {
    start_with(provider_port, &[], adjust).await
}

/// Like `start`, with extra environment for the provider.
pub async fn start_with(
    provider_port: u16,
    provider_env: &[(&str, &str)],
    adjust: impl FnOnce(&mut Config),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", http.local_addr().unwrap());
    let provider =
        (provider_port == 0).then(|| Provider::start_with(0, &format!("{base}/auth/callback"), provider_env));
    let issuer = match &provider {
        Some(p) => p.issuer.clone(),
        None => format!("http://127.0.0.1:{provider_port}"),
    };
    cfg.server.external_url = Some(base.clone());
    cfg.oidc.issuer_url = Some(issuer);
    cfg.oidc.client_id = Some(CLIENT_ID.into());
    cfg.secrets.oidc_client_secret = Some(CLIENT_SECRET.into());
    cfg.auth.registration_mode = toki_sync::config::RegistrationMode::Open;
    adjust(&mut cfg);
    let sync = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = toki_sync::launch(
        cfg,
        toki_sync::Listeners { http, sync, https: None, metrics: None },
        std::future::pending(),
    )
    .await
    .expect("launch");
    let s = TestServer { addr: server.http_addr, sync: server.sync_addr, server: Some(server), dir };
    let setup = Setup { s, base, provider };
    if setup.provider.is_some() {
        wait_ready(&setup).await;
    }
    setup
}

pub async fn wait_ready(setup: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.s.app().oidc.as_ref().unwrap().ready() {
        assert!(Instant::now() < deadline, "OIDC discovery did not succeed within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
