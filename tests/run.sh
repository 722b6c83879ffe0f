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
# The metrics test checks the exposition with Debian's promtool (package prometheus).
[ -x /usr/bin/promtool ] || packages+=(prometheus)
# The ACME tests get certificates from Debian's pebble (Let's Encrypt's test CA, with
# pebble-challtestsrv as its DNS), which validates against the server's own listeners.
[ -x /usr/bin/pebble ] && [ -x /usr/bin/pebble-challtestsrv ] || packages+=(pebble)
# The static build compiles its C parts (ring, zstd, mimalloc) with musl-gcc.
command -v musl-gcc >/dev/null 2>&1 || packages+=(musl-tools)
# The package test checks the unit with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
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
# The OIDC tests start a real OpenID provider (npm oidc-provider) on loopback.
log "installing the OIDC tests' npm packages (tests/oidc, as locked)"
(cd tests/oidc && npm ci --no-audit --no-fund)

# House style: formatting and lints are gates, for the main crate and the fuzz crate alike.
log "cargo fmt --check"
cargo fmt --check
(cd fuzz && cargo fmt --check)
log "cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings
(cd fuzz && cargo clippy --all-targets --locked -- -D warnings)

# The static musl build, which tests/static_binary.rs smoke-tests (TOKI_SYNC_STATIC_BIN).
MUSL=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
    log "installing the Rust target $MUSL"
    rustup target add "$MUSL"
fi
log "static release build ($MUSL)"
build_started=$SECONDS
cargo build --release --locked --target "$MUSL"
echo "static build took $((SECONDS - build_started)) s"
export TOKI_SYNC_STATIC_BIN="$PWD/target/$MUSL/release/toki-sync"

log "cargo test (all targets)"
cargo test --locked --all-targets

# The Debian package of the static binary: build, install, check, purge (tests/deb.sh).
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb"
    cargo install cargo-deb --locked
fi
log "Debian package (cargo deb, dpkg -i, systemd-analyze, dpkg --purge)"
tests/deb.sh

# Fuzzing: each cargo-fuzz target runs for a bounded time on top of the kept inputs in
# fuzz/regressions/ (which `cargo test` also replays). A crash fails the run; its input is in
# fuzz/artifacts/<target>/ and belongs in fuzz/regressions/<target>/ once fixed.
FUZZ_SECONDS="${TOKI_SYNC_FUZZ_SECONDS:-30}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "installing the nightly toolchain (cargo-fuzz needs it)"
    if ! rustup toolchain install nightly --profile minimal; then
        echo "error: the fuzz targets need a nightly toolchain and rustup could not install one" >&2
        exit 1
    fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
log "fuzzing: build"
cargo +nightly fuzz build -O
for target in sync_stream batch_raw batch_zstd http_request; do
    log "fuzzing: $target for ${FUZZ_SECONDS}s"
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 | tail -n 25
done

log "all tests passed"
