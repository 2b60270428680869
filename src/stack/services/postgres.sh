# PostgreSQL 15 (Debian package postgresql): the project's own cluster for the credential
# rotation runbook, separate from any system cluster. Sourced by lib.sh.
#   data       $DATA/postgres/data (owned by the postgres OS user when we run as root: initdb
#              refuses root), unix socket in $DATA/postgres/run
#   listens    127.0.0.1:${DURABLE_OPS_PG_PORT:-5433} only; scram-sha-256 for TCP and the socket
#   admin      superuser durable_ops_admin, password in $DATA/postgres/admin.password (0600)
#   backups    the backup store $DURABLE_OPS_BACKUP_DIR (default $PG_CLUSTER_DIR/backups, owned by
#              postgres): WAL archived continuously into <store>/main/wal/ (archive_command,
#              archive_timeout bounds the RPO), base backups and dumps by the backupDatabase runbook;
#              instances we create (restores, drill copies) live in $DURABLE_OPS_PG_INSTANCES_DIR
#   database   app; login roles app_a, app_b (the two alternating credentials, passwords set by
#              Vault's database engine) in the group role app_rw (CONNECT on app, CRUD on the
#              tables of schema public); vault_admin (LOGIN CREATEROLE, no superuser) is the
#              role Vault's database engine connects as (its password is rotated by Vault).
# The postmaster runs in the foreground under start_bg, so the recorded PID is the postmaster.

APT_PACKAGES+=(postgresql openssl) # openssl dgst: the backup checksums
EXTRA_SERVICES+=(ensure_postgres)

