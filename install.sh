#!/usr/bin/env bash
# Install basketagent as a systemd service on Raspberry Pi OS Bookworm (or any
# Debian 12+), or set up the development venv on a developer's x86 machine.
# Run it again at any time: a second run with the same source changes nothing.
# See deploy/README.md. `./install.sh --help` lists the options.
set -Eeuo pipefail
umask 022
# Any unexpected failure is exit 1 with where it happened (bad arguments exit 2 earlier).
trap 'echo "install.sh: error: a command failed (line $LINENO); nothing after it was done" >&2; exit 1' ERR

readonly PROG=install.sh
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SRC
readonly VENV=/opt/basketagent
readonly CORAL_REPO="https://packages.cloud.google.com/apt coral-edgetpu-stable main"
readonly CORAL_KEY_URL=https://packages.cloud.google.com/apt/doc/apt-key.gpg
readonly CORAL_LIST=/etc/apt/sources.list.d/coral-edgetpu.list
readonly KEYRING_DIR=/etc/apt/keyrings
# Seams for tests of the system checks; nothing else reads them.
OS_RELEASE=${BASKETAGENT_OS_RELEASE:-/etc/os-release}

usage() {
    cat <<EOF
Usage: $PROG [OPTIONS]

Install basketagent from this source tree ($SRC).

On a Raspberry Pi (as root): apt packages (python3-picamera2, python3-venv, the
Coral apt repository and libedgetpu1-std), a venv in $VENV with the system
site packages, the systemd unit, udev rules for the Coral, the basketagent
system user, /etc/basketagent/agent.toml (only if absent), then the service is
enabled and started. On a machine that is not a Pi it sets up the development
venv instead (see --dev and --system).

Options:
  -n, --dry-run     print what would be done, change nothing
  --destdir DIR     install only the files, under DIR (also \$DESTDIR): no apt,
                    no systemctl, no user creation, no venv unless --venv
  --venv            with --destdir: also create DIR$VENV and install the agent
  --no-coral        skip the Coral apt repository and libedgetpu1-std
  --no-start        enable the service but do not start or restart it
  --dev             set up the development venv ($SRC/.venv) for the README's commands
  --system          install the service even on a machine that is not a Pi
  --uninstall       remove the agent; keeps /etc/basketagent/agent.toml and the
                    state in /var/lib/basketagent
  --purge           with --uninstall: also remove the config, the state and the user
  -h, --help        show this help

Exit status: 0 done, 1 failure, 2 bad arguments.
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
bad_args() { echo "$PROG: error: $* (see '$PROG --help')" >&2; exit 2; }
say() { echo "$PROG: $*"; }

DRY_RUN=0 DEST=${DESTDIR:-} DEST_SET=0 WANT_VENV=0 CORAL=1 START=1
MODE="" UNINSTALL=0 PURGE=0
[ -n "$DEST" ] && DEST_SET=1

parse_args() {
    while (($#)); do
        case $1 in
            -h | --help) usage; exit 0 ;;
            -n | --dry-run) DRY_RUN=1 ;;
            --destdir)
                if (($# < 2)) || [[ $2 == -* ]]; then bad_args "--destdir needs a directory"; fi
                DEST=$2 DEST_SET=1
                shift ;;
            --destdir=*) DEST=${1#--destdir=} DEST_SET=1 ;;
            --venv) WANT_VENV=1 ;;
            --no-coral) CORAL=0 ;;
            --no-start) START=0 ;;
            --dev) set_mode dev ;;
            --system) set_mode system ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --) shift; (($# == 0)) || bad_args "unexpected argument '$1'" ;;
            -*) bad_args "unknown option '$1'" ;;
            *) bad_args "unexpected argument '$1'" ;;
        esac
        (($# == 0)) || shift
    done
    if ((DEST_SET)); then
        [ -n "$DEST" ] || bad_args "--destdir needs a directory"
        [ "$MODE" != dev ] || bad_args "--dev and --destdir do not go together"
        DEST=$(realpath -m -- "$DEST")
        [ "$DEST" != / ] || bad_args "--destdir / is the live system: leave --destdir out"
    fi
    ((PURGE == 0 || UNINSTALL)) || bad_args "--purge only goes with --uninstall"
    ((WANT_VENV == 0 || DEST_SET)) || bad_args "--venv only goes with --destdir"
    [ "$MODE" != dev ] || ((UNINSTALL == 0)) || bad_args "--dev and --uninstall do not go together"
}

set_mode() {
    [ -z "$MODE" ] || [ "$MODE" = "$1" ] || bad_args "--dev and --system do not go together"
    MODE=$1
}

# --- running and printing ----------------------------------------------------

# Run a command that changes the system, or only print it with --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '%s: would run:' "$PROG"
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

declare -A CHANGED=()

# install_file SRC DEST MODE OWNER GROUP-OF-CHANGE: copy unless identical already.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=$4 what=$5
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s -- "$src" "$dest" \
        && [ "$(stat -c %a -- "$dest")" = "$mode" ] \
        && { [ -z "$owner" ] || [ "$(stat -c %U:%G -- "$dest")" = "$owner" ]; }; then
        return 0
    fi
    CHANGED[$what]=1
    say "installing $dest"
    run install -D -m "$mode" -- "$src" "$dest"
    [ -z "$owner" ] || run chown -- "$owner" "$dest"
}

