//! The browser pages as served: paths, redirects, content types, the Content-Security-Policy and
//! caching; and checks over the page sources that the CSP and safe rendering rely on.

mod common;

use common::*;

const PAGES: &[(&str, &str)] = &[
    ("/login", "login.js"),
    ("/device", "device.js"),
    ("/login/device", "device.js"),
    ("/dashboard", "dashboard.js"),
];

fn assets_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn asset_files() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(assets_dir())
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_served_with_a_strict_policy() {
    let s = TestServer::start().await;
    let c = s.client();
    for (path, script) in PAGES {
        let r = c.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert!(r.text().contains(&format!("src=\"/assets/{script}\"")), "{path} loads {script}");
    }
    let head = c.raw("HEAD", "/dashboard", &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_assets_and_revalidation() {
    let s = TestServer::start().await;
    let c = s.client();
    let r = c.get("/").await;
    assert_eq!((r.status, r.header("location")), (302, Some("/dashboard")));
    // A toki client whose server gave no verification URL opens /login?device=CODE.
    let r = c.get("/login?device=wdjb-mjht").await;
    assert_eq!((r.status, r.header("location")), (302, Some("/device?device=wdjb-mjht")));
    let r = c.get("/login?device=%3Cscript%3E%20x").await;
    assert_eq!(
        r.header("location"),
        Some("/device?device=%3Cscript%3E%20x"),
        "the code is passed on encoded"
    );

    for (name, ty) in [("app.css", "text/css; charset=utf-8"), ("api.js", "text/javascript; charset=utf-8")] {
        let r = c.get(&format!("/assets/{name}")).await;
        assert_eq!((r.status, r.header("content-type")), (200, Some(ty)), "{name}");
        let etag = r.header("etag").unwrap().to_owned();
        let again = c.raw("GET", &format!("/assets/{name}"), &[("If-None-Match", &etag)], None).await;
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        let changed = c.raw("GET", &format!("/assets/{name}"), &[("If-None-Match", "\"other\"")], None).await;
        assert_eq!(changed.status, 200);
    }
    let r = c.get("/assets/missing.js").await;
    assert_eq!((r.status, r.error().as_str()), (404, "not found"));
    assert_eq!(c.get("/assets/../Cargo.toml").await.status, 404);
    assert_eq!(c.raw("POST", "/dashboard", &[], None).await.status, 405);
}

/// An attribute such as ` onclick=`.
fn has_inline_handler(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

/// The CSP forbids inline code; these checks keep the sources compatible with it, keep
/// third-party origins out, and keep user-provided strings out of HTML parsing.
#[test]
fn page_sources_have_no_inline_code_no_third_parties_and_no_html_injection() {
    assert!(has_inline_handler("<button onclick=\"go()\">") && !has_inline_handler("<p> on time = late</p>"));
    let files = asset_files();
    assert!(files.iter().any(|(n, _)| n == "device.html"));
    for (name, text) in &files {
        // The SVG namespace is a name, not a request.
        let lower = text
            .to_lowercase()
            .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
            .replace("'http://www.w3.org/2000/svg'", "");
        assert!(
            !lower.contains("http://") && !lower.contains("https://") && !lower.contains("//cdn"),
            "{name}: no third-party origins"
        );
        if name.ends_with(".html") {
            for tag in lower.split("<script").skip(1) {
                let open = &tag[..tag.find('>').unwrap()];
                assert!(open.contains("src=\"/assets/"), "{name}: inline <script>");
                assert!(
                    tag[tag.find('>').unwrap() + 1..].trim_start().starts_with("</script>"),
                    "{name}: script with a body"
                );
            }
            assert!(!lower.contains("<style") && !lower.contains(" style="), "{name}: inline style");
            assert!(!has_inline_handler(&lower), "{name}: inline event handler");
        }
        if name.ends_with(".js") {
            for sink in
                ["innerhtml", "outerhtml", "insertadjacenthtml", "document.write", "eval(", "new function"]
            {
                assert!(!lower.contains(sink), "{name} uses {sink}: render user strings with textContent");
            }
        }
    }
}
