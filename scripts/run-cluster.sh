#!/usr/bin/env bash
# The main job: installs what is needed, builds, and starts Patina on the
# embedded default config and example schema (data under ./patina-data).
# Replication is not wired yet, so this is one node; it grows into a local
# 3-node cluster when it is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "patina: starting a node; stop it with Ctrl-C"
exec build/patina agent