install_dir() {
    local dir=$1 mode=$2
    if [ -d "$dir" ]; then
        return 0
    fi
    say "creating $dir"
    run install -d -m "$mode" -- "$dir"
}

install_link() {
    local target=$1 link=$2
    if [ -L "$link" ] && [ "$(readlink -- "$link")" = "$target" ]; then
        return 0
    fi
    say "linking $link -> $target"
    run install -d -m 755 -- "$(dirname "$link")"
    run ln -sfn -- "$target" "$link"
}

remove_path() {
    local path=$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        say "removing $path"
        run rm -rf -- "$path"
    fi
}

# --- the files every mode installs ---------------------------------------------

# The user's sysusers.d entry; separate from install_files because a system install
# needs the user (and its group) before agent.toml is installed with that group.
install_users_file() {
    install_file "$SRC/deploy/sysusers.d/basketagent.conf" "$DEST/etc/sysusers.d/basketagent.conf" 644 "" users
}

# Everything else; DEST is "" on the live system.
install_files() {
    local owner_conf=""
    [ -n "$DEST" ] || owner_conf=root:basketagent
    install_file "$SRC/basketagent.service" "$DEST/etc/systemd/system/basketagent.service" 644 "" units
    install_file "$SRC/deploy/basketagent-firstboot.service" \
        "$DEST/etc/systemd/system/basketagent-firstboot.service" 644 "" units
    install_file "$SRC/deploy/firstboot.sh" "$DEST/usr/local/libexec/basketagent-firstboot" 755 "" units
    install_file "$SRC/deploy/udev/99-basketagent-coral.rules" \
        "$DEST/etc/udev/rules.d/99-basketagent-coral.rules" 644 "" udev
    install_file "$SRC/deploy/tmpfiles.d/basketagent.conf" "$DEST/etc/tmpfiles.d/basketagent.conf" 644 "" dirs
    install_link "$VENV/bin/basketagent" "$DEST/usr/local/bin/basketagent"
    install_dir "$DEST/etc/basketagent" 755
    install_file "$SRC/deploy/agent.toml.example" "$DEST/etc/basketagent/agent.toml.example" 644 "" config
    if [ -e "$DEST/etc/basketagent/agent.toml" ]; then
        say "keeping $DEST/etc/basketagent/agent.toml"
        if [ "$(($(stat -c '0%a' -- "$DEST/etc/basketagent/agent.toml") & 8#007))" != 0 ]; then
            say "warning: $DEST/etc/basketagent/agent.toml is readable by every user: chmod 640 it"
        fi
    else
        install_file "$SRC/deploy/agent.toml.example" "$DEST/etc/basketagent/agent.toml" 640 \
            "$owner_conf" config
    fi
}

