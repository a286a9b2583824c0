#!/usr/bin/env bash
# `make demo`: a scripted walkthrough of the local pipeline, in a scratch folder, on a free port.
# It makes a short mp3, drops it for a user, waits for the three outputs, lists the message through
# the API as that user, shows that another user sees nothing, and dismisses it. Exits 0 when every
# step did what it should.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runner="${CARGO_TARGET_DIR:-$root/target}/debug/transcoder-local"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n--- runner log ---\n' "$*" >&2; cat "$work/runner.log" >&2; exit 1; }
json() { python3 -c "import json, sys; data = json.load(sys.stdin); print($1)"; }

BUCKET_DIR="$work/bucket" STORE_PATH="$work/messages.sqlite3" LISTEN_ADDR="127.0.0.1:$port" SETTLE_MS=300 \
  "$runner" 2>"$work/runner.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "local pipeline running" "$work/runner.log" && break; sleep 0.1; done
grep -q "local pipeline running" "$work/runner.log" || fail "the runner did not start"

step "Making a 3-second mp3 with ffmpeg's sine source"
ffmpeg -hide_banner -loglevel error -f lavfi -i "sine=frequency=440:duration=3" -ac 2 -c:a libmp3lame -b:a 128k "$work/a4 tone.mp3"
ls -l "$work/a4 tone.mp3"

step "Dropping it for user 'demo': bucket/media/demo/a4 tone.mp3"
mkdir -p "$work/bucket/media/demo"
cp "$work/a4 tone.mp3" "$work/bucket/media/demo/"

step "Waiting for the three outputs under bucket/transcoded/demo/"
out="$work/bucket/transcoded/demo"
for _ in $(seq 600); do
  [ -f "$out/a4 tone.mp3.wav" ] && [ -f "$out/a4 tone.mp3.flac" ] && [ -f "$out/a4 tone.mp3.m4a" ] && break
  sleep 0.1
done
ls -l "$out/a4 tone.mp3.wav" "$out/a4 tone.mp3.flac" "$out/a4 tone.mp3.m4a" || fail "the outputs did not appear"

step "Listing demo's messages:  curl -H 'X-User: demo' $api/messages"
for _ in $(seq 100); do
  listing=$(curl -sf -H 'X-User: demo' "$api/messages")
  [ "$(echo "$listing" | json 'len(data["messages"])')" = 1 ] && break
  sleep 0.1
done
echo "$listing" | python3 -m json.tool
[ "$(echo "$listing" | json 'data["messages"][0]["state"]')" = completed ] || fail "the message is not 'completed'"
id=$(echo "$listing" | json 'data["messages"][0]["id"]')

step "Downloading the FLAC through its link"
url=$(echo "$listing" | json '[o["url"] for o in data["messages"][0]["outputs"] if o["format"] == "flac"][0]')
curl -sf -o "$work/downloaded.flac" "$url" || fail "the download link did not work"
cmp "$work/downloaded.flac" "$out/a4 tone.mp3.flac" || fail "the download differs from the output"
echo "downloaded $(wc -c < "$work/downloaded.flac") bytes, identical to the output"

step "Another user sees nothing:  curl -H 'X-User: eve' $api/messages"
other=$(curl -sf -H 'X-User: eve' "$api/messages")
echo "$other"
[ "$(echo "$other" | json 'len(data["messages"])')" = 0 ] || fail "eve can see demo's message"

step "Dismissing it:  curl -X POST -H 'X-User: demo' $api/messages/$id/dismiss"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-User: demo' "$api/messages/$id/dismiss")
echo "HTTP $status"
[ "$status" = 204 ] || fail "dismiss answered $status"
[ "$(curl -sf -H 'X-User: demo' "$api/messages" | json 'len(data["messages"])')" = 0 ] || fail "the message is still unread"

step "The runner's log"
cat "$work/runner.log"
printf '\nDemo complete: uploaded, transcoded, listed, isolated, dismissed.\n'
