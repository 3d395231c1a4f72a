#!/bin/bash
# Install mlx-audio-server as a systemd service (a user unit by default), enable and start it, and wait
# for GET /health.
#
#   deploy/systemd/install.sh [--system [--user NAME]] [--bin PATH] [--cache-dir DIR] [--env-file FILE]
#                             [--port N] [--timeout S]
#   deploy/systemd/install.sh --dry-run ...   # print the rendered unit, change nothing
#   deploy/systemd/install.sh --uninstall [--system]
#
# --system     a system unit in /etc/systemd/system running as --user (default: $SUDO_USER); needs root
# --bin        the mlx-audio-server executable (default: <repo>/.venv/bin/mlx-audio-server)
# --cache-dir  downloads and converted models (default: ~/.cache/mlx-audio-server, or
#              /var/cache/mlx-audio-server with --system)
# --env-file   the EnvironmentFile (default: ~/.config/mlx-audio-server/mlx-audio-server.env, or
#              /etc/mlx-audio-server/mlx-audio-server.env); created from the example when missing
set -eu

PROG=systemd/install.sh
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$HERE/../lib.sh"

UNIT=mlx-audio-server.service
TEMPLATE="$HERE/$UNIT"
EXAMPLE="$HERE/../mlx-audio-server.env.example"
BIN="$(repo_root)/.venv/bin/mlx-audio-server"
SYSTEM=0
SVC_USER=${SUDO_USER:-}
CACHE_DIR=""
ENV_FILE=""
PORT=""
TIMEOUT=120
DRY_RUN=0
UNINSTALL=0

while [ $# -gt 0 ]; do
    case $1 in
        --system) SYSTEM=1; shift ;;
        --user) SVC_USER=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --cache-dir) CACHE_DIR=$2; shift 2 ;;
        --env-file) ENV_FILE=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

if [ "$SYSTEM" = 1 ]; then
    SYSTEMCTL="systemctl"
    UNIT_DIR=/etc/systemd/system
    [ -n "$SVC_USER" ] || SVC_USER=$(id -un)
    SVC_GROUP=$(id -gn "$SVC_USER" 2>/dev/null) || die "unknown user: $SVC_USER"
    [ -n "$CACHE_DIR" ] || CACHE_DIR=/var/cache/mlx-audio-server
    [ -n "$ENV_FILE" ] || ENV_FILE=/etc/mlx-audio-server/mlx-audio-server.env
    KEEP=system
    DROP=user
else
    SYSTEMCTL="systemctl --user"
    UNIT_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
    SVC_USER=$(id -un)
    SVC_GROUP=$(id -gn)
    [ -n "$CACHE_DIR" ] || CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/mlx-audio-server"
    [ -n "$ENV_FILE" ] || ENV_FILE="${XDG_CONFIG_HOME:-$HOME/.config}/mlx-audio-server/mlx-audio-server.env"
    KEEP=user
    DROP=system
fi

if [ "$UNINSTALL" = 1 ]; then
    $SYSTEMCTL disable --now "$UNIT" 2>/dev/null || true
    rm -f "$UNIT_DIR/$UNIT"
    $SYSTEMCTL daemon-reload
    echo "$PROG: removed $UNIT (environment file, logs and cache are kept)"
    exit 0
fi

BIN=$(abspath "$BIN")
CACHE_DIR=$(abspath "$CACHE_DIR")
ENV_FILE=$(abspath "$ENV_FILE")
for p in "$BIN" "$CACHE_DIR" "$ENV_FILE"; do
    case $p in *[[:space:]\"\'\\%\$]*) die "paths in a unit may not contain spaces, quotes, \\, % or \$: $p" ;; esac
done
if [ -r "$ENV_FILE" ]; then
    env_file_pairs "$ENV_FILE" >/dev/null # validate (dies on a malformed line)
fi
[ -n "$PORT" ] || PORT=$(env_file_get "$ENV_FILE" MLX_AUDIO_PORT)
[ -n "$PORT" ] || PORT=8000
HOST=$(health_host "$(env_file_get "$ENV_FILE" MLX_AUDIO_HOST)")
case $PORT in *[!0-9]* | "") die "--port must be a number: $PORT" ;; esac
case $TIMEOUT in *[!0-9]* | "") die "--timeout must be a number of seconds: $TIMEOUT" ;; esac

render() {
    sed -e "/^#$DROP:/d" -e "s/^#$KEEP://" \
        -e "s|@BIN@|$(sed_escape "$BIN")|g" \
        -e "s|@CACHE_DIR@|$(sed_escape "$CACHE_DIR")|g" \
        -e "s|@ENV_FILE@|$(sed_escape "$ENV_FILE")|g" \
        -e "s|@USER@|$(sed_escape "$SVC_USER")|g" \
        -e "s|@GROUP@|$(sed_escape "$SVC_GROUP")|g" \
        "$TEMPLATE"
}

if [ "$DRY_RUN" = 1 ]; then
    render
    exit 0
fi

[ -x "$BIN" ] || die "$BIN is not an executable: install the project first (make install), or pass --bin"
command -v systemctl >/dev/null 2>&1 || die "systemctl not found (on macOS use deploy/launchd/install.sh)"
if [ "$SYSTEM" = 1 ] && [ "$(id -u)" -ne 0 ]; then
    die "--system needs root: sudo $0 --system ..."
fi

mkdir -p "$UNIT_DIR" "$CACHE_DIR" "$(dirname "$ENV_FILE")"
if [ ! -e "$ENV_FILE" ]; then
    (umask 077 && cp "$EXAMPLE" "$ENV_FILE")
    echo "$PROG: wrote $ENV_FILE (every setting, commented out)"
fi
if [ "$SYSTEM" = 1 ]; then
    chown "$SVC_USER:$SVC_GROUP" "$CACHE_DIR"
    chmod 640 "$ENV_FILE"
    chgrp "$SVC_GROUP" "$ENV_FILE"
fi

tmp="$UNIT_DIR/.$UNIT.tmp.$$"
render >"$tmp"
if command -v systemd-analyze >/dev/null 2>&1; then
    scope=--user
    [ "$SYSTEM" = 1 ] && scope=--system
    vdir=$(mktemp -d)
    cp "$tmp" "$vdir/$UNIT"
    systemd-analyze "$scope" verify "$vdir/$UNIT" || echo "$PROG: systemd-analyze verify reported the above" >&2
    rm -rf "$vdir"
fi
chmod 644 "$tmp"
mv -f "$tmp" "$UNIT_DIR/$UNIT"

$SYSTEMCTL daemon-reload
$SYSTEMCTL enable "$UNIT"
$SYSTEMCTL restart "$UNIT"
echo "$PROG: started $UNIT ($UNIT_DIR/$UNIT); logs: ${SYSTEMCTL/systemctl/journalctl} -u $UNIT"
if [ "$SYSTEM" = 0 ] && command -v loginctl >/dev/null 2>&1; then
    if ! loginctl show-user "$SVC_USER" -p Linger 2>/dev/null | grep -q yes; then
        echo "$PROG: to keep it running after you log out: loginctl enable-linger $SVC_USER"
    fi
fi

if ! health_check "http://$HOST:$PORT/health" "$TIMEOUT"; then
    $SYSTEMCTL --no-pager status "$UNIT" >&2 || true
    die "the service did not become healthy; see: ${SYSTEMCTL/systemctl/journalctl} -u $UNIT"
fi
