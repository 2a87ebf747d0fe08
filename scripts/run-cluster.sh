#!/usr/bin/env bash
# The main job: installs what is needed, builds, and starts a local 3-node
# Patina cluster on loopback with the example schema (tools/example_schema.sql).
# Data and logs live under ./patina-data/node{1,2,3}. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

root="$(pwd)"
data="$root/patina-data"
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "patina: cluster stopped"
}
trap stop INT TERM EXIT

for n in 1 2 3; do
  dir="$data/node$n"
  mkdir -p "$dir"
  cat > "$dir/config.toml" <<TOML
[db]
path = "$dir/state.db"
schema_paths = ["$root/tools/example_schema.sql"]

[api]
addr = "127.0.0.1:808$n"

[gossip]
addr = "127.0.0.1:878$n"
plaintext = true
bootstrap = ["127.0.0.1:8781"]

[admin]
path = "$dir/admin.sock"

[telemetry]
prometheus.addr = "127.0.0.1:909$n"
TOML
  build/patina agent -c "$dir/config.toml" > "$dir/agent.log" 2>&1 &
  pids+=("$!")
done

for n in 1 2 3; do
  for _ in $(seq 1 100); do
    grep -q "ready:" "$data/node$n/agent.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "ready:" "$data/node$n/agent.log" || { echo "node$n did not start:"; cat "$data/node$n/agent.log"; exit 1; }
done

cat <<MSG
patina: 3 nodes running (logs in $data/node*/agent.log)
  node1 API http://127.0.0.1:8081   node2 API http://127.0.0.1:8082   node3 API http://127.0.0.1:8083

Write on node1:
  build/patina exec --api-addr 127.0.0.1:8081 "INSERT INTO machines (id, app, state) VALUES ('m1', 'web', 'started')"
Read on node3:
  build/patina query --api-addr 127.0.0.1:8083 --columns "SELECT id, app, state FROM machines"
Members seen by node2:
  build/patina cluster members --admin-path $data/node2/admin.sock
Compare the nodes' contents (equal digests = converged):
  build/patina sync digest --admin-path $data/node1/admin.sock
  build/patina sync digest --admin-path $data/node3/admin.sock

Ctrl-C stops the cluster.
MSG
wait
