//! VictoriaMetrics, when `[backend] vm_url` is set: the write path (an outbox drained in the
//! background, [`drain`]) and the PromQL proxy with per-user isolation ([`proxy`]).
//!
//! The series and why they never double count are described in [`samples`].

pub mod drain;
pub mod flags;
pub mod proxy;
pub mod samples;

use std::time::Duration;

use uuid::Uuid;

/// Largest VictoriaMetrics response the proxy passes on.
const MAX_RESPONSE_BYTES: u64 = 32 << 20;

/// The configured VictoriaMetrics: its HTTP client and what the drainer reports.
pub struct Vm {
    pub client: VmClient,
    pub status: drain::DrainStatus,
}

impl Vm {
    pub fn new(base_url: &str, timeout: Duration) -> Vm {
        Vm { client: VmClient::new(base_url, timeout), status: drain::DrainStatus::default() }
    }
}

/// Blocking HTTP calls to VictoriaMetrics (run them on the blocking pool).
#[derive(Clone)]
pub struct VmClient {
    base: String,
    agent: ureq::Agent,
}

/// A VictoriaMetrics reply: status and body.
pub struct VmReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl VmClient {
    pub fn new(base_url: &str, timeout: Duration) -> VmClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .build()
            .into();
        VmClient { base: base_url.trim_end_matches('/').to_owned(), agent }
    }

    fn read(mut resp: ureq::http::Response<ureq::Body>) -> Result<VmReply, String> {
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| format!("reading the VictoriaMetrics response: {e}"))?;
        Ok(VmReply { status, body })
    }

    /// A 2xx, or an error naming the status and the start of the body.
    fn expect_success(what: &str, reply: VmReply) -> Result<(), String> {
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]).into_owned();
        Err(format!("{what}: VictoriaMetrics answered {}: {}", reply.status, text.trim()))
    }

    /// The flags VictoriaMetrics was started with (`/flags`, text), for [`flags::problems`].
    pub fn flags(&self) -> Result<String, String> {
        let url = format!("{}/flags", self.base);
        let resp = self.agent.get(&url).call().map_err(|e| format!("reading /flags: {e}"))?;
        let reply = Self::read(resp)?;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        Self::expect_success("reading /flags", reply)?;
        Ok(body)
    }

    /// Sends samples in VictoriaMetrics' JSON line format (`/api/v1/import`).
    pub fn import(&self, body: Vec<u8>) -> Result<(), String> {
        let url = format!("{}/api/v1/import", self.base);
        let resp = self
            .agent
            .post(&url)
            .content_type("application/json")
            .send(&body[..])
            .map_err(|e| format!("import: {e}"))?;
        Self::expect_success("import", Self::read(resp)?)
    }

    /// Deletes every toki series of a device.
    pub fn delete_device_series(&self, device: Uuid) -> Result<(), String> {
        let url = format!("{}/api/v1/admin/tsdb/delete_series", self.base);
        let selector = samples::device_selector(device);
        let resp = self
            .agent
            .post(&url)
            .send_form([("match[]", selector.as_str())])
            .map_err(|e| format!("delete_series: {e}"))?;
        Self::expect_success("delete_series", Self::read(resp)?)
    }

    /// A query endpoint (`/api/v1/query`, `/api/v1/query_range`) with form parameters.
    pub fn query(&self, path: &str, params: &[(String, String)]) -> Result<VmReply, String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .send_form(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| format!("query: {e}"))?;
        Self::read(resp)
    }
}
