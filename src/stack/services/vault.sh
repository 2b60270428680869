# Vault 1.13.0 (MPL-2.0) in server mode (not -dev), built once from the wrapper module
# tools/vault into the tool cache. Sourced by lib.sh, after postgres.sh (its database engine
# manages the project PostgreSQL cluster's app roles).
#   listener   http://127.0.0.1:${DURABLE_OPS_VAULT_PORT:-8200}, TLS off: loopback only
#   storage    file, $DATA/vault/data; config $DATA/vault/config.hcl
#   init       one unseal key (1 of 1) and the root token in $DATA/vault/init.json (0600);
#              unsealed at every start
#   setup      (idempotent, at every start) file audit device -> $DATA/vault/audit.log; KV v2 at
#              secret/ (check-and-set required); database engine at database/ (connection "app"
#              as vault_admin, whose password Vault rotates; static roles app_a, app_b); AppRole
#              role durable-ops-worker with the least-privilege policy durable-ops-worker, its
#              role_id and secret_id in $DATA/vault/role-id, secret-id (0600) for the worker.

VAULT_VERSION="1.13.0"
VAULT_BIN="$CACHE/tools/vault-$VAULT_VERSION/vault"
VAULT_PORT="${DURABLE_OPS_VAULT_PORT:-8200}"
VAULT_DIR="$DATA/vault"
VAULT_INIT_FILE="$VAULT_DIR/init.json"
VAULT_WORKER_ROLE="durable-ops-worker"
export DURABLE_OPS_VAULT_ADDR="http://127.0.0.1:$VAULT_PORT"
export DURABLE_OPS_VAULT_ROLE_ID_FILE="$VAULT_DIR/role-id"
export DURABLE_OPS_VAULT_SECRET_ID_FILE="$VAULT_DIR/secret-id"
export DURABLE_OPS_VAULT_AUDIT_LOG="$VAULT_DIR/audit.log"
export DURABLE_OPS_VAULT_BIN="$VAULT_BIN"

APT_PACKAGES+=(jq curl)
EXTRA_TOOLS+=(build_vault)
EXTRA_SERVICES+=(ensure_vault)

# Vault's module has replace directives, so build it from inside tools/vault (go.mod pins
# v1.13.0 with sdk/api replacements and `godebug x509negativeserial=1`, without which the
# binary panics at start on Go 1.26), with lib.sh's cached_build (cache, lock, atomic move).
build_vault() { cached_build "$VAULT_BIN" "Vault $VAULT_VERSION (~1.5 GB of modules)" go_build_tool_into vault vault github.com/hashicorp/vault; }

vault_seal_status() { curl -sf --max-time 5 "$DURABLE_OPS_VAULT_ADDR/v1/sys/seal-status"; }
vault_answers() { vault_seal_status >/dev/null; }
vault_unsealed() { vault_seal_status | jq -e '.initialized and (.sealed | not)' >/dev/null; }

# The vault CLI with the root token (read from init.json into VAULT_ROOT_TOKEN by ensure_vault).
vault_root() { VAULT_ADDR="$DURABLE_OPS_VAULT_ADDR" VAULT_TOKEN="$VAULT_ROOT_TOKEN" "$VAULT_BIN" "$@"; }

