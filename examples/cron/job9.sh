#!/bin/sh
# The job: it runs on one host at a time. leasehold exec gives it the lock's name and
# fencing token; a job that writes somewhere shared should pass the token along (see
# ../fenced-write).
set -eu
log=${JOB9_LOG:-/tmp/job9.log}
echo "job9 ran on ${JOB9_HOST:-$(hostname)} with lock $LEASEHOLD_NAME, fencing token $LEASEHOLD_TOKEN" >>"$log"
sleep "${JOB9_SECONDS:-0.5}"
