#!/usr/bin/env bash
# The Debian package (issue 12): built by cargo-deb from the static musl binary (tests/run.sh
# builds it first), checked (files, modes, conffile, no dependencies), installed with dpkg -i,
# checked again (version, account, nothing enabled, systemd-analyze verify and security <= 2.0),
# then purged. Needs root (or sudo) and refuses to touch an already installed toki-sync.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
fail() { echo "deb test: $*" >&2; exit 1; }

MUSL=x86_64-unknown-linux-musl
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -x "target/$MUSL/release/toki-sync" ] || fail "target/$MUSL/release/toki-sync is missing (cargo build --release --target $MUSL)"
if dpkg -s toki-sync >/dev/null 2>&1; then
    fail "a toki-sync package is already installed here; this test installs and purges its own"
fi

rm -rf target/debian
cargo deb --no-build --target "$MUSL" --output target/debian/
deb=$(ls target/debian/toki-sync_*.deb)
echo "built $deb ($(stat -c %s "$deb") bytes)"

contents=$(dpkg-deb -c "$deb")
unit_path=""
for f in ./usr/bin/toki-sync ./etc/toki-sync/toki-sync.toml ./usr/lib/sysusers.d/toki-sync.conf; do
    grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done
unit_path=$(grep -o ' \./[^ ]*systemd/system/toki-sync.service$' <<<"$contents" | sed 's/^ \.//') ||
    fail "the unit is not in the package"
grep -q '^-rwxr-xr-x .* ./usr/bin/toki-sync$' <<<"$contents" || fail "the binary is not mode 0755"
grep -q '^-rw-r--r-- .* ./etc/toki-sync/toki-sync.toml$' <<<"$contents" || fail "the configuration is not mode 0644"
depends=$(dpkg-deb -f "$deb" Depends)
case "$depends" in *libc*) fail "a static binary needs no C library, yet Depends: $depends" ;; esac
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/toki-sync/toki-sync.toml ||
    fail "/etc/toki-sync/toki-sync.toml is not a conffile"

as_root dpkg -i "$deb"
trap 'as_root dpkg --purge toki-sync >/dev/null 2>&1 || true' EXIT
[ "$(/usr/bin/toki-sync --version)" = "toki-sync $VERSION" ] || fail "toki-sync --version: $(/usr/bin/toki-sync --version)"
[ "$(stat -c %a /usr/bin/toki-sync)" = 755 ] || fail "installed binary mode $(stat -c %a /usr/bin/toki-sync)"
[ "$(stat -c %a /etc/toki-sync/toki-sync.toml)" = 644 ] || fail "installed configuration mode"
getent passwd toki-sync >/dev/null || fail "the postinst did not create the toki-sync account"
for wants in /etc/systemd/system/multi-user.target.wants/toki-sync.service; do
    [ ! -e "$wants" ] || fail "the package enabled the service ($wants); it must enable nothing"
done
systemd-analyze verify "$unit_path" || fail "systemd-analyze verify $unit_path"
rating=$(systemd-analyze security --offline=true "$unit_path" 2>&1 |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$rating" ] || fail "no rating from systemd-analyze security"
echo "systemd-analyze security: $rating"
awk -v r="$rating" 'BEGIN { exit !(r <= 2.0) }' || fail "systemd-analyze security rates the unit $rating (> 2.0)"

as_root dpkg --purge toki-sync
trap - EXIT
[ ! -e /usr/bin/toki-sync ] || fail "/usr/bin/toki-sync is still there after purge"
[ ! -e /etc/toki-sync/toki-sync.toml ] || fail "the conffile is still there after purge"
[ ! -e "$unit_path" ] || fail "the unit is still there after purge"
echo "deb test passed"
