#!/bin/sh
# Runs deploy/README.md's "HA layout" on one machine, as root, with the example files of this directory:
# a PostgreSQL cluster from Debian's postgresql package (pg_createcluster, TLS, a role and a database),
# two dc-controller processes sharing it, one simulated dc-agent given both controllers' addresses.
# Then: who leads, the leader SIGKILLed, the standby leading, the agent online at it, the old leader back
# as a standby, and a kube-rootca update applied by the new leader. Everything is removed at the end.
#
# The hosts of the examples become loopback addresses (controller-0 192.0.2.10 -> 127.0.0.1, controller-1
# 192.0.2.11 -> 127.0.0.2, db.example.com -> 127.0.0.1) and /etc/dc-rootca a temporary directory; the
# processes run in the foreground of this script, not under systemd.
#
#   BIN=target/debug deploy/ha/try-on-one-machine.sh      # dc-controller, dc-agent, dc-certs, dcmanager
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN:-target/debug}" && pwd)
cd /tmp # psql, run as postgres, cannot enter the caller's directory
PGPORT=${PGPORT:-5499}
PGVER=$(ls /usr/lib/postgresql | sort -n | tail -1)
CLUSTER=dc-rootca-ha-try
DIR=$(mktemp -d /tmp/dc-rootca-ha.XXXXXX)
ETC=$DIR/etc/dc-rootca
PGCONF=/etc/postgresql/$PGVER/$CLUSTER
DBPASS=try-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
ADMIN=try-admin-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
READER=try-reader-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PIDS=""

