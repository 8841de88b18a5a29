#!/bin/sh
# Start a local 3-node cluster in one command: `make cluster` (or run this
# script from the repository root after `cargo build --release`).
#
# Node N keeps its data in data/cluster/nN, speaks iroh-raft/0 on UDP
# 127.0.0.1:780N and serves its API on http://127.0.0.1:770N. Ctrl-C stops
# all three. Run it again to restart the same cluster from its data.
set -eu
BIN=${RAFT_HOST:-./target/release/raft-host}
GUEST=${GUEST:-}
DIR=data/cluster
mkdir -p "$DIR"
PIDS=""
cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start() { # id, extra args...
    id=$1; shift
    guest_args=""
    if [ -n "$GUEST" ]; then guest_args="--guest $GUEST"; fi
    # shellcheck disable=SC2086
    "$BIN" --id "$id" --data-dir "$DIR/n$id" --bind-addr "127.0.0.1:780$id" \
        --api-addr "127.0.0.1:770$id" $guest_args "$@" >"$DIR/n$id.log" 2>&1 &
    PIDS="$PIDS $!"
}

ticket_of() { # id: wait for the node to print its ticket
    for _ in $(seq 1 100); do
        t=$(sed -n 's/^ticket: //p' "$DIR/n$1.log" 2>/dev/null | head -n 1)
        if [ -n "$t" ]; then echo "$t"; return 0; fi
        sleep 0.1
    done
    echo "node $1 did not start; see $DIR/n$1.log" >&2
    exit 1
}

wait_api() { # id: wait until the node's API answers
    for _ in $(seq 1 100); do
        if "$BIN" health --api "http://127.0.0.1:770$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "node $1 does not answer; see $DIR/n$1.log" >&2
    exit 1
}

fresh=true
if [ -d "$DIR/n1/raft" ]; then fresh=false; fi
start 1
T1=$(ticket_of 1)
wait_api 1
for id in 2 3; do
    start "$id" --join "$T1"
    T=$(ticket_of "$id")
    if $fresh; then
        "$BIN" add-node --api http://127.0.0.1:7701 "$T"
    fi
    wait_api "$id"
done
"$BIN" status --api http://127.0.0.1:7701
echo
echo "3 nodes up: APIs on http://127.0.0.1:7701, :7702, :7703; logs in $DIR/nN.log"
echo "try: $BIN propose --api http://127.0.0.1:7702 'add 5'   (a follower forwards to the leader)"
echo "Ctrl-C stops the cluster."
wait
