#!/usr/bin/env bash
# The whole test suite. Installs what the tests need on a fresh Debian machine (apt-get, npm),
# then runs every test with TOKI_SYNC_FULL_TESTS=1, so a test whose external component is
# missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export TOKI_SYNC_FULL_TESTS=1
export CARGO_TERM_COLOR=never

log() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages the build and the tests need.
packages=()
command -v cc >/dev/null 2>&1 || packages+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
# The browser test drives Debian's Chromium with Node's playwright-core (never a downloaded browser).
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# The VictoriaMetrics tests start Debian's VictoriaMetrics themselves (loopback port, temp dir).
[ -x /usr/bin/victoria-metrics ] || packages+=(victoria-metrics)
if [ "${#packages[@]}" -gt 0 ]; then
    log "installing Debian packages: ${packages[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install the Rust toolchain (https://rustup.rs, stable >= 1.90) and rerun." >&2
    exit 1
fi

log "installing the browser test's npm packages (tests/browser, as locked)"
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)

log "cargo test (all targets)"
cargo test --locked --all-targets

log "all tests passed"
