//! A real VictoriaMetrics (Debian package `victoria-metrics`) for tests: started on a loopback
//! ephemeral port with a temporary data directory and the flags the README requires, stopped
//! (and restarted, for outage tests) by the test.
//!
//! Without the binary, plain `cargo test` skips (saying so); with `TOKI_SYNC_FULL_TESTS=1`
//! (tests/run.sh) a missing binary fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const VM_BIN: &str = "/usr/bin/victoria-metrics";

/// The flags toki-sync needs from VictoriaMetrics, exactly as the README gives them.
pub const REQUIRED_FLAGS: &[&str] = &["-dedup.minScrapeInterval=1h", "-retentionPeriod=100y"];

/// Returns false (after saying so) when VictoriaMetrics is missing and the test may skip.
pub fn available(test: &str) -> bool {
    if Path::new(VM_BIN).exists() {
        return true;
    }
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("{test}: {VM_BIN} not found (Debian package `victoria-metrics`); tests/run.sh installs it");
    }
    eprintln!(
        "SKIPPED {test}: {VM_BIN} not found (install the Debian package `victoria-metrics`, or set TOKI_SYNC_FULL_TESTS=1 to make this a failure)"
    );
    false
}

pub struct VictoriaMetrics {
    child: Option<Child>,
    pub port: u16,
    data: tempfile::TempDir,
    log: PathBuf,
    /// The flags besides the address and data directory.
    flags: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics with [`REQUIRED_FLAGS`] and waits until it answers /health.
    pub fn start() -> VictoriaMetrics {
        VictoriaMetrics::start_with_flags(REQUIRED_FLAGS)
    }

    /// Starts VictoriaMetrics with these flags (e.g. wrong ones) and waits until it answers.
    pub fn start_with_flags(flags: &[&str]) -> VictoriaMetrics {
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("vm.log");
        let flags = flags.iter().map(|f| f.to_string()).collect();
        let mut vm = VictoriaMetrics { child: None, port: 0, data, log, flags };
        for _ in 0..5 {
            vm.port = free_port();
            if vm.spawn() {
                return vm;
            }
        }
        panic!(
            "VictoriaMetrics did not start; log:\n{}",
            std::fs::read_to_string(&vm.log).unwrap_or_default()
        );
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(VM_BIN)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.path().join("storage").display()))
            .args(&self.flags)
            .arg("-loggerLevel=WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start victoria-metrics");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return false; // e.g. the port was taken meanwhile
            }
            let health = agent().get(&format!("{}/health", self.url())).call();
            if health.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        false
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, then waits), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data and other flags.
    pub fn restart_with_flags(&mut self, flags: &[&str]) {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart();
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        assert!(
            self.spawn(),
            "VictoriaMetrics did not restart; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// A query straight to VictoriaMetrics (no isolation), for checks.
    pub fn query(&self, query: &str, time_secs: i64) -> Value {
        let mut resp = agent()
            .get(&format!("{}/api/v1/query", self.url()))
            .query("query", query)
            .query("time", time_secs.to_string())
            .call()
            .unwrap();
        resp.body_mut().read_json().unwrap()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
