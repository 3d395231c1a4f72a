# shellcheck shell=bash
# Helpers shared by deploy/launchd/install.sh and deploy/systemd/install.sh (sourced, not run).
# Portable to the bash 3.2 that macOS ships: no associative arrays, no ${var,,}, no mapfile.

die() {
    echo "$PROG: $*" >&2
    exit 1
}

# The repository root (this file lives in <root>/deploy).
repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# Expand a leading ~ and make a path absolute (services start in /, so relative paths are never kept).
abspath() {
    p=$1
    # shellcheck disable=SC2088 # matching a literal "~/" prefix, which is expanded here
    case $p in
        "~") p=$HOME ;;
        "~/"*) p="$HOME/${p#"~/"}" ;;
    esac
    case $p in
        /*) ;;
        *) p="$PWD/$p" ;;
    esac
    # Drop "/./" and a trailing "/" (cosmetic; ".." is left to the kernel).
    p=$(printf '%s\n' "$p" | sed -e 's|/\./|/|g' -e 's|/\.$||' -e 's|\(.\)/$|\1|')
    printf '%s\n' "$p"
}

# Escape a value for the replacement side of `sed s|...|VALUE|`.
sed_escape() {
    printf '%s\n' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# Escape text for an XML element.
xml_escape() {
    printf '%s\n' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
}

# Print "KEY<TAB>VALUE" for each assignment in an environment file (comments and blanks skipped,
# one level of surrounding single or double quotes removed, `export ` prefixes allowed).
env_file_pairs() {
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line#"${line%%[![:space:]]*}"}
        case $line in
            "" | "#"*) continue ;;
            "export "*) line=${line#export } ;;
        esac
        key=${line%%=*}
        [ "$key" != "$line" ] || continue
        case $key in
            "" | [0-9]* | *[!A-Za-z0-9_]*) die "$1: not an assignment: $line" ;;
        esac
        val=${line#*=}
        case $val in
            \'*\')
                val=${val#\'}
                val=${val%\'}
                ;;
            \"*\")
                val=${val#\"}
                val=${val%\"}
                ;;
        esac
        printf '%s\t%s\n' "$key" "$val"
    done <"$1"
}

# The value of KEY in an environment file (the last assignment wins), or nothing.
env_file_get() {
    [ -n "$1" ] && [ -r "$1" ] || return 0
    env_file_pairs "$1" | awk -F '\t' -v k="$2" '$1 == k { v = substr($0, length(k) + 2) } END { if (v != "") print v }'
}

# The address to probe: the bound host unless it is a wildcard.
health_host() {
    case ${1:-} in
        "" | 0.0.0.0 | "::" | "[::]") echo 127.0.0.1 ;;
        *:*) echo "[${1#[}" | sed 's/\]*$/]/' ;;
        *) echo "$1" ;;
    esac
}

# Poll GET /health until it answers 200 or `timeout` seconds pass.
health_check() {
    url=$1
    timeout=$2
    command -v curl >/dev/null 2>&1 || {
        echo "$PROG: curl not found; skipping the health check of $url" >&2
        return 0
    }
    i=0
    while [ "$i" -lt "$timeout" ]; do
        if curl -fsS --max-time 2 "$url" >/dev/null 2>&1; then
            echo "$PROG: healthy: $url"
            return 0
        fi
        i=$((i + 1))
        sleep 1
    done
    echo "$PROG: $url did not answer within ${timeout}s" >&2
    return 1
}