PG_BIN="${DURABLE_OPS_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_PORT="${DURABLE_OPS_PG_PORT:-5433}"
PG_DIR="$DATA/postgres"
# The cluster's own folders belong to the postgres user, who must be able to reach them. A clone
# under a private folder (mktemp -d is 0700) is not reachable: then the cluster lives under
# /var/lib/durable-ops, keyed by the data folder; passwords stay in $PG_DIR either way.
PG_CLUSTER_DIR="${DURABLE_OPS_PG_CLUSTER_DIR:-$PG_DIR}"
if [ -z "${DURABLE_OPS_PG_CLUSTER_DIR:-}" ] && [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 &&
  ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$DATA" 2>/dev/null; then
  PG_CLUSTER_DIR="/var/lib/durable-ops/postgres-$(printf '%s' "$DATA" | sha256sum | cut -c1-12)"
fi
PG_DATA="$PG_CLUSTER_DIR/data"
PG_SOCKET_DIR="$PG_CLUSTER_DIR/run"
PG_ADMIN_USER="durable_ops_admin"
PG_ADMIN_PASSWORD_FILE="$PG_DIR/admin.password"
PG_ROTATOR_PASSWORD_FILE="$PG_DIR/rotator.password"
# The backup store and the instances we create: where postgres can write (next to the cluster).
PG_BACKUP_DIR="${DURABLE_OPS_BACKUP_DIR:-$PG_CLUSTER_DIR/backups}"
PG_INSTANCES_DIR="${DURABLE_OPS_PG_INSTANCES_DIR:-$PG_CLUSTER_DIR/instances}"
PG_WAL_ARCHIVE="$PG_BACKUP_DIR/main/wal"
# A WAL segment is archived at the latest this long after a write (seconds): it bounds the RPO
# (seed: 5 min) for the data not yet in a base backup. Same value as WAL_ARCHIVE_TIMEOUT_S in
# src/config/defaults.ts.
PG_ARCHIVE_TIMEOUT_S=60
# pg_basebackup takes one WAL sender (two with -X stream); drills and benches may run a few at once.
PG_MAX_WAL_SENDERS=10
export DURABLE_OPS_PG_HOST="127.0.0.1"
export DURABLE_OPS_PG_PORT="$PG_PORT"
export DURABLE_OPS_PG_DATABASE="app"
export DURABLE_OPS_PG_ADMIN_USER="$PG_ADMIN_USER"
export DURABLE_OPS_PG_ADMIN_PASSWORD_FILE="$PG_ADMIN_PASSWORD_FILE"
export DURABLE_OPS_PG_ROTATOR_PASSWORD_FILE="$PG_ROTATOR_PASSWORD_FILE"
export DURABLE_OPS_PG_BIN="$PG_BIN"
export DURABLE_OPS_PG_SOCKET_DIR="$PG_SOCKET_DIR"
export DURABLE_OPS_BACKUP_DIR="$PG_BACKUP_DIR"
export DURABLE_OPS_PG_INSTANCES_DIR="$PG_INSTANCES_DIR"
# SIGTERM is a "smart" shutdown that waits for every client to disconnect; SIGINT is the clean
# fast shutdown (read by stop_recorded).
STOP_SIGNAL[postgres]=INT

# Run a command as the cluster's OS user: postgres when we are root, else ourselves. setpriv
# execs (no watching parent, unlike runuser/su, which SIGKILL their child 2 s after a SIGTERM).
pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

# psql as the admin over the socket: pg_psql DB [psql args...]
pg_psql() {
  local db="$1"; shift
  PGPASSWORD="$(cat "$PG_ADMIN_PASSWORD_FILE")" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U "$PG_ADMIN_USER" -d "$db" "$@"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# archive_command for a WAL archive folder (the same shape as src/activities/pg-instances.ts): never
# overwrite (an already archived identical segment counts as done, so a retry after a crash
# succeeds; a different one fails loudly), copy to a temp name, flush it, then rename.
pg_archive_command() {
  local d="$1"
  printf '%s' "d=$d; if [ -f \"\$d/%f\" ]; then cmp -s \"%p\" \"\$d/%f\"; else cp \"%p\" \"\$d/.%f.tmp\" && sync \"\$d/.%f.tmp\" && mv \"\$d/.%f.tmp\" \"\$d/%f\"; fi"
}

# The backup store and the instances folder, writable by the cluster's OS user.
pg_ensure_store() {
  mkdir -p "$PG_WAL_ARCHIVE" "$PG_INSTANCES_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PG_BACKUP_DIR" "$PG_BACKUP_DIR/main" "$PG_WAL_ARCHIVE" "$PG_INSTANCES_DIR"
    setpriv --reuid=postgres --regid=postgres --init-groups -- test -w "$PG_WAL_ARCHIVE" ||
      die "the postgres user cannot write to $PG_WAL_ARCHIVE (a parent folder is not traversable)"
  fi
  chmod 0750 "$PG_BACKUP_DIR" "$PG_INSTANCES_DIR"
}

pg_init_cluster() {
  [ -f "$PG_DATA/PG_VERSION" ] && return 0
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 is not installed ($PG_BIN/initdb; Debian package postgresql)"
  say "initialising the PostgreSQL cluster in $PG_DATA"
  mkdir -p "$PG_DIR" "$PG_DATA" "$PG_SOCKET_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$PG_DATA" "$PG_SOCKET_DIR"
    setpriv --reuid=postgres --regid=postgres --init-groups -- test -w "$PG_DATA" ||
      die "the postgres user cannot write to $PG_DATA (a parent folder is not traversable)"
  fi
  chmod 0700 "$PG_DATA"
  chmod 0755 "$PG_SOCKET_DIR"
  if [ ! -s "$PG_ADMIN_PASSWORD_FILE" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PG_ADMIN_PASSWORD_FILE")
  fi
  # initdb reads the password from a file the cluster owner can read; a short-lived copy.
  local pwfile; pwfile="$(mktemp "$PG_SOCKET_DIR/.pw.XXXX")"
  cat "$PG_ADMIN_PASSWORD_FILE" >"$pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pwfile"
  pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_ADMIN_USER" --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
    >"$LOG_DIR/postgres-initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed (see $LOG_DIR/postgres-initdb.log)"; }
  rm -f "$pwfile"
  # Our settings live in one included file, rewritten at every start (the port may change).
  printf "\ninclude_if_exists = 'durable-ops.conf'\n" >>"$PG_DATA/postgresql.conf"
}

pg_write_config() {
  local conf hba
  conf="$(mktemp)"; hba="$(mktemp)"
  cat >"$conf" <<EOF
# Written by src/stack/services/postgres.sh at every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = $PG_MAX_WAL_SENDERS
archive_mode = on
archive_command = '$(pg_archive_command "$PG_WAL_ARCHIVE")'
archive_timeout = $PG_ARCHIVE_TIMEOUT_S
logging_collector = off
log_connections = on
EOF
  cat >"$hba" <<'EOF'
# Written by src/stack/services/postgres.sh: passwords (scram) only, loopback only.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  scram-sha-256
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
EOF
  local f
  PG_CONFIG_CHANGED=0
  for f in durable-ops.conf pg_hba.conf; do
    local src="$conf"; [ "$f" = pg_hba.conf ] && src="$hba"
    if ! cmp -s "$src" "$PG_DATA/$f"; then
      install -m 0600 "$src" "$PG_DATA/$f"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_DATA/$f"
      PG_CONFIG_CHANGED=1
    fi
  done
  rm -f "$conf" "$hba"
}

pg_start_postmaster() {
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT (data $PG_DATA)"
  local cmd=("$PG_BIN/postgres" -D "$PG_DATA")
  if [ "$(id -u)" -eq 0 ]; then
    start_bg postgres setpriv --reuid=postgres --regid=postgres --init-groups -- "${cmd[@]}"
    pg_record_postmaster "${cmd[@]}"
  else
    start_bg postgres "${cmd[@]}"
  fi
  wait_for 60 "PostgreSQL" pg_ready
}

# A running cluster whose config file changed: reload, and restart (only the postmaster we
# recorded) when a setting needs it (archive_mode, wal_level...; also a change an earlier run
# wrote but could not apply). Nothing pending, no restart.
pg_apply_config() {
  if [ "$PG_CONFIG_CHANGED" = 1 ]; then
    pg_psql postgres -c 'SELECT pg_reload_conf()' >/dev/null || die "PostgreSQL: reload failed"
    sleep 0.5
  fi
  local pending
  pending="$(pg_psql postgres -At -c 'SELECT count(*) FROM pg_settings WHERE pending_restart')" || die "PostgreSQL: cannot read pg_settings"
  [ "$pending" = 0 ] && return 0
  if recorded_alive postgres; then
    say "PostgreSQL: restarting to apply $(pg_psql postgres -At -c "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart")"
    stop_recorded postgres
    wait_for 60 "PostgreSQL to stop" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$PG_PORT) 2>/dev/null"
    pg_start_postmaster
  else
    say "warning: PostgreSQL on $PG_PORT was not started by durable-ops; restart it to apply the new settings"
  fi
}

# Roles, database and grants; idempotent (runs at every ensure_postgres).
pg_setup() {
  pg_psql postgres <<'SQL' >>"$LOG_DIR/postgres-setup.log" 2>&1 || die "PostgreSQL setup failed (see $LOG_DIR/postgres-setup.log)"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_rw') THEN CREATE ROLE app_rw NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_a') THEN CREATE ROLE app_a LOGIN INHERIT IN ROLE app_rw; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_b') THEN CREATE ROLE app_b LOGIN INHERIT IN ROLE app_rw; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vault_admin') THEN CREATE ROLE vault_admin LOGIN CREATEROLE; END IF;
  -- The orders app's alternating users, rotated by the rotateCredential runbook (config/rotations.json).
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_a') THEN CREATE ROLE orders_a NOLOGIN INHERIT IN ROLE app_rw; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders_b') THEN CREATE ROLE orders_b NOLOGIN INHERIT IN ROLE app_rw; END IF;
  -- The worker's rotator: may set passwords and LOGIN/NOLOGIN of non-superuser roles, nothing else.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'durable_ops_rotator') THEN CREATE ROLE durable_ops_rotator LOGIN CREATEROLE; END IF;
