#!/usr/bin/env bash
# Re-creates the captures in this folder (see README.md): a `rush serve` on 127.0.0.1:7390,
# the clients of README.md, and tcpdump, all inside a private network namespace so that
# nothing else on the machine's loopback shows up in the captures, the port cannot clash,
# and the packet drops of the lossy capture touch nothing outside.
#
# Needs: root (unshare -n), tcpdump, editcap (Debian: wireshark-common), iptables-legacy
# (Debian: iptables), python3, and the release builds:
#   cargo build --release --bin rush
#   cargo build --release -p rush-net --example reserve
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
rush=${RUSH:-$root/target/release/rush}
reserve=${RESERVE:-$root/target/release/examples/reserve}

if [ -z "${RUSH_CAPTURE_NETNS:-}" ]; then
    exec unshare -n env RUSH_CAPTURE_NETNS=1 "$0" "$@"
fi
ip link set lo up

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits until FILE contains TEXT (at most 60 s).
wait_for() {
    for _ in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    exit 1
}

# Starts tcpdump with the given arguments; waits until it captures. --immediate-mode and -U:
# each packet is handed over and written as it comes (else the packets of the last, not yet
# full, kernel buffer block are lost when tcpdump is stopped). -B 32768 (KiB): immediate
# mode gives each packet a ring slot of the snap length (256 KiB), so the default 2 MiB
# ring holds 8 packets and drops more when tcpdump is slow to run on a busy machine.
logs=()
capture() {
    local log=$work/tcpdump-${#logs[@]}.log
    logs+=("$log")
    tcpdump --immediate-mode -U -B 32768 "$@" 2>"$log" &
    pids+=($!)
    wait_for "$log" "listening on"
}

stop_captures() {
    sleep 1 # the last packets (FIN, ACK) reach the captures
    kill -TERM "${pids[@]:1}"
    wait "${pids[@]:1}" || true
    pids=("${pids[0]}")
    cat "${logs[@]}"
    logs=()
}

"$rush" serve --listen 127.0.0.1:7390 --admin-listen 127.0.0.1:7391 --shard-ports off \
    --shards 1 --no-pin 2>"$work/serve.log" &
pids+=($!)
wait_for "$work/serve.log" "listening on"

# 1. The session: the reserve example (RESERVE, CONFIRM, QUERY_SKU), then client.py's
#    9 frames. Three captures of the same packets.
capture -i lo -w "$here/session.pcap" 'tcp port 7390'
capture -i lo --time-stamp-precision=nano -w "$work/session-ns.pcap" 'tcp port 7390'
capture -i any -y LINUX_SLL2 -w "$here/session-sll2.pcap" 'tcp port 7390'
"$reserve" 127.0.0.1:7390 42
python3 "$here/client.py" session 127.0.0.1 7390
stop_captures
editcap -F pcapng "$work/session-ns.pcap" "$here/session-ns.pcapng"

kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
pids=()

# 2. The lossy session, over a routed path where packets can be lost in transit: the client
#    in namespace A (10.99.1.2), the server in namespace B (10.99.2.2), this namespace
#    forwarding between them over two veth pairs, tcpdump on B's interface. Every 5th
#    client->server packet is dropped here, in transit (the capture never sees it: the
#    segments after it are out of order until the sender retransmits), and every 7th is
#    dropped in B after tcpdump saw it (captured twice: once, and retransmitted). A has
#    SACK off, so its retransmissions may merge segments (overlaps). These addresses exist
#    only inside the namespaces this script made.
unshare -n sleep 600 &
client_ns=$!
unshare -n sleep 600 &
server_ns=$!
pids+=("$client_ns" "$server_ns")
sleep 0.2
ip link add va type veth peer name ra
ip link set va netns "$client_ns"
ip link add vb type veth peer name rb
ip link set vb netns "$server_ns"
ip addr add 10.99.1.1/24 dev ra
ip link set ra up
ip addr add 10.99.2.1/24 dev rb
ip link set rb up
echo 1 >/proc/sys/net/ipv4/ip_forward
nsenter -t "$client_ns" -n sh -c 'ip link set lo up; ip addr add 10.99.1.2/24 dev va;
    ip link set va up; ip route add default via 10.99.1.1;
    echo 0 >/proc/sys/net/ipv4/tcp_sack'
nsenter -t "$server_ns" -n sh -c 'ip link set lo up; ip addr add 10.99.2.2/24 dev vb;
    ip link set vb up; ip route add default via 10.99.2.1'
iptables-legacy -A FORWARD -p tcp --dport 7390 -m statistic --mode nth --every 5 --packet 3 -j DROP
nsenter -t "$server_ns" -n iptables-legacy -A INPUT -p tcp --dport 7390 \
    -m statistic --mode nth --every 7 --packet 5 -j DROP

nsenter -t "$server_ns" -n "$rush" serve --listen 10.99.2.2:7390 --admin-listen 127.0.0.1:7391 \
    --shard-ports off --shards 1 --no-pin 2>"$work/serve2.log" &
pids=($! "${pids[@]}")
wait_for "$work/serve2.log" "listening on"
nsenter -t "$server_ns" -n tcpdump --immediate-mode -U -B 32768 -i vb -w "$here/lossy.pcap" \
    'tcp port 7390' 2>"$work/tcpdump-lossy.log" &
pids+=($!)
wait_for "$work/tcpdump-lossy.log" "listening on"
nsenter -t "$client_ns" -n python3 "$here/client.py" lossy 10.99.2.2 7390
sleep 1
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" || true
unset 'pids[-1]'
cat "$work/tcpdump-lossy.log"
iptables-legacy -L FORWARD -v -n | grep DROP
nsenter -t "$server_ns" -n iptables-legacy -L INPUT -v -n | grep DROP

# The server first (SIGTERM: a clean stop), then the namespace holders.
kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
kill "${pids[@]:1}"
wait "${pids[@]:1}" 2>/dev/null || true
pids=()
ls -l "$here"/*.pcap "$here"/*.pcapng
