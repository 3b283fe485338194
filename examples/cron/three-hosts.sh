#!/bin/sh
# Simulates three hosts whose cron fires the crontab line in this directory at about the
# same time (their clocks 0.2 s and 1.5 s apart), against the service at LEASEHOLD_URL
# (default http://127.0.0.1:8080, e.g. `npm start`). Prints how many times job9 ran: 1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The crontab's command (everything after the five schedule fields), pointed at this
# checkout, with a lock name of its own so the simulation can run again at once.
line=$(grep 'leasehold.mjs exec' "$here/crontab")
command=$(printf '%s\n' "$line" | cut -d' ' -f6- |
  sed -e "s|/opt/leasehold|$repo|" -e "s|/opt/jobs|$here|" -e "s|cron:job9|cron:job9-demo-$$|")

i=0
for skew in 0 0.2 1.5; do
  i=$((i + 1))
  (sleep "$skew" && JOB9_LOG=$log JOB9_HOST=host-$i sh -c "$command" && echo "host-$i: leasehold exec exited 0") &
done
wait

cat "$log"
echo "job9 ran $(wc -l <"$log" | tr -d ' ') time(s) on 3 hosts"
