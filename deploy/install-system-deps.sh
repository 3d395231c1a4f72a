#!/bin/sh
# Install the system libraries mlx-audio-server runs faster with. Idempotent; silent when nothing is needed.
#
# Linux CPU: the mlx[cpu] wheel links the reference BLAS (~5 GFLOP/s on a 2048x2048 float32 matmul);
# dsp/blas.py preloads a system OpenBLAS instead when one is installed (~30x faster). On Debian/Ubuntu
# this installs `libopenblas0-pthread` when run as root; elsewhere it prints what to install.
# macOS: nothing to do (MLX uses Metal and Accelerate).
set -eu

PKG=libopenblas0-pthread

have_openblas() {
    for ldconfig in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
        if command -v "$ldconfig" >/dev/null 2>&1; then
            "$ldconfig" -p 2>/dev/null | grep -Eq 'libopenblasp?\.so\.0 ' && return 0
            return 1
        fi
    done
    for dir in /usr/lib /usr/lib64 /usr/lib/*-linux-gnu /usr/local/lib; do
        for lib in "$dir"/libopenblas.so.0 "$dir"/libopenblasp.so.0; do
            [ -e "$lib" ] && return 0
        done
    done
    return 1
}

case "$(uname -s)" in
    Darwin) exit 0 ;;
    Linux) ;;
    *)
        echo "install-system-deps: $(uname -s) is not supported; nothing installed" >&2
        exit 0
        ;;
esac

if [ "${MLX_AUDIO_BLAS:-}" = "off" ] || have_openblas; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1 && [ -r /etc/debian_version ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "install-system-deps: installing $PKG (fast BLAS for MLX on CPU)"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq --no-install-recommends "$PKG" >/dev/null 2>&1; then
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "$PKG"
        fi
        have_openblas || { echo "install-system-deps: $PKG installed but libopenblas.so.0 not found" >&2; exit 1; }
        exit 0
    fi
    echo "install-system-deps: OpenBLAS is missing; MLX CPU matmuls will be ~30x slower. Install it with:" >&2
    echo "    sudo apt-get install -y $PKG" >&2
    exit 0
fi

if command -v dnf >/dev/null 2>&1; then
    hint="sudo dnf install -y openblas-threads"
elif command -v pacman >/dev/null 2>&1; then
    hint="sudo pacman -S --needed openblas"
elif command -v zypper >/dev/null 2>&1; then
    hint="sudo zypper install -y libopenblas_pthreads0"
else
    hint="install OpenBLAS (libopenblas.so.0) with your package manager, or set MLX_AUDIO_BLAS=/path/to/libopenblas.so"
fi
echo "install-system-deps: OpenBLAS is missing; MLX CPU matmuls will be ~30x slower. $hint" >&2
exit 0
