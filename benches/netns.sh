#!/usr/bin/env bash
# Runs the end-to-end benchmark with the server in a network namespace of its own, joined to
# the benchmark (client and forwarding sink) by a veth pair, as if over a network: each
# side's packets are received (TCP/IP receive processing) on that side's CPU, the server
# pinned to CPU 0 and the benchmark to CPU 1. Over plain loopback the sender's CPU also does
# the receiver's TCP work, which charges the sink's receiving to a forwarding server and the
# server's receiving to the client.
#
#   sudo benches/netns.sh                                  # defaults of the benchmark
#   sudo E2E_MODES=plain E2E_RATE=3000 E2E_FORWARD=http benches/netns.sh
#
# Needs root, iproute2 and 2 CPUs. The namespace and the veth pair are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

NS=osli-bench
SERVER_IP=10.213.0.1
CLIENT_IP=10.213.0.2

cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del osli-cli 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip netns add "$NS"
ip link add osli-cli type veth peer name osli-srv
ip link set osli-srv netns "$NS"
ip addr add "$CLIENT_IP/30" dev osli-cli
ip link set osli-cli up
ip netns exec "$NS" ip addr add "$SERVER_IP/30" dev osli-srv
ip netns exec "$NS" ip link set osli-srv up
ip netns exec "$NS" ip link set lo up
# Receive processing on the receiving side's CPU, as a NIC's interrupts would do it.
ip netns exec "$NS" sh -c 'echo 1 > /sys/class/net/osli-srv/queues/rx-0/rps_cpus'
echo 2 > /sys/class/net/osli-cli/queues/rx-0/rps_cpus

cargo bench --bench end_to_end --no-run >/dev/null 2>&1
export E2E_SERVER_IP="$SERVER_IP" E2E_SINK_IP="$CLIENT_IP"
export E2E_SERVER_PREFIX="ip netns exec $NS taskset -c 0" E2E_SERVER_CPUS=0
export E2E_CLIENT_THREADS="${E2E_CLIENT_THREADS:-1}"
taskset -c 1 cargo bench --bench end_to_end
