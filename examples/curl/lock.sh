#!/usr/bin/env bash
# Hold a leasehold lock around some work with nothing but curl (and sed, awk):
#   LEASEHOLD_URL=http://127.0.0.1:8080 ./lock.sh report:daily 5
# takes the lock for TTL seconds, renews it every TTL/3 in the background while the
# work (here: sleeping SECONDS) runs, then releases it. Exits 73 when someone else
# holds it, 74 if it was lost, 75 when the service can't be reached.
set -euo pipefail

url=${LEASEHOLD_URL:-http://127.0.0.1:8080}
name=${1:-report:daily}
seconds=${2:-5}
ttl=${TTL:-30}
auth=()
if [ -n "${LEASEHOLD_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $LEASEHOLD_API_KEY"); fi

# One Idempotency-Key for this acquire: curl's retries (no answer, 429, 503) resend it,
# so a retry after a lost answer gets the same grant instead of a 409 against ourselves.
key=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen)
answer=$(curl -sS -w '\n%{http_code}' --retry 5 --retry-all-errors --retry-max-time 20 \
  -X POST "$url/locks/$name" "${auth[@]}" -H "Idempotency-Key: $key" \
  -d ttl="$ttl" -d owner="$(hostname)") || { echo "leasehold unreachable at $url" >&2; exit 75; }
status=${answer##*$'\n'}
grant=${answer%$'\n'*}
case $status in
  200 | 201) ;;
  409) echo "someone else holds $name: $grant" >&2; exit 73 ;;
  *) echo "acquire failed with $status: $grant" >&2; exit 75 ;;
esac
token=$(sed -n 's/.*"token":\([0-9]*\).*/\1/p' <<<"$grant")
lease=$(sed -n 's/.*"lease":"\([0-9a-f]*\)".*/\1/p' <<<"$grant")
echo "got $name with fencing token $token"

release() {
  curl -sS -o /dev/null -X DELETE "$url/locks/$name" "${auth[@]}" -d lease="$lease" || true
  echo "released $name"
}
trap release EXIT

# Renew every ttl/3 while the work runs; a 410 means the lock is gone: stop the work.
work_pid=
renew_every=$(awk -v t="$ttl" 'BEGIN { print t / 3 }')
(
  while sleep "$renew_every"; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$url/locks/$name/renew" "${auth[@]}" -d lease="$lease" || echo 000)
    case $code in
      200) echo "renewed $name" ;;
      410) echo "lost $name; stopping the work" >&2; kill -TERM $$; exit ;;
      *) echo "renew answered $code; retrying" >&2 ;;
    esac
  done
) &
renewer=$!
trap 'kill "$renewer" $work_pid 2>/dev/null; exit 74' TERM

# The work. Pass $token along with every write to what the lock protects.
echo "working on $name for ${seconds}s (token $token)"
sleep "$seconds" &
work_pid=$!
wait "$work_pid"

kill "$renewer" 2>/dev/null || true