say() { printf '\n== %s\n' "$*"; }
cleanup() {
    for pid in $PIDS; do kill -9 "$pid" 2>/dev/null || true; done
    pg_dropcluster --stop "$PGVER" "$CLUSTER" 2>/dev/null || true
    rm -rf "$PGCONF"
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# A loopback rendering of an example file.
render() {
    sed -e "s|/etc/dc-rootca|$ETC|g" -e "s|/etc/postgresql/dc-rootca|$PGCONF/dc-rootca|g" \
        -e "s|/var/lib/dc-rootca-agent|$DIR/agent-data|g" \
        -e 's|192\.0\.2\.10|127.0.0.1|g' -e 's|192\.0\.2\.11|127.0.0.2|g' \
        -e "s|db\.example\.com:5432|127.0.0.1:$PGPORT|g" -e "s|'db\.example\.com'|'127.0.0.1'|g" \
        -e "s|CHANGE-ME-db-password|$DBPASS|" -e "s|CHANGE-ME-admin-token|$ADMIN|" \
        -e "s|CHANGE-ME-reader-token|$READER|" "$1"
}
# Polls (other processes' state) until "$@" succeeds, or fails after $1 seconds.
within() {
    secs=$1; shift
    end=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || { echo "not within ${secs} s: $*" >&2; exit 1; }
        sleep 0.2
    done
}
lease() { runuser -u postgres -- psql -X -At -p "$PGPORT" -d dc_rootca -c "SELECT epoch, holder, expires_at > now() AS valid FROM leader_lease"; }
# The controllers' sessions, and whether every one of them is over TLS.
tls() { runuser -u postgres -- psql -X -At -p "$PGPORT" -d dc_rootca -c "SELECT count(*) || ' sessions of dc_rootca, all over TLS: ' || bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'dc_rootca'"; }
# Both controllers' APIs: dcmanager tries them in turn and follows a standby's 503 to the leader.
URLS=http://127.0.0.1:8119/v1.0,http://127.0.0.2:8119/v1.0
dcm() { DCMANAGER_URL=$URLS OS_AUTH_TOKEN=$ADMIN "$BIN/dcmanager" "$@"; }
online() { dcm subcloud show subcloud1 -f json | grep -q '"availability": *"online"'; }
# Whether the controller whose API is at $1 leads (a standby answers /metrics 503).
leads() { curl -sf "http://$1:8119/metrics" >/dev/null; }
# Whether the standby whose API is at $1 answers a change 503 naming the leader at $2.
names_leader() {
    curl -s -o /dev/null -D - -X POST -H "X-Auth-Token: $ADMIN" -H 'Content-Type: application/json' \
        -d '{"name": "x"}' "http://$1:8119/v1.0/subclouds" | tr -d '\r' |
        grep -qi "^x-leader-url: http://$2:8119"
}
start_controller() {
    DC_CONTROLLER__READY_FILE=$DIR/$1.ready "$BIN/dc-controller" --config "$ETC/$1.toml" >"$DIR/$1.log" 2>&1 &
    PIDS="$PIDS $!"
    eval "PID_$(echo "$1" | tr - _)=$!"
}

say "PKI: one controller certificate for both controllers (the name agents verify), one agent's"
mkdir -p "$ETC"
"$BIN/dc-certs" init --out "$ETC/pki" --controller-out "$ETC/controller" --san dc-rootca.example.com
"$BIN/dc-certs" issue-agent --ca "$ETC/pki" --name subcloud1 --out "$ETC/agent"

say "PostgreSQL $PGVER: cluster $CLUSTER on port $PGPORT, TLS, role and database dc_rootca"
pg_createcluster "$PGVER" "$CLUSTER" --port "$PGPORT" >/dev/null
mkdir -p "$PGCONF/dc-rootca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=dc-rootca-db-ca \
    -keyout "$DIR/db-ca.key" -out "$ETC/postgresql-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=db.example.com \
    -keyout "$PGCONF/dc-rootca/server.key" -out "$DIR/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:db.example.com,IP:127.0.0.1\n' >"$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$ETC/postgresql-ca.crt" -CAkey "$DIR/db-ca.key" \
    -CAcreateserial -days 30 -extfile "$DIR/san.ext" -out "$PGCONF/dc-rootca/server.crt" 2>/dev/null
chown -R postgres:postgres "$PGCONF/dc-rootca"
chmod 0600 "$PGCONF/dc-rootca/server.key"
render "$HERE/postgresql-dc-rootca.conf" >"$PGCONF/conf.d/dc-rootca.conf"
render "$HERE/pg_hba-dc-rootca.conf" >>"$PGCONF/pg_hba.conf"
pg_ctlcluster "$PGVER" "$CLUSTER" start
runuser -u postgres -- psql -X -q -p "$PGPORT" -c "CREATE ROLE dc_rootca LOGIN PASSWORD '$DBPASS'"
runuser -u postgres -- createdb -p "$PGPORT" -O dc_rootca dc_rootca

say "controller-0 leads, controller-1 waits as a standby"
render "$HERE/controller-0.example.toml" >"$ETC/controller-0.toml"
render "$HERE/controller-1.example.toml" >"$ETC/controller-1.toml"
start_controller controller-0
within 30 test -s "$DIR/controller-0.ready"
start_controller controller-1
within 30 grep -q "another controller leads" "$DIR/controller-1.log"
lease
tls
test ! -e "$DIR/controller-1.ready"
leads 127.0.0.1
if leads 127.0.0.2; then echo "controller-1 answers /metrics as if it led" >&2; exit 1; fi
names_leader 127.0.0.2 127.0.0.1

say "a subcloud whose agent is given both controllers' addresses"
dcm subcloud add --name subcloud1 --description "HA try" --location lab >/dev/null
{
    sed '/^\[controller\]/,/^\[tls\]/{/^\[tls\]/!d}' "$HERE/../agent-simulated.example.toml" | render /dev/stdin
    grep -v '^#' "$HERE/agent-controller.example.toml" | render /dev/stdin
} >"$ETC/agent.toml"
mkdir -p "$DIR/agent-data"
"$BIN/dc-agent" --config "$ETC/agent.toml" >"$DIR/agent.log" 2>&1 &
PIDS="$PIDS $!"
within 60 online
dcm subcloud list

say "SIGKILL to the leader: controller-1 takes the lease and the agent follows"
killed=$(date +%s.%N)
kill -9 "$PID_controller_0"
within 30 test -s "$DIR/controller-1.ready"
led=$(date +%s.%N)
grep -q " leading" "$DIR/controller-1.log"
within 60 online
back=$(date +%s.%N)
awk -v k="$killed" -v l="$led" -v b="$back" \
    'BEGIN { printf "killed -> controller-1 leading: %.1f s; -> subcloud1 online: %.1f s\n", l - k, b - k }'
lease

say "controller-0 back: a standby now"
rm -f "$DIR/controller-0.ready"
start_controller controller-0
within 30 grep -q "another controller leads" "$DIR/controller-0.log"
lease
test ! -e "$DIR/controller-0.ready"

say "the new leader applies an update"
dcm kube-rootca-update-strategy create --subject "C=CA O=try CN=ha-try-root-ca" >/dev/null
dcm kube-rootca-update-strategy apply >/dev/null
within 120 sh -c "DCMANAGER_URL=$URLS OS_AUTH_TOKEN=$ADMIN '$BIN/dcmanager' kube-rootca-update-strategy show -f json | grep -q '\"state\": *\"complete\"'"
dcm kube-rootca-update-strategy show
leads 127.0.0.2
names_leader 127.0.0.1 127.0.0.2
lease
say "done: removing the cluster and $DIR"
