# Sourced by scripts/test.sh and scripts/demo.sh: prepares a fresh Debian machine
# (as root) and a virtual environment in .venv with vspd installed from this tree.
# Idempotent: a second run installs nothing new.

VENV="${VSPD_VENV:-$PWD/.venv}"

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_for_venv() {
    # The first python3 on PATH that can make a virtual environment (>= 3.11).
    if command -v python3 >/dev/null && python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        command -v python3
        return
    fi
    apt_install python3 python3-venv python3-pip >&2
    echo /usr/bin/python3
}

make_venv() {
    # $@: the extras to install, e.g. test or demo
    local extras
    extras=$(IFS=,; echo "$*")
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating $VENV"
        "$(python_for_venv)" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    # Reinstall only when what the install depends on changed (it also compiles protos/),
    # or an extra is asked for that is not installed yet ("test" has what "demo" needs:
    # the demo script run by the tests must not reinstall the venv they run in).
    local stamp="$VENV/.vspd-installed" sources installed extra missing=""
    sources="$(cat pyproject.toml setup.py protos/*/*/*.proto protos/*/*/*/*.proto 2>/dev/null | sha256sum)"
    installed="$(sed -n 2p "$stamp" 2>/dev/null || true)"
    for extra in "$@"; do
        case " $installed " in
            *" $extra "*) ;;
            *" test "*) [ "$extra" = demo ] || missing="$missing $extra" ;;
            *) missing="$missing $extra" ;;
        esac
    done
    if [ "$(sed -n 1p "$stamp" 2>/dev/null || true)" != "$sources" ] || [ -n "$missing" ]; then
        echo "==> installing vspd[$extras] (newest releases from PyPI)"
        "$VENV/bin/python" -m pip install -q --upgrade -e ".[$extras]"
        printf '%s\n%s\n' "$sources" "$*" > "$stamp"
    fi
}
