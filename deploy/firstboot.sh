#!/usr/bin/env bash
# First-boot configuration of a flashed basketagent image, run once by
# basketagent-firstboot.service before the agent starts.
#
# Whoever flashes the SD card drops one of these on the boot (FAT) partition:
#   basketagent.toml          a complete agent.toml
#   basketagent-backend.txt   just the backend URL on its first line
# The result is validated with the agent's own config loader, written atomically
# to /etc/basketagent/agent.toml as 0640 root:basketagent (the boot partition is
# world-readable), and the boot file is removed. An invalid file is renamed to
# *.rejected and the previous configuration is kept.
#
# Exit: 0 done (or nothing to do), 1 the file was rejected or could not be applied.
set -euo pipefail

BOOT_DIR=${BASKETAGENT_BOOT_DIR:-/boot/firmware}
CONF_DIR=${BASKETAGENT_CONF_DIR:-/etc/basketagent}
OWNER=${BASKETAGENT_CONF_OWNER:-root:basketagent}
PYTHON=${BASKETAGENT_PYTHON:-/opt/basketagent/bin/python}

toml_src=$BOOT_DIR/basketagent.toml
url_src=$BOOT_DIR/basketagent-backend.txt
target=$CONF_DIR/agent.toml

log() { echo "basketagent-firstboot: $*" >&2; }

# The first line that is neither blank nor a comment, without spaces or a CR.
read_url() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line//$'\r'/}
        line=${line#"${line%%[![:space:]]*}"}
        line=${line%"${line##*[![:space:]]}"}
        case $line in '' | '#'*) continue ;; esac
        printf '%s\n' "$line"
        return 0
    done <"$1"
    return 1
}

# Replace (or add) backend.url in the TOML file $1, writing to stdout.
set_url() {
    awk -v url="$2" '
        function emit() { print "url = \"" url "\""; done = 1 }
        /^[[:space:]]*\[/ {
            insec = ($0 ~ /^[[:space:]]*\[backend\][[:space:]]*(#.*)?$/)
            print
            if (insec && !done) emit()
            next
        }
        insec && /^[[:space:]]*url[[:space:]]*=/ { next }
        { print }
        END { if (!done) { print ""; print "[backend]"; emit() } }
    ' "$1"
}

validate() {
    if [ ! -x "$PYTHON" ]; then
        log "warning: $PYTHON is missing, $1 is not validated"
        return 0
    fi
    "$PYTHON" - "$1" <<'PY'
import sys
from agent.config import load_config
from agent.errors import AgentError
try:
    load_config(sys.argv[1], env={})
except AgentError as exc:
    print(f"basketagent-firstboot: {exc}", file=sys.stderr)
    sys.exit(2)
PY
}

reject() {
    local file
    for file in "$@"; do
        [ -e "$file" ] && mv -f "$file" "$file.rejected"
    done
    log "kept the previous configuration; fix the file and put it back on the boot partition"
    exit 1
}

if [ ! -e "$toml_src" ] && [ ! -e "$url_src" ]; then
    log "nothing to do: no $toml_src or $url_src"
    exit 0
fi

mkdir -p "$CONF_DIR"
candidate=$(mktemp "$CONF_DIR/.agent.toml.XXXXXX")
trap 'rm -f "$candidate"' EXIT
chmod 0640 "$candidate"

if [ -e "$toml_src" ]; then
    cat "$toml_src" >"$candidate"
elif [ -e "$target" ]; then
    cat "$target" >"$candidate"
elif [ -e "$CONF_DIR/agent.toml.example" ]; then
    cat "$CONF_DIR/agent.toml.example" >"$candidate"
fi

if [ -e "$url_src" ]; then
    if ! url=$(read_url "$url_src"); then
        log "$url_src has no URL in it"
        reject "$url_src" "$toml_src"
    fi
    # The URL goes into a TOML basic string: no quotes, backslashes or spaces.
    if ! [[ $url =~ ^https?://[^[:space:]\"\\]+$ ]]; then
        log "$url_src: '$url' is not an http(s) URL"
        reject "$url_src" "$toml_src"
    fi
    set_url "$candidate" "$url" >"$candidate.new"
    cat "$candidate.new" >"$candidate"
    rm -f "$candidate.new"
fi

if ! validate "$candidate"; then
    log "rejected the configuration from $BOOT_DIR"
    reject "$toml_src" "$url_src"
fi

chown "$OWNER" "$candidate"
sync "$candidate"
mv -f "$candidate" "$target"
trap - EXIT
sync "$CONF_DIR"
rm -f "$toml_src" "$url_src"
sync "$BOOT_DIR" 2>/dev/null || sync
log "wrote $target from $BOOT_DIR"
