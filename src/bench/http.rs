//! The few HTTP calls the benchmarks make (ureq, blocking).

use serde_json::{Value, json};

pub const ADMIN_PASSWORD_ENV: &str = "TOKI_BENCH_ADMIN_PASSWORD";

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into()
}

/// A GET with a bearer token on `agent` (kept alive between calls); returns the status and body.
pub fn get(agent: &ureq::Agent, url: &str, token: &str) -> Result<(u16, Vec<u8>), String> {
    let mut resp = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body =
        resp.body_mut().with_config().limit(64 << 20).read_to_vec().map_err(|e| format!("GET {url}: {e}"))?;
    Ok((status, body))
}

fn post(url: &str, token: Option<&str>, body: &Value) -> Result<(u16, Value), String> {
    let mut req = agent().post(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send_json(body).map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let value = resp.body_mut().read_json::<Value>().unwrap_or(Value::Null);
    Ok((status, value))
}

/// A PUT of a JSON body with a bearer token; returns the status and the JSON answer.
pub fn put(url: &str, token: &str, body: &Value) -> Result<(u16, Value), String> {
    let mut resp = agent()
        .put(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.body_mut().read_json::<Value>().unwrap_or(Value::Null)))
}

pub fn login(base: &str, username: &str, password: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    match post(&format!("{base}/login"), None, &json!({ "username": username, "password": password }))? {
        (200, v) => v["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "login reply has no access_token".into()),
        (status, v) => Err(format!("login as {username} failed ({status}): {v}")),
    }
}

fn delete(url: &str, token: &str) -> Result<(u16, Value), String> {
    let mut resp = agent()
        .delete(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("DELETE {url}: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.body_mut().read_json::<Value>().unwrap_or(Value::Null)))
}

/// The user a `bench ingest --http` run syncs as (created for the run, or given with --user),
/// and its access token (printed with the report when the user stays, so the same user's data
/// can be queried afterwards with `bench query --token`).
pub struct BenchUser {
    pub name: String,
    pub access_token: String,
    /// The id of a user created for this run (None for --user).
    pub created_id: Option<String>,
}

/// Removes a user created for a run (its devices and usage go with it), signing in as the admin
/// again: a long run may outlive the first access token.
pub fn remove_user(base: &str, admin_user: &str, id: &str) -> Result<(), String> {
    let password = std::env::var(ADMIN_PASSWORD_ENV)
        .map_err(|_| format!("removing the bench user needs the admin password in {ADMIN_PASSWORD_ENV}"))?;
    let admin = login(base, admin_user, &password)?;
    match delete(&format!("{}/admin/users/{id}", base.trim_end_matches('/')), &admin)? {
        (200, _) => Ok(()),
        (status, v) => Err(format!("DELETE /admin/users/{id} failed ({status}): {v}")),
    }
}

/// Removes the devices of an existing user whose keys start with `key_prefix` (the ones a run
/// created), with their usage; returns how many.
pub fn remove_devices(base: &str, name: &str, key_prefix: &str) -> Result<u64, String> {
    let user = existing_user(base, name)?;
    let base = base.trim_end_matches('/');
    let (status, body) = get(&agent(), &format!("{base}/me/devices"), &user.access_token)?;
    let list: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(devices) = list["devices"].as_array().filter(|_| status == 200) else {
        return Err(format!("GET /me/devices failed ({status}): {list}"));
    };
    let mut removed = 0;
    for d in devices.iter().filter(|d| d["device_key"].as_str().is_some_and(|k| k.starts_with(key_prefix))) {
        let id = d["id"].as_str().unwrap_or_default();
        match delete(&format!("{base}/me/devices/{id}"), &user.access_token)? {
            (200, _) => removed += 1,
            (status, v) => return Err(format!("DELETE /me/devices/{id} failed ({status}): {v}")),
        }
    }
    Ok(removed)
}

/// Signs in as the admin, creates a fresh user for this run, and signs in as that user.
pub fn bench_user(base: &str, admin_user: &str) -> Result<BenchUser, String> {
    let password = std::env::var(ADMIN_PASSWORD_ENV)
        .map_err(|_| format!("--http needs the admin password in {ADMIN_PASSWORD_ENV}"))?;
    let admin = login(base, admin_user, &password)?;
    let name = format!("bench-{:08x}", crate::auth::random::u64() as u32);
    let user_password = crate::auth::random::token::<18>();
    let base = base.trim_end_matches('/');
    let id = match post(
        &format!("{base}/admin/users"),
        Some(&admin),
        &json!({ "username": name, "password": user_password }),
    )? {
        (201, v) => v["id"].as_str().map(str::to_owned).ok_or("the created user has no id")?,
        (status, v) => return Err(format!("creating the bench user failed ({status}): {v}")),
    };
    let access_token = login(base, &name, &user_password)?;
    Ok(BenchUser { name, access_token, created_id: Some(id) })
}

/// Signs in as an existing user, with the password in TOKI_BENCH_PASSWORD.
pub fn existing_user(base: &str, name: &str) -> Result<BenchUser, String> {
    let env = super::query::PASSWORD_ENV;
    let password = std::env::var(env).map_err(|_| format!("--user needs the password in {env}"))?;
    Ok(BenchUser { name: name.to_owned(), access_token: login(base, name, &password)?, created_id: None })
}
