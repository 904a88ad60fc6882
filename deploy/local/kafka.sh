#!/usr/bin/env bash
# Single-node Kafka (KRaft, broker+controller in one JVM) for local dev and tests,
# without Docker: the broker jars come from Maven Central (see kafka/pom.xml)
# because the Apache tarball download site is not reachable from our machines.
#
#   kafka.sh install|start|stop|status
#
# Env: LEDGER_LOCAL_HOME (cache + state, default ~/.cache/ledger-local),
#      KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), PYTHON (needs aiokafka).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LOCAL_HOME=${LEDGER_LOCAL_HOME:-$HOME/.cache/ledger-local}
KDIR=$LOCAL_HOME/kafka            # everything of ours lives here, outside the work tree
LIBS=$KDIR/libs
PIDFILE=$KDIR/kafka.pid
LOG=$KDIR/kafka.log
PROPS=$KDIR/server.properties
DATA=$KDIR/data
PORT=${KAFKA_PORT:-19092}
CPORT=${KAFKA_CONTROLLER_PORT:-19093}
# The venv has aiokafka (used for the readiness check); fall back to python3.
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

log() { echo "kafka: $*" >&2; }

# Debian package providing a missing tool (a fresh machine may lack them).
need() {
  command -v "$1" >/dev/null && return
  log "$1 missing, installing Debian package $2"
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}

install() {
  need java openjdk-17-jre-headless
  need mvn maven
  local want have=""
  want=$(sha256sum "$HERE/kafka/pom.xml" | cut -d' ' -f1)
  [[ -f $KDIR/pom.sha256 ]] && have=$(cat "$KDIR/pom.sha256")
  # Re-copy only when the jars are missing or the pom (i.e. the pinned version) changed,
  # so a second install touches neither the network nor the disk.
  if [[ $want == "$have" ]] && compgen -G "$LIBS/*.jar" >/dev/null; then
    return 0
  fi
  log "fetching broker jars with Maven into $LIBS"
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  # Output to a file: Maven 3.8 prints stray ANSI codes even with -B -q.
  mvn -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$KDIR/mvn.log" 2>&1 ||
    { log "maven failed:"; tail -n 30 "$KDIR/mvn.log" >&2; return 1; }
  echo "$want" >"$KDIR/pom.sha256"
}

write_config() {
  mkdir -p "$DATA"
  # Rewritten on every start so port changes take effect.
  # auto.create.topics.enable is left at Kafka's default (true); topics.py creates
  # our topics explicitly with the right partition count anyway.
  cat >"$PROPS" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
log.dirs=$DATA
num.partitions=8
# One broker: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumer groups all the time; don't wait 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
}

format_once() {
  # meta.properties exists once the storage is formatted; formatting again would fail.
  [[ -f $DATA/meta.properties ]] && return 0
  local id
  id=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
  log "formatting storage (cluster id $id)"
  java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$id" -c "$PROPS" --standalone >>"$LOG" 2>&1
}

# Our broker is running iff the pid file points at a live kafka.Kafka using our config
# (guards against a stale pid file whose pid was reused by something else).
running() {
  [[ -f $PIDFILE ]] || return 1
  local cmd
  # The braces put the redirection's own error (a stale pid) under 2>/dev/null too.
  cmd=$({ tr '\0' ' ' <"/proc/$(cat "$PIDFILE")/cmdline"; } 2>/dev/null) || return 1
  [[ $cmd == *"kafka.Kafka $PROPS"* ]]
}

# The process we just started is still there (not gone, not a zombie), whatever its
# command line says: until it has exec'd java, /proc shows the forked shell's.
alive() {
  local state
  state=$({ grep -m1 '^State:' "/proc/$1/status"; } 2>/dev/null) || return 1
  [[ $state != *"zombie"* ]]
}

# Answers a metadata request (not just an open port: the listener opens before
# the broker has joined the KRaft quorum).
answering() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || return 1
  # A python without aiokafka can only do the port check.
  "$PYTHON" -c 'import aiokafka' 2>/dev/null || return 0
  "$PYTHON" "$HERE/kafka_ready.py" "127.0.0.1:$PORT" >/dev/null 2>&1
}

# $1: the pid of a broker this script has just started, or empty for one found running.
wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until answering; do
    if [[ -n ${1:-} ]]; then alive "$1"; else running; fi ||
      { log "broker exited; last log lines:"; tail -n 30 "$LOG" >&2; return 1; }
    ((SECONDS < deadline)) || { log "not ready after ${KAFKA_START_TIMEOUT:-90}s, see $LOG"; return 1; }
    sleep 1
  done
}

start() {
  if running; then wait_ready; log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
  rm -f "$PIDFILE"
  install
  write_config
  # Keep only the previous run's log, so the file doesn't grow forever.
  if [[ -f $LOG ]]; then mv "$LOG" "$LOG.1"; fi
  format_once
  log "starting on 127.0.0.1:$PORT (log $LOG)"
  # setsid+nohup: the broker must outlive the shell (and its process group) that started it.
  cd "$KDIR"
  # preferIPv4Stack: plain IPv4 sockets, so `ss` shows 127.0.0.1 rather than ::ffff:127.0.0.1.
  setsid nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.net.preferIPv4Stack=true \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_ready $!
  log "ready on 127.0.0.1:$PORT"
}

stop() {
  if ! running; then rm -f "$PIDFILE"; log "not running"; return 0; fi
  local pid
  pid=$(cat "$PIDFILE")
  kill -TERM "$pid"
  # A clean shutdown lets the next start skip log recovery; bounded all the same.
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then log "SIGTERM ignored, killing $pid"; kill -KILL "$pid"; fi
  rm -f "$PIDFILE"
  log "stopped"
}

status() {
  if running && answering; then
    log "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
  else
    log "not running"; return 1
  fi
}

case ${1:-} in
  install | start | stop | status) "$1" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
