#!/usr/bin/env bash
# Everything the ledger needs locally, without Docker: PostgreSQL + Kafka + topics.
#
#   services.sh up|down|status
#
# A server given from outside is used as is and never started/stopped here:
# set DATABASE_URL and/or KAFKA_BOOTSTRAP_SERVERS to point at your own.
# The last line printed is the environment to export for the ledger and its tests.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [[ -z ${PYTHON:-} ]]; then # topics.py needs aiokafka, which the venv has
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHON

if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
  OWN_KAFKA=no KAFKA=$KAFKA_BOOTSTRAP_SERVERS
else
  OWN_KAFKA=yes KAFKA=127.0.0.1:${KAFKA_PORT:-19092}
fi

env_line() { echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA DATABASE_URL=$("$HERE/postgres.sh" url)"; }

case ${1:-} in
  up)
    # postgres.sh itself does nothing when DATABASE_URL is set.
    "$HERE/postgres.sh" start
    [[ $OWN_KAFKA == yes ]] && "$HERE/kafka.sh" start
    KAFKA_BOOTSTRAP_SERVERS=$KAFKA "$PYTHON" "$HERE/topics.py"
    env_line
    ;;
  down)
    # Each script stops only what it started (kafka: pid file; postgres: our data dir).
    [[ $OWN_KAFKA == yes ]] && "$HERE/kafka.sh" stop
    "$HERE/postgres.sh" stop
    ;;
  status)
    rc=0
    "$HERE/postgres.sh" status || rc=1
    if [[ $OWN_KAFKA == yes ]]; then "$HERE/kafka.sh" status || rc=1; fi
    env_line
    exit $rc
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
