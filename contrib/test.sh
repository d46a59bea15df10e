#!/usr/bin/env bash
# The one test command (README: "Run the tests"). Installs what the tests need when it is
# missing, then runs the whole suite: formatting, lints, unit, integration and doc tests, and
# the benchmarks once each in test mode (they must build and run, not be timed here).
#
# Usage: contrib/test.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
    echo "contrib/test.sh: cargo not found; install Rust 1.95 (https://rustup.rs)" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        say "installing $component"
        rustup component add "$component"
    fi
done

say "test servers"
contrib/install-test-servers.sh
export PATH="$PATH:/usr/sbin"

say "formatting"
cargo fmt --check

say "lints"
cargo clippy --locked --all-targets -- -D warnings

say "tests"
cargo test --locked --all-targets "$@"
cargo test --locked --doc
