#!/bin/sh
# The postgres:15 image's entrypoint, a much smaller cousin of the official image's script.
# On the first start (empty $PGDATA) it makes a cluster with initdb, as user postgres:
#   POSTGRES_USER      the superuser (the lab image sets `user`, so the plan's `psql -U user`
#                      works; the official image's default is postgres)
#   POSTGRES_PASSWORD  its password; when unset, connections from the container networks
#                      (10/8, 172.16/12, 192.168/16) are trusted: no password asked, fine in
#                      the lab, never elsewhere
#   POSTGRES_HOST_AUTH_METHOD  the method for host connections from anywhere (trust, md5,
#                      scram-sha-256, ...), as the official image takes it
#   POSTGRES_DB        a database made for it (default: $POSTGRES_USER)
#   POSTGRES_INITDB_ARGS  more initdb arguments
# The cluster listens on every address.
# Then it runs the command (default postgres) as user postgres; flags alone go to postgres.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

# as_postgres CMD...: run as user postgres (setpriv is util-linux's, in every Debian image).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups "$@"
    else
        "$@"
    fi
}

# Root makes the directories postgres needs; a non-root user must be given them ready.
prepare_dirs() {
    [ "$(id -u)" = 0 ] || return 0
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    chmod 2775 /run/postgresql
}

init_cluster() {
    # Who may connect over the network: anyone by the given method, or with a password from
    # anywhere, or (neither given) the container networks without one.
    from="all"
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        [ "$(id -u)" != 0 ] || chown postgres "$pwfile"
        set -- --pwfile="$pwfile"
    else
        auth=${POSTGRES_HOST_AUTH_METHOD:-trust}
        [ -n "${POSTGRES_HOST_AUTH_METHOD:-}" ] || from="10.0.0.0/8 172.16.0.0/12 192.168.0.0/16"
        pwfile=
        set --
        echo "docker-entrypoint.sh: POSTGRES_PASSWORD is not set: host connections from $from are $auth" >&2
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments
    as_postgres initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth" \
        "$@" ${POSTGRES_INITDB_ARGS:-} > /dev/null
    [ -z "$pwfile" ] || rm -f "$pwfile"
    printf '\n# docker-entrypoint.sh: connections over the network\n' >> "$PGDATA/pg_hba.conf"
    for net in $from; do
        printf 'host all all %s %s\n' "$net" "$auth" >> "$PGDATA/pg_hba.conf"
    done
    printf "\n# docker-entrypoint.sh\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # Single-user mode makes the database without a server listening half-configured.
        db=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
        if ! log=$(echo "CREATE DATABASE \"$db\"" | as_postgres postgres --single -D "$PGDATA" postgres 2>&1); then
            echo "$log" >&2
            echo "docker-entrypoint.sh: could not make database $POSTGRES_DB" >&2
            exit 1
        fi
    fi
    echo "docker-entrypoint.sh: made a cluster in $PGDATA for user $POSTGRES_USER, database $POSTGRES_DB" >&2
}

case ${1:-} in
    -*) set -- postgres "$@" ;;
    '') set -- postgres ;;
esac
if [ "$1" = postgres ]; then
    prepare_dirs
    [ -n "$(ls -A "$PGDATA")" ] || init_cluster
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
    fi
fi
exec "$@"
