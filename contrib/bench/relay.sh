#!/usr/bin/env bash
# The relay-latency benchmark, run by hand (never in CI).
#
# Starts InspIRCd + Atheme and Synapse on free loopback ports, the release daemon bridging 20
# room pairs, and measures one pair: COUNT uniquely tagged messages each way at each RATE
# (messages per second), then the same with no bridge (Matrix client to Matrix client through
# Synapse in a 2-member room, IRC client to IRC client) as the floor; the bridged Matrix room
# likewise holds one client and the bot. Prints delivered / lost / duplicated / reordered,
# p50 / p90 / p99 per direction, each direction's distance from its floor (the sum of both
# hops' floors), and the daemon's RSS after each rate.
#
#   contrib/bench/relay.sh            # 500 messages at 1/s and at 20/s (about 14 minutes,
#                                     # plus 5-10 for the release build)
#   contrib/bench/relay.sh 100 5,20   # quicker
set -euo pipefail
cd "$(dirname "$0")/../.."
contrib/install-test-servers.sh
export BENCH_COUNT="${1:-500}"
export BENCH_RATES="${2:-1,20}"
exec cargo test --release --test integration bench::relay -- --ignored --nocapture --test-threads 1