END $$;
SELECT 'CREATE DATABASE app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO app_rw, vault_admin, durable_ops_rotator;
SQL
  # The rotator's password: generated once into a 0600 file the worker reads; set at every start.
  if [ ! -s "$PG_ROTATOR_PASSWORD_FILE" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$PG_ROTATOR_PASSWORD_FILE")
  fi
  printf "ALTER ROLE durable_ops_rotator WITH LOGIN CREATEROLE NOSUPERUSER PASSWORD '%s';\n" "$(cat "$PG_ROTATOR_PASSWORD_FILE")" | pg_psql postgres >>"$LOG_DIR/postgres-setup.log" 2>&1 || die "PostgreSQL rotator setup failed"
  pg_psql app <<'SQL' >>"$LOG_DIR/postgres-setup.log" 2>&1 || die "PostgreSQL setup of database app failed (see $LOG_DIR/postgres-setup.log)"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO app_rw;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_rw;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO app_rw;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_rw;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO app_rw;
SQL
}

# Record the postmaster: setpriv exec'd it, so $! is its PID, but its command line is
# postgres's own, not the setpriv wrapper's.
pg_record_postmaster() {
  local f="$RUN_DIR/postgres.pid" pid
  read -r pid <"$f"
  printf '%s\n%s\n' "$pid" "$*" >"$f"
}

ensure_postgres() {
  if port_open "$PG_PORT"; then
    if [ -s "$PG_ADMIN_PASSWORD_FILE" ] && [ -f "$PG_DATA/PG_VERSION" ]; then
      pg_ensure_store
      pg_write_config
      pg_apply_config
      pg_setup
    fi
    return 0
  fi
  pg_init_cluster
  pg_ensure_store
  pg_write_config
  pg_start_postmaster
  pg_setup
}

# The instances the engine created (restores, drill copies; registry: <instances>/<id>/instance.json).
# npm stop stops them with the rest of the stack (pg_ctl, by the postmaster.pid of their own data
# folder); npm start brings back the ones that were ready, as the project cluster comes back.
pg_instances_ready() {
  local f
  for f in "$PG_INSTANCES_DIR"/*/instance.json; do
    [ -f "$f" ] || continue
    grep -q '"state": *"ready"' "$f" && dirname "$f"
  done
  return 0
}

stop_pg_instances() {
  local dir
  [ -d "$PG_INSTANCES_DIR" ] || return 0
  for dir in "$PG_INSTANCES_DIR"/*/; do
    [ -f "$dir/data/postmaster.pid" ] || continue
    say "stopping PostgreSQL instance $(basename "$dir")"
    pg_as_owner "$PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null 2>&1 || say "warning: instance $(basename "$dir") did not stop (see $dir/postgres.log)"
  done
}

start_pg_instances() {
  local dir
  while read -r dir; do
    [ -n "$dir" ] || continue
    pg_as_owner "$PG_BIN/pg_ctl" status -D "$dir/data" >/dev/null 2>&1 && continue
    say "starting PostgreSQL instance $(basename "$dir")"
    pg_as_owner "$PG_BIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 >/dev/null 2>&1 || say "warning: instance $(basename "$dir") did not start (see $dir/postgres.log)"
  done < <(pg_instances_ready)
}