# Write stdin to FILE (0600) atomically, only if it changed.
write_secret_file() {
  local tmp; tmp="$(mktemp "$1.XXXX")"
  chmod 0600 "$tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

vault_write_config() {
  local conf; conf="$(mktemp "$VAULT_DIR/config.hcl.XXXX")"
  cat >"$conf" <<EOF
# Written by src/stack/services/vault.sh. Server mode, file storage, loopback only.
storage "file" {
  path = "$VAULT_DIR/data"
}

# TLS is off because the listener is bound to 127.0.0.1 only (nothing leaves the machine).
listener "tcp" {
  address     = "127.0.0.1:$VAULT_PORT"
  tls_disable = true
}

api_addr      = "http://127.0.0.1:$VAULT_PORT"
disable_mlock = true
ui            = false
EOF
  if cmp -s "$conf" "$VAULT_DIR/config.hcl"; then rm -f "$conf"; else mv "$conf" "$VAULT_DIR/config.hcl"; fi
}

# Initialise once (1 key share), then unseal with the stored key (never on a command line).
vault_init_unseal() {
  if ! vault_seal_status | jq -e .initialized >/dev/null; then
    say "initialising Vault (unseal key and root token in $VAULT_INIT_FILE)"
    VAULT_ADDR="$DURABLE_OPS_VAULT_ADDR" "$VAULT_BIN" operator init -key-shares=1 -key-threshold=1 -format=json | write_secret_file "$VAULT_INIT_FILE"
    jq -e '.unseal_keys_b64[0] and .root_token' "$VAULT_INIT_FILE" >/dev/null || die "vault operator init wrote no key ($VAULT_INIT_FILE)"
  fi
  if ! vault_unsealed; then
    jq '{key: .unseal_keys_b64[0]}' "$VAULT_INIT_FILE" |
      curl -sf --max-time 10 -X PUT --data @- "$DURABLE_OPS_VAULT_ADDR/v1/sys/unseal" >/dev/null || die "unsealing Vault failed"
    wait_for 30 "Vault unseal" vault_unsealed
  fi
}

vault_has() { # vault_has KIND NAME/ : is the audit device / secrets engine / auth method enabled?
  vault_root "$1" list -format=json | jq -e --arg n "$2" 'has($n)' >/dev/null
}

vault_setup_database() {
  if [ ! -s "${PG_ADMIN_PASSWORD_FILE:-}" ]; then
    say "warning: no project PostgreSQL admin password file; Vault's database engine left unconfigured"
    return 0
  fi
  local id id_file="$VAULT_DIR/pg-cluster.id"
  id="$(pg_psql postgres -At -c 'SELECT system_identifier FROM pg_control_system()')" || return 1
  # Configure once per PostgreSQL cluster: the connection as vault_admin with a one-time password
  # that Vault at once rotates (from then on only Vault knows it), and the static roles.
  if [ "$(cat "$id_file" 2>/dev/null)" != "$id" ] || ! vault_root read database/config/app >/dev/null 2>&1; then
    say "configuring Vault's database engine for PostgreSQL 127.0.0.1:$PG_PORT"
    local pw; pw="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    printf "ALTER ROLE vault_admin WITH LOGIN CREATEROLE PASSWORD '%s';\n" "$pw" | pg_psql postgres || return 1
    jq -n --arg pw "$pw" --arg url "postgresql://{{username}}:{{password}}@127.0.0.1:$PG_PORT/app?sslmode=disable" \
      '{plugin_name: "postgresql-database-plugin", connection_url: $url, username: "vault_admin", password: $pw, allowed_roles: "app_a,app_b", verify_connection: true}' |
      vault_root write database/config/app - || return 1
    vault_root write -f database/rotate-root/app || return 1
    vault_root delete database/static-roles/app_a || return 1
    vault_root delete database/static-roles/app_b || return 1
    echo "$id" >"$id_file"
  fi
  local role
  for role in app_a app_b; do
    vault_root read "database/static-roles/$role" >/dev/null 2>&1 ||
      vault_root write "database/static-roles/$role" db_name=app username="$role" rotation_period=2160h || return 1
  done
}

vault_write_policy() {
  vault_root policy write "$VAULT_WORKER_ROLE" - <<'EOF'
# durable-ops worker: only the secrets it rotates.
path "secret/data/durable-ops/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/durable-ops/*" {
  capabilities = ["read", "update"]
}
path "secret/destroy/durable-ops/*" {
  capabilities = ["update"]
}
path "database/static-creds/*" {
  capabilities = ["read"]
}
path "database/static-roles/*" {
  capabilities = ["read"]
}
path "database/rotate-role/*" {
  capabilities = ["update"]
}
EOF
}

# The worker's AppRole: role_id and a secret_id in 0600 files; a new secret_id only if the
# stored one is missing or no longer valid.
vault_worker_approle() {
  vault_root write "auth/approle/role/$VAULT_WORKER_ROLE" token_policies="$VAULT_WORKER_ROLE" \
    token_ttl=1h token_max_ttl=4h secret_id_ttl=0 \
    secret_id_bound_cidrs=127.0.0.1/32 token_bound_cidrs=127.0.0.1/32 || return 1
  vault_root read -field=role_id "auth/approle/role/$VAULT_WORKER_ROLE/role-id" | write_secret_file "$DURABLE_OPS_VAULT_ROLE_ID_FILE" || return 1
  if [ -s "$DURABLE_OPS_VAULT_SECRET_ID_FILE" ] &&
    jq -Rn '{secret_id: input}' <"$DURABLE_OPS_VAULT_SECRET_ID_FILE" |
      vault_root write -format=json "auth/approle/role/$VAULT_WORKER_ROLE/secret-id/lookup" - 2>/dev/null |
      jq -e '.data.secret_id_accessor' >/dev/null; then
    return 0
  fi
  vault_root write -f -field=secret_id "auth/approle/role/$VAULT_WORKER_ROLE/secret-id" | write_secret_file "$DURABLE_OPS_VAULT_SECRET_ID_FILE"
}

# vault_step WHAT COMMAND...: one idempotent setup step, output to the setup log.
vault_step() {
  local what="$1"; shift
  "$@" >>"$LOG_DIR/vault-setup.log" 2>&1 || die "Vault setup: $what failed (see $LOG_DIR/vault-setup.log)"
}

vault_setup() {
  local VAULT_ROOT_TOKEN; VAULT_ROOT_TOKEN="$(jq -r .root_token "$VAULT_INIT_FILE")"
  vault_has audit file/ || vault_step "audit device" vault_root audit enable file file_path="$VAULT_DIR/audit.log"
  vault_has secrets secret/ || vault_step "KV v2 at secret/" vault_root secrets enable -path=secret -version=2 kv
  vault_step "KV check-and-set" vault_root write secret/config cas_required=true
  vault_has secrets database/ || vault_step "database engine" vault_root secrets enable database
  vault_step "database connection and static roles" vault_setup_database
  vault_step "worker policy" vault_write_policy
  vault_has auth approle/ || vault_step "AppRole auth" vault_root auth enable approle
  vault_step "worker AppRole" vault_worker_approle
}

ensure_vault() {
  mkdir -p "$VAULT_DIR/data"
  chmod 0700 "$VAULT_DIR"
  if ! port_open "$VAULT_PORT"; then
    [ -x "$VAULT_BIN" ] || build_vault
    vault_write_config
    say "starting Vault on 127.0.0.1:$VAULT_PORT (server mode, file storage in $VAULT_DIR/data)"
    start_bg vault "$VAULT_BIN" server -config="$VAULT_DIR/config.hcl"
  fi
  wait_for 60 "Vault" vault_answers
  if vault_seal_status | jq -e .initialized >/dev/null && [ ! -s "$VAULT_INIT_FILE" ]; then
    say "warning: the Vault on 127.0.0.1:$VAULT_PORT was initialised elsewhere (no $VAULT_INIT_FILE); not setting it up"
    return 0
  fi
  vault_init_unseal
  vault_setup
}
