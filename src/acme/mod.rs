//! Certificates from an ACME CA (Let's Encrypt by default) for `[acme] domains`, obtained on
//! first start and renewed before they expire, served at once on the HTTPS listener and the sync
//! port (through [`Certs`]).
//!
//! - `order.rs`: one order, its challenges answered by our own listeners.
//! - `storage.rs`: the account key and the certificate in `<data_dir>/acme/`, mode 0600.
//! - `client.rs`: instant-acme's HTTP over the shared outbound client.
//!
//! Until the first certificate arrives the generated self-signed one is served. A failed
//! renewal keeps the current certificate and is retried with growing pauses ([`backoff`]),
//! kept well inside Let's Encrypt's limit of 5 failed validations per name per hour.

mod client;
mod order;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use instant_acme::ChallengeType;

use crate::config::{AcmeChallenge, Config};
use crate::shutdown::ShutdownSignal;
use crate::store::now_secs;
use crate::tls::certs::RenewalStatus;
use crate::tls::{CertInfo, Certs, Served};
use storage::AcmeFiles;

/// The longest single sleep: the renewal time is looked at again at least this often (a clock
/// that jumped, a certificate replaced by hand).
const MAX_SLEEP: Duration = Duration::from_secs(6 * 3600);
/// How long one order may take in all before it counts as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(600);

/// The pause after the `failures`-th failure in a row: 2 minutes, doubling, at most 6 hours.
pub fn backoff(failures: u32) -> Duration {
    let minutes = 2u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_secs(minutes.saturating_mul(60)).min(MAX_SLEEP)
}

/// When a certificate is due for renewal (unix seconds): `renew_before_days` before it expires,
/// but not before two thirds of its lifetime (so short-lived certificates are not renewed at
/// once and forever).
pub fn renew_at(info: &CertInfo, renew_before_days: u64) -> i64 {
    let lifetime = (info.not_after - info.not_before).max(0);
    let before =
        i64::try_from(renew_before_days.saturating_mul(86_400)).unwrap_or(i64::MAX).min(lifetime / 3);
    info.not_after - before
}

/// The challenge `acme.challenge` asks for, with `auto` resolved from the ports.
pub fn challenge_type(config: &Config) -> ChallengeType {
    match config.acme.challenge {
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::Auto if config.server.http_port == 80 && config.server.https_port != Some(443) => {
            ChallengeType::Http01
        }
        AcmeChallenge::Auto => ChallengeType::TlsAlpn01,
    }
}

/// The stored certificate, to serve from the start.
pub fn stored(config: &Config) -> Option<Served> {
    let (key, info) = AcmeFiles::new(&config.storage.data_dir).load_cert()?;
    Some(Served { key, info, source: "acme" })
}

/// Keeps the served certificate current until shutdown.
pub async fn run(config: Config, certs: Arc<Certs>, mut stop: ShutdownSignal) {
    let files = AcmeFiles::new(&config.storage.data_dir);
    let challenge = challenge_type(&config);
    let acme = &config.acme;
    let mut status = RenewalStatus { state: "waiting", ..RenewalStatus::default() };
    loop {
        let current = certs.current();
        let ours = current.source == "acme" && current.info.covers(&acme.domains);
        let due = if ours { renew_at(&current.info, acme.renew_before_days) } else { 0 };
        let now = now_secs();
        if due > now {
            status.state = "waiting";
            status.next_attempt = Some(due);
            certs.set_renewal(status.clone());
            let wait = Duration::from_secs(u64::try_from(due - now).unwrap_or(0)).min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                () = stop.wait() => return,
            }
        }
        status.state = "ordering";
        status.last_attempt = Some(now);
        status.next_attempt = None;
        certs.set_renewal(status.clone());
        tracing::info!(domains = ?acme.domains, directory = acme.directory(), challenge = ?challenge, "ordering a TLS certificate");
        let result = tokio::select! {
            r = tokio::time::timeout(ORDER_TIMEOUT, order::obtain(acme, challenge.clone(), &files, &certs)) => {
                r.unwrap_or_else(|_| Err(format!("the order took longer than {} s", ORDER_TIMEOUT.as_secs())))
            }
            () = stop.wait() => return,
        };
        certs.clear_challenges();
        match result {
            Ok(issued) => {
                status.failures = 0;
                status.last_error = None;
                status.last_success = Some(now_secs());
                tracing::info!(not_after = issued.info.not_after, issuer = %issued.info.issuer, "obtained a TLS certificate");
                certs.replace(Served { key: issued.key, info: issued.info, source: "acme" });
            }
            Err(e) => {
                status.failures += 1;
                let pause = backoff(status.failures);
                status.state = "retrying";
                status.last_error = Some(e.clone());
                status.next_attempt = Some(now_secs() + i64::try_from(pause.as_secs()).unwrap_or(0));
                certs.set_renewal(status.clone());
                tracing::warn!(
                    error = %e,
                    failures = status.failures,
                    retry_in_secs = pause.as_secs(),
                    serving = current.source,
                    "obtaining a TLS certificate failed; the current certificate stays in use"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.wait() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            fingerprint: String::new(),
            names: vec!["toki.example.com".into()],
            not_before,
            not_after,
            issuer: String::new(),
        }
    }

    #[test]
    fn renewal_starts_30_days_before_expiry_and_never_in_the_first_two_thirds_of_a_lifetime() {
        let day = 86_400;
        // A 90-day certificate: renewed on day 60.
        assert_eq!(renew_at(&info(0, 90 * day), 30), 60 * day);
        // A 6-day certificate: on day 4, not at once.
        assert_eq!(renew_at(&info(0, 6 * day), 30), 4 * day);
        assert_eq!(renew_at(&info(0, 365 * day), 10), 355 * day);
    }

    #[test]
    fn failures_back_off_from_two_minutes_to_six_hours() {
        let secs: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600]);
        assert_eq!(backoff(u32::MAX), MAX_SLEEP);
        // At most 5 attempts in any hour (Let's Encrypt's failed-validation limit per name).
        let mut t = 0;
        let mut times = vec![0];
        for n in 1..20 {
            t += backoff(n).as_secs();
            times.push(t);
        }
        for w in times.windows(6) {
            assert!(w[5] - w[0] >= 3600, "{times:?}");
        }
    }

    #[test]
    fn auto_picks_tls_alpn_unless_only_port_80_is_there() {
        let mut c = Config::defaults();
        c.server.https_port = Some(443);
        assert_eq!(challenge_type(&c), ChallengeType::TlsAlpn01);
        c.server.http_port = 80;
        assert_eq!(challenge_type(&c), ChallengeType::TlsAlpn01);
        c.server.https_port = Some(8443);
        assert_eq!(challenge_type(&c), ChallengeType::Http01);
        c.acme.challenge = AcmeChallenge::TlsAlpn01;
        assert_eq!(challenge_type(&c), ChallengeType::TlsAlpn01);
    }
}
