#!/bin/bash
# Install mlx-audio-server as a launchd LaunchAgent (macOS): render the plist with absolute paths, load it
# into the GUI session (where Metal is available), and wait for GET /health.
#
#   deploy/launchd/install.sh [--bin PATH] [--cache-dir DIR] [--env-file FILE] [--port N] [--timeout S]
#   deploy/launchd/install.sh --dry-run ...   # print the rendered plist, change nothing
#   deploy/launchd/install.sh --uninstall
#
# --bin        the mlx-audio-server executable (default: <repo>/.venv/bin/mlx-audio-server)
# --cache-dir  downloads and converted models (default: MLX_AUDIO_CACHE_DIR from --env-file, else
#              ~/Library/Caches/mlx-audio-server)
# --env-file   MLX_AUDIO_* assignments to put into the job's environment (see mlx-audio-server.env.example)
set -eu

PROG=launchd/install.sh
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$HERE/../lib.sh"

LABEL=com.mlx-audio-server
TEMPLATE="$HERE/$LABEL.plist"
BIN="$(repo_root)/.venv/bin/mlx-audio-server"
CACHE_DIR=""
ENV_FILE=""
PORT=""
TIMEOUT=120
DRY_RUN=0
UNINSTALL=0

while [ $# -gt 0 ]; do
    case $1 in
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

AGENTS="$HOME/Library/LaunchAgents"
PLIST="$AGENTS/$LABEL.plist"
DOMAIN="gui/$(id -u)"

if [ "$UNINSTALL" = 1 ]; then
    launchctl bootout "$DOMAIN/$LABEL" 2>/dev/null || true
    rm -f "$PLIST"
    echo "$PROG: removed $LABEL (logs and cache are kept)"
    exit 0
fi

if [ -n "$ENV_FILE" ]; then
    [ -r "$ENV_FILE" ] || die "cannot read --env-file $ENV_FILE"
    ENV_FILE=$(abspath "$ENV_FILE")
    env_file_pairs "$ENV_FILE" >/dev/null # validate (dies on a malformed line)
fi
[ -n "$CACHE_DIR" ] || CACHE_DIR=$(env_file_get "$ENV_FILE" MLX_AUDIO_CACHE_DIR)
[ -n "$CACHE_DIR" ] || CACHE_DIR="$HOME/Library/Caches/mlx-audio-server"
[ -n "$PORT" ] || PORT=$(env_file_get "$ENV_FILE" MLX_AUDIO_PORT)
[ -n "$PORT" ] || PORT=8000
HOST=$(health_host "$(env_file_get "$ENV_FILE" MLX_AUDIO_HOST)")
case $PORT in *[!0-9]* | "") die "--port must be a number: $PORT" ;; esac
case $TIMEOUT in *[!0-9]* | "") die "--timeout must be a number of seconds: $TIMEOUT" ;; esac
BIN=$(abspath "$BIN")
CACHE_DIR=$(abspath "$CACHE_DIR")
LOG_DIR="$HOME/Library/Logs/mlx-audio-server"
if [ "$DRY_RUN" = 0 ]; then
    [ -x "$BIN" ] || die "$BIN is not an executable: install the project first (make install), or pass --bin"
fi

render() {
    envblock=$(mktemp)
    trap 'rm -f "$envblock"' EXIT
    if [ -n "$ENV_FILE" ]; then
        env_file_pairs "$ENV_FILE" | while IFS="$(printf '\t')" read -r key val; do
            case $key in MLX_AUDIO_CACHE_DIR | PATH) continue ;; esac
            printf '        <key>%s</key>\n        <string>%s</string>\n' "$key" "$(xml_escape "$val")"
        done >"$envblock"
    fi
    sed -e "s|@BIN@|$(sed_escape "$(xml_escape "$BIN")")|g" \
        -e "s|@CACHE_DIR@|$(sed_escape "$(xml_escape "$CACHE_DIR")")|g" \
        -e "s|@LOG_DIR@|$(sed_escape "$(xml_escape "$LOG_DIR")")|g" \
        -e "s|@PATH@|$(sed_escape "$(xml_escape "$(dirname "$BIN"):/usr/bin:/bin:/usr/sbin:/sbin")")|g" \
        "$TEMPLATE" |
        awk -v f="$envblock" '$0 == "@ENVIRONMENT@" { while ((getline l < f) > 0) print l; next } { print }'
}

if [ "$DRY_RUN" = 1 ]; then
    render
    exit 0
fi

[ "$(uname -s)" = Darwin ] || die "launchd is macOS-only; on Linux use deploy/systemd/install.sh"
mkdir -p "$AGENTS" "$LOG_DIR" "$CACHE_DIR"
tmp="$PLIST.tmp.$$"
render >"$tmp"
plutil -lint "$tmp" >/dev/null || { rm -f "$tmp"; die "rendered plist is invalid"; }
chmod 600 "$tmp" # may hold MLX_AUDIO_API_KEY
mv -f "$tmp" "$PLIST"

launchctl bootout "$DOMAIN/$LABEL" 2>/dev/null || true
launchctl bootstrap "$DOMAIN" "$PLIST"
launchctl enable "$DOMAIN/$LABEL"
echo "$PROG: loaded $PLIST (logs: $LOG_DIR)"

if ! health_check "http://$HOST:$PORT/health" "$TIMEOUT"; then
    tail -n 20 "$LOG_DIR/mlx-audio-server.err.log" 2>/dev/null >&2 || true
    die "the service did not become healthy; see $LOG_DIR and: launchctl print $DOMAIN/$LABEL"
fi
