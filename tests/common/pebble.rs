//! Let's Encrypt's test CA, Debian's `pebble`, on loopback: its own HTTPS (a certificate from a
//! throwaway CA the test trusts), and `pebble-challtestsrv` as its DNS server, answering
//! 127.0.0.1 for every name. Pebble validates challenges for real against the ports it is given
//! (the server's HTTP and HTTPS listeners).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::oidc::free_port;
use super::tls::{TestCa, roots};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// Returns false (after saying so) when the test must be skipped.
pub fn present() -> bool {
    let missing: Vec<&str> = [PEBBLE, CHALLTESTSRV].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!("{} not found (Debian package `pebble`)", missing.join(" and "));
    if std::env::var("TOKI_SYNC_FULL_TESTS").is_ok_and(|v| v == "1") {
        panic!("ACME test cannot run: {what}. tests/run.sh installs it.");
    }
    eprintln!("SKIPPED ACME test: {what} (set TOKI_SYNC_FULL_TESTS=1 to make this a failure)");
    false
}

pub struct Pebble {
    children: Vec<Child>,
    pub directory_url: String,
    /// The CA certificate of pebble's own HTTPS (for `acme.ca_file`).
    pub api_ca_file: PathBuf,
    api_ca_pem: String,
    management: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("pebble API CA");
        let leaf = ca.issue(&["localhost", "127.0.0.1"], 1, 30);
        let (cert, key, api_ca_file) =
            (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("ca.pem"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        std::fs::write(&api_ca_file, &ca.pem).unwrap();
        let (api, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns_server = Command::new(CHALLTESTSRV)
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args([
                "-management",
                &format!("127.0.0.1:{dns_management}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pebble-challtestsrv");
        let pebble = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No artificial sleeps before validating, every nonce accepted, no reused
            // authorizations (each order is validated against our listener).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pebble");
        let p = Pebble {
            children: vec![pebble, dns_server],
            directory_url: format!("https://127.0.0.1:{api}/dir"),
            api_ca_file,
            api_ca_pem: ca.pem,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            _dir: dir,
        };
        p.wait_ready();
        p
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .tls_config(toki_sync::outbound::trusting(&self.api_ca_file).unwrap())
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn wait_ready(&self) {
        let agent = self.agent();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if agent.get(&self.directory_url).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pebble did not answer at {} within 20 s", self.directory_url);
    }

    /// The root certificates pebble issues under (made anew at every start).
    pub fn issuing_roots(&self) -> rustls::RootCertStore {
        let url = format!("https://{}/roots/0", self.management);
        let pem = self.agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap();
        roots(&pem)
    }

    pub fn api_roots(&self) -> rustls::RootCertStore {
        roots(&self.api_ca_pem)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
