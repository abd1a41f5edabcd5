#!/usr/bin/env bash
# Build the Debian package: release binary, man page and completions generated from the clap
# definitions (`oomguard generate ...`), then `cargo deb`. Output: target/debian/oomguard_*.deb
# Needs: cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
mkdir -p target/assets
bin=target/release/oomguard
"$bin" generate man | gzip -9n > target/assets/oomguard.1.gz
"$bin" generate bash > target/assets/oomguard.bash
"$bin" generate zsh > target/assets/_oomguard
"$bin" generate fish > target/assets/oomguard.fish
# The package installs the binary in /usr/bin (dist/oomguard.service names /usr/local/bin, where
# a from-source install puts it).
sed 's#^ExecStart=[^ ]*oomguard#ExecStart=/usr/bin/oomguard#' dist/oomguard.service > target/assets/oomguard.service
cargo deb --no-build --locked "$@"
ls target/debian/*.deb
