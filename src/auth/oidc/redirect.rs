//! Where a finished sign-in goes: the CLI's loopback `redirect_uri` (tokens in the query, as the
//! reference does) or one of this server's pages (tokens in the fragment, which never reaches a
//! server log).

use crate::auth::tokens::TokenPair;

const MAX_REDIRECT_URI_BYTES: usize = 2048;

/// Checks a CLI `redirect_uri`: `http://127.0.0.1:PORT/…`, `http://[::1]:PORT/…` or
/// `http://localhost:PORT/…` (any 127.x address), nothing else.
pub fn check_loopback_redirect(uri: &str) -> Result<(), String> {
    const WHAT: &str = "redirect_uri must be a loopback URL such as http://127.0.0.1:PORT/callback, http://[::1]:PORT/… or http://localhost:PORT/…";
    if uri.len() > MAX_REDIRECT_URI_BYTES || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(WHAT.into());
    }
    let rest = uri.strip_prefix("http://").ok_or(WHAT)?;
    if rest.contains('#') {
        return Err(WHAT.into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once("]:").ok_or(WHAT)?;
        (h, p)
    } else {
        authority.rsplit_once(':').ok_or(WHAT)?
    };
    let loopback = match host {
        "localhost" => true,
        "::1" => true,
        h => h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()),
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    if loopback && port_ok { Ok(()) } else { Err(WHAT.into()) }
}

/// Percent-encodes a query or fragment value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `redirect_uri?access_token=…&refresh_token=…&token_type=Bearer&expires_in=…`
pub fn cli_location(redirect_uri: &str, pair: &TokenPair) -> String {
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!(
        "{redirect_uri}{sep}access_token={}&refresh_token={}&token_type=Bearer&expires_in={}",
        encode(&pair.access_token),
        encode(&pair.refresh_token),
        pair.expires_in
    )
}

/// `/dashboard#access_token=…&refresh_token=…&expires_in=…[&client_state=…]`
pub fn page_location(page: &str, pair: &TokenPair, client_state: Option<&str>) -> String {
    let mut out = format!(
        "{page}#access_token={}&refresh_token={}&expires_in={}",
        encode(&pair.access_token),
        encode(&pair.refresh_token),
        pair.expires_in
    );
    if let Some(cs) = client_state {
        out.push_str("&client_state=");
        out.push_str(&encode(cs));
    }
    out
}

/// The pages a browser sign-in may return to; anything else is the dashboard.
pub fn page_for(return_to: Option<&str>) -> &'static str {
    match return_to {
        Some("/device") | Some("/login/device") => "/device",
        _ => "/dashboard",
    }
}

/// A page's `client_state`: base64url, 16 to 128 characters (at least 96 bits).
pub fn check_client_state(v: &str) -> Result<(), String> {
    let ok = (16..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err("client_state must be 16-128 base64url characters".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_redirects() {
        for ok in [
            "http://127.0.0.1:8080/callback",
            "http://127.0.0.1:1",
            "http://127.5.0.1:65535/x?y=1",
            "http://[::1]:9000/cb",
            "http://localhost:43210/",
        ] {
            assert!(check_loopback_redirect(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:8080/",
            "http://127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://evil.example:80/",
            "http://localhost.evil.example:80/",
            "http://127.0.0.1:80@evil.example/",
            "http://evil.example/?http://127.0.0.1:1/",
            "http://[::2]:80/",
            "http://127.0.0.1:80/#frag",
            "http://127.0.0.1:80/a b",
            "javascript:alert(1)",
            "",
        ] {
            assert!(check_loopback_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations() {
        let pair = TokenPair {
            access_token: "a.b".into(),
            refresh_token: "c+d".into(),
            token_type: "Bearer",
            expires_in: 3600,
        };
        assert_eq!(
            cli_location("http://127.0.0.1:9/cb", &pair),
            "http://127.0.0.1:9/cb?access_token=a.b&refresh_token=c%2Bd&token_type=Bearer&expires_in=3600"
        );
        assert!(
            cli_location("http://127.0.0.1:9/cb?x=1", &pair)
                .starts_with("http://127.0.0.1:9/cb?x=1&access_token=")
        );
        assert_eq!(
            page_location("/dashboard", &pair, Some("abc")),
            "/dashboard#access_token=a.b&refresh_token=c%2Bd&expires_in=3600&client_state=abc"
        );
        assert_eq!(page_for(Some("https://evil.example")), "/dashboard");
        assert_eq!(page_for(Some("/device")), "/device");
    }
}
