#!/usr/bin/env bash
# Build the Debian package: target/debian/apilb_<version>-1_amd64.deb (or where `-o PATH`
# says; every argument goes to `cargo deb`). Needs cargo-deb (`cargo install cargo-deb
# --locked`), dpkg-dev and binutils.
#
# 1. the release binary (reused when it is up to date);
# 2. what the package ships that is generated rather than kept in the tree, written under
#    TARGET/release/apilb-assets/ (cargo-deb resolves `target/release/` in Cargo.toml's
#    [package.metadata.deb] assets to the real target directory):
#    - man pages (gzipped) and bash/zsh/fish completions from the clap definitions
#      (`apilb generate-assets DIR`, src/assets.rs);
#    - the systemd unit: deploy/apilb.service with the binary at /usr/bin/apilb, the path
#      a package uses, and without its leading comment on installing it by hand;
# 3. `cargo deb --no-build --strip`: the binary without debug info.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
cargo build --release --locked

assets="$target/release/apilb-assets"
rm -rf "$assets"
"$target/release/apilb" generate-assets "$assets" >/dev/null
# Debian wants man pages gzipped (cargo-deb compresses those it takes from the source tree,
# not files under target/release/); -n leaves out name and time, so rebuilds are identical.
gzip -9n "$assets"/man/*.1
sed -e '1,/^\[Unit\]/{/^#/d}' -e 's|/usr/local/bin/apilb|/usr/bin/apilb|g' \
  deploy/apilb.service >"$assets/apilb.service"
if grep -q /usr/local/ "$assets/apilb.service"; then
  echo "deploy/deb/build.sh: the packaged unit still names /usr/local/:" >&2
  grep -n /usr/local/ "$assets/apilb.service" >&2
  exit 1
fi

cargo deb --no-build --strip "$@"