# --- checks ------------------------------------------------------------------------

is_pi() {
    local model=""
    [ -r /proc/device-tree/model ] && model=$(tr -d '\0' </proc/device-tree/model)
    case $model in *"Raspberry Pi"*) return 0 ;; esac
    case $(uname -m) in aarch64 | arm*) return 0 ;; esac
    return 1
}

check_root() {
    [ "$(id -u)" = 0 ] || die "run as root (sudo ./$PROG), or use --destdir DIR or --dev"
}

check_debian() {
    local id="" like=""
    [ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE: only Debian-based systems are supported"
    # shellcheck disable=SC1090  # os-release is a file of shell variable assignments
    id=$(. "$OS_RELEASE" && echo "${ID:-}")
    # shellcheck disable=SC1090
    like=$(. "$OS_RELEASE" && echo "${ID_LIKE:-}")
    case " $id $like " in
        *" debian "* | *" raspbian "* | *" ubuntu "*) ;;
        *) die "this system ($id) is not Debian-based; install on Raspberry Pi OS Bookworm or Debian 12+" ;;
    esac
    if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
        die "apt-get/dpkg-query are missing: only Debian-based systems are supported"
    fi
}

check_python() {
    local python=$1 version
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
        || die "no python3 at $python: install python3 (3.11 or newer)"
    if ! [[ $version =~ ^3\.([0-9]+)$ ]] || ((BASH_REMATCH[1] < 11)); then
        die "python3 >= 3.11 is needed, $python is $version (Raspberry Pi OS Bookworm has 3.11)"
    fi
}

# An image build (pi-gen) runs this in a chroot: enable units there, never start them.
in_chroot() { command -v systemd-detect-virt >/dev/null && systemd-detect-virt -q --chroot 2>/dev/null; }
systemd_running() { [ -z "$DEST" ] && [ -d /run/systemd/system ] && ! in_chroot; }

# --- apt ---------------------------------------------------------------------------

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

coral_keyfile() {
    # The key is published armored; apt reads armored keys only from *.asc files.
    if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$1"; then
        echo "$KEYRING_DIR/coral-edgetpu.asc"
    else
        echo "$KEYRING_DIR/coral-edgetpu.gpg"
    fi
}

setup_coral_repo() {
    local keyfile line
    for keyfile in "$KEYRING_DIR/coral-edgetpu.asc" "$KEYRING_DIR/coral-edgetpu.gpg"; do
        line="deb [signed-by=$keyfile] $CORAL_REPO"
        if [ -s "$keyfile" ] && [ "$(cat "$CORAL_LIST" 2>/dev/null)" = "$line" ]; then
            return 0
        fi
    done
    CHANGED[apt]=1
    say "adding the Coral apt repository ($CORAL_LIST, key in $KEYRING_DIR)"
    if ((DRY_RUN)); then
        run curl -fsSL "$CORAL_KEY_URL" -o "$KEYRING_DIR/coral-edgetpu.asc"
        say "would write $CORAL_LIST: deb [signed-by=$KEYRING_DIR/coral-edgetpu.asc] $CORAL_REPO"
        return 0
    fi
    local tmp
    tmp=$(mktemp)
    command -v curl >/dev/null || apt_install curl ca-certificates
    curl -fsSL --retry 3 --max-time 60 "$CORAL_KEY_URL" -o "$tmp" \
        || { rm -f "$tmp"; die "could not download the Coral key from $CORAL_KEY_URL (network?); or use --no-coral"; }
    keyfile=$(coral_keyfile "$tmp")
    install -d -m 755 "$KEYRING_DIR"
    install -m 644 "$tmp" "$keyfile"
    rm -f "$tmp"
    echo "deb [signed-by=$keyfile] $CORAL_REPO" >"$CORAL_LIST.tmp"
    chmod 644 "$CORAL_LIST.tmp"
    mv -f "$CORAL_LIST.tmp" "$CORAL_LIST"
}

APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    CHANGED[apt]=1
    say "installing apt packages: ${missing[*]}"
    if ((APT_UPDATED == 0)); then
        run apt-get update -q || die "apt-get update failed"
        APT_UPDATED=1
    fi
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

install_packages() {
    local pkgs=(python3 python3-venv python3-numpy ca-certificates curl)
    if is_pi; then
        pkgs+=(python3-picamera2)
    else
        say "python3-picamera2 is only in the Raspberry Pi repository: skipped (use camera.source = \"v4l2:/dev/video0\")"
    fi
    if ((CORAL)); then
        apt_install curl ca-certificates
        setup_coral_repo
        ((${CHANGED[apt]:-0})) && APT_UPDATED=0
        pkgs+=(libedgetpu1-std)
    fi
    apt_install "${pkgs[@]}"
}

# --- the venv ------------------------------------------------------------------------

source_hash() {
    local paths=() p
    for p in pyproject.toml README.md agent models deploy/constraints.txt; do
        [ -e "$SRC/$p" ] && paths+=("$p")
    done
    (cd "$SRC" && find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# install_venv ROOT PYTHON: the agent in ROOT$VENV with apt's packages visible.
install_venv() {
    local root=$1 python=$2 venv=$1$VENV stamp hash
    if ! grep -qs '^include-system-site-packages = true' "$venv/pyvenv.cfg" || [ ! -x "$venv/bin/python" ]; then
        CHANGED[agent]=1
        say "creating the venv $venv (with the system site packages: picamera2, libcamera, numpy)"
        run "$python" -m venv --clear --system-site-packages "$venv"
    fi
    # apt's numpy is 1.x and picamera2/simplejpeg are built against it: never let pip pull numpy 2.
    install_file "$SRC/deploy/constraints.txt" "$venv/constraints.txt" 644 "" agent
    stamp=$venv/.basketagent-source
    hash=$(source_hash)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        say "the agent in $venv is up to date"
        return 0
    fi
    CHANGED[agent]=1
    say "installing the agent from $SRC into $venv"
    if ((DRY_RUN)); then
        run "$venv/bin/python" -m pip install --constraint "$venv/constraints.txt" "$SRC"
        return 0
    fi
    # Build from a copy so the checkout gets no root-owned build/ or egg-info.
    local build
    build=$(mktemp -d)
    local p
    for p in pyproject.toml README.md agent models; do
        [ -e "$SRC/$p" ] && cp -r "$SRC/$p" "$build/"
    done
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --constraint "$venv/constraints.txt" "$build"; then
        rm -rf "$build"
        die "pip install into $venv failed (network? see the messages above)"
    fi
    rm -rf "$build"
    echo "$hash" >"$stamp"
}

# --- modes -----------------------------------------------------------------------------

do_destdir() {
    say "installing the files under $DEST"
    install_users_file
    install_files
    if ((WANT_VENV)); then
        local python=${BASKETAGENT_PYTHON:-python3}
        check_python "$python"
        install_venv "$DEST" "$python"
    fi
    say "done: files are under $DEST"
}

do_dev() {
    local python=${BASKETAGENT_PYTHON:-python3}
    check_python "$python"
    if [ ! -x "$SRC/.venv/bin/python" ]; then
        run "$python" -m venv "$SRC/.venv"
    fi
    run "$SRC/.venv/bin/pip" install -q -e "${SRC}[test]"
    say "development venv ready in $SRC/.venv; the README's commands:"
    say "  .venv/bin/basketagent demo"
    say "  .venv/bin/python -m pytest -q"
}

do_system() {
    local python=${BASKETAGENT_PYTHON:-/usr/bin/python3}
    check_root
    check_debian
    check_python "$python"
    install_packages
    # The user first: agent.toml is installed with its group.
    install_users_file
    if ((${CHANGED[users]:-0})) || ! getent passwd basketagent >/dev/null; then
        run systemd-sysusers /etc/sysusers.d/basketagent.conf
    fi
    install_files
    if ((${CHANGED[dirs]:-0})) || [ ! -d /var/lib/basketagent ]; then
        run systemd-tmpfiles --create /etc/tmpfiles.d/basketagent.conf
    fi
    install_venv "" "$python"
    if ((${CHANGED[udev]:-0})) && systemd_running && [ -d /run/udev ]; then
        run udevadm control --reload-rules
        run udevadm trigger --action=change --subsystem-match=usb --subsystem-match=apex
    fi
    if systemd_running && ((${CHANGED[units]:-0})); then
        run systemctl daemon-reload
    fi
    local unit
    for unit in basketagent.service basketagent-firstboot.service; do
        systemctl -q is-enabled "$unit" 2>/dev/null || run systemctl enable "$unit"
    done
    if ! systemd_running; then
        say "systemd is not running here (image build or container): the service starts at the next boot"
    elif ((START == 0)); then
        say "not starting the service (--no-start): systemctl start basketagent"
    elif ! systemctl -q is-active basketagent.service; then
        say "starting basketagent.service"
        run systemctl start basketagent.service \
            || die "basketagent.service did not start: journalctl -u basketagent -e"
    elif ((${CHANGED[units]:-0} + ${CHANGED[agent]:-0} + ${CHANGED[udev]:-0})); then
        say "restarting basketagent.service"
        run systemctl restart basketagent.service \
            || die "basketagent.service did not restart: journalctl -u basketagent -e"
    fi
    cat <<EOF
$PROG: done. The backend URL is in /etc/basketagent/agent.toml ([backend] url).
$PROG: pair the device with the pairing code it logs once registered:
    journalctl -u basketagent | grep -i pairing
    sudo basketagent status
EOF
}

do_uninstall() {
    local root=$DEST
    if [ -z "$root" ]; then
        check_root
        local unit
        for unit in basketagent.service basketagent-firstboot.service; do
            if systemd_running && systemctl -q is-active "$unit" 2>/dev/null; then
                run systemctl stop "$unit"
            fi
            if systemctl -q is-enabled "$unit" 2>/dev/null; then
                run systemctl disable "$unit"
            fi
        done
    fi
    remove_path "$root/etc/systemd/system/basketagent.service"
    remove_path "$root/etc/systemd/system/basketagent-firstboot.service"
    remove_path "$root/usr/local/libexec/basketagent-firstboot"
    remove_path "$root/etc/udev/rules.d/99-basketagent-coral.rules"
    remove_path "$root/etc/sysusers.d/basketagent.conf"
    remove_path "$root/etc/tmpfiles.d/basketagent.conf"
    remove_path "$root/usr/local/bin/basketagent"
    remove_path "$root/etc/basketagent/agent.toml.example"
    remove_path "$root$VENV"
    if ((PURGE)); then
        remove_path "$root/etc/basketagent"
        remove_path "$root/var/lib/basketagent"
        if [ -z "$root" ] && getent passwd basketagent >/dev/null; then
            say "removing the user basketagent"
            run userdel basketagent
        fi
    else
        say "kept $root/etc/basketagent/agent.toml and $root/var/lib/basketagent (use --purge to remove them)"
    fi
    if [ -z "$root" ] && systemd_running; then
        run systemctl daemon-reload
        if [ -d /run/udev ]; then run udevadm control --reload-rules; fi
    fi
    [ -n "$root" ] || say "the Coral apt repository and libedgetpu1-std are left installed"
    say "uninstalled"
}

main() {
    parse_args "$@"
    if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/deploy" ]; then
        die "$SRC is not a basketagent source tree (no pyproject.toml or deploy/)"
    fi
    ((DRY_RUN == 0)) || say "dry run: nothing is changed"
    if ((UNINSTALL)); then
        do_uninstall
    elif ((DEST_SET)); then
        do_destdir
    elif [ "$MODE" = dev ]; then
        do_dev
    elif [ "$MODE" = system ] || is_pi; then
        do_system
    else
        say "this is not a Raspberry Pi ($(uname -m)): setting up the development venv."
        say "To install the service on this machine anyway: sudo ./$PROG --system"
        do_dev
    fi
}

main "$@"
