# shellcheck shell=bash
# Shared helpers for guest-images/build and guest-images/build-testhost. Sourced, not executed.
# Everything comes from Debian packages: the kernel .deb is downloaded once into $CACHE/dl and reused.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${GOVMM_CACHE:-$REPO/.cache}
DL=$CACHE/dl

log() { echo "$PROG: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get download/install, mknod)"

# need_pkgs CMD:PKG... installs the Debian packages whose command is missing; apt-get update only if needed.
need_pkgs() {
	local missing=() spec
	for spec in "$@"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 || [ -x "${spec%%:*}" ] || missing+=("${spec#*:}")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# kernel_pkg prints the versioned kernel package linux-image-amd64 depends on (e.g. linux-image-6.1.0-56-amd64).
# GOVMM_KERNEL_PKG pins it; without apt lists it falls back to the newest .deb already in $CACHE/dl.
kernel_pkg() {
	# GOVMM_KERNEL_PKG: a kernel package (linux-image-6.12.118+deb12-amd64), or a series' meta package
	# (linux-image-6.12-amd64), resolved like the default linux-image-amd64 to the kernel it depends on.
	local meta=linux-image-amd64 p
	if [ -n "${GOVMM_KERNEL_PKG:-}" ]; then
		if [[ $GOVMM_KERNEL_PKG =~ ^linux-image-[0-9]+\.[0-9]+-amd64$ ]]; then
			meta=$GOVMM_KERNEL_PKG
		else
			echo "$GOVMM_KERNEL_PKG"
			return
		fi
	fi
	local series= # 6.18 for linux-image-6.18-amd64, empty for linux-image-amd64
	[ "$meta" = linux-image-amd64 ] || { series=${meta#linux-image-}; series=${series%-amd64}; }
	p=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	if [ -z "$p" ]; then
		p=$(ls -t "$DL"/linux-image-"${series:+$series.}"[0-9]*_amd64.deb 2>/dev/null | head -1 | xargs -r basename | cut -d_ -f1)
	fi
	if [ -z "$p" ]; then
		apt-get update -qq
		p=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	fi
	local suite
	for suite in "${KERNEL_SUITES[@]}"; do
		[ -z "$p" ] || break
		p=$(apt_suite "$suite" depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
		# Some suites have no meta package per series: take the series' newest kernel.
		[ -n "$p" ] || [ -z "$series" ] || p=$(apt_suite "$suite" search "^linux-image-${series//./\\.}\\.[0-9]+\\+[a-z0-9]+-amd64\$" 2>/dev/null |
			awk '{print $1}' | sort -V | tail -1)
	done
	[ -n "$p" ] || die "cannot resolve the kernel package of $meta"
	echo "$p"
}

fetch_kernel() {
	mkdir -p "$DL"
	KPKG=$(kernel_pkg)
	KVER=${KPKG#linux-image-}
	KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$KDEB" ]; then
		log "downloading kernel package $KPKG…"
		(cd "$DL" && apt-get download -q "$KPKG" 2>&1 | grep -v unsandboxed >&2 || true)
		KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
		local suite
		for suite in "${KERNEL_SUITES[@]}"; do
			[ -z "$KDEB" ] || break
			log "$KPKG is not in the suites tried so far; trying $suite…"
			(cd "$DL" && apt_suite "$suite" download -q "$KPKG" 2>&1 | grep -v unsandboxed >&2 || true)
			KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
		done
		[ -n "$KDEB" ] || die "apt-get download $KPKG failed"
	fi
	KROOT=$DL/kroot-$KVER
	if [ ! -f "$KROOT/.done" ] || [ "$KDEB" -nt "$KROOT/.done" ]; then
		log "extracting $(basename "$KDEB")…"
		rm -rf "$KROOT"
		dpkg-deb -x "$KDEB" "$KROOT"
		# Debian 13's packages ship modules under /usr/lib (merged /usr).
		[ -e "$KROOT/lib" ] || [ ! -d "$KROOT/usr/lib/modules" ] || ln -s usr/lib "$KROOT/lib"
		depmod -b "$KROOT" "$KVER"
		touch "$KROOT/.done"
	fi
	[ -f "$KROOT/boot/vmlinuz-$KVER" ] || die "no vmlinuz-$KVER in $KDEB"
}

# apt_backports ARGS... runs apt-get against Debian bookworm-backports only, through a private sources
# list and state under $CACHE/apt-bpo (the machine's own apt configuration is left alone), on the
# mirror of the machine's own sources. Its lists are fetched on first use.
apt_backports() { apt_suite bookworm-backports "$@"; }

# apt_suite SUITE ARGS... is apt_backports for another suite of the same mirror: trixie-backports has
# the kernels whose virtio_net does AF_XDP zero-copy (6.13+), and a kernel package needs nothing else
# from its suite.
apt_suite() {
	local suite=$1 d=$CACHE/apt-$1 mirror
	shift
	[ "$suite" = bookworm-backports ] && d=$CACHE/apt-bpo
	mirror=$(awk '/^URIs:/{print $2; exit} /^deb /{for(i=2;i<=NF;i++) if ($i ~ /^http/) {print $i; exit}}' \
		/etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1)
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} $suite main" >"$d/sources.list"
	local opts=(-o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache")
	[ -n "$(ls "$d/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${opts[@]}" update -qq
	case $1 in
	depends | show | search | policy) apt-cache "${opts[@]}" "$@" ;;
	*) apt-get "${opts[@]}" "$@" ;;
	esac
}

# Suites a kernel package is looked up in after the machine's own.
KERNEL_SUITES=(bookworm-backports trixie-backports)

# mod_paths MOD... prints the module files needed for MODs (dependencies first), each once.
mod_paths() {
	local m
	for m in "$@"; do
		modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
	done | awk '!seen[$0]++'
}

# install_mods ROOT MOD... copies MODs and their dependencies to ROOT/lib/modules as plain .ko (busybox
# insmod cannot read compressed modules) and writes the load order to ROOT/etc/modules.list.
install_mods() {
	local root=$1 f name
	shift
	mkdir -p "$root/lib/modules" "$root/etc"
	: >"$root/etc/modules.list"
	for f in $(mod_paths "$@"); do
		name=$(basename "$f")
		case $name in
		*.ko.xz) xz -dc "$f" >"$root/lib/modules/${name%.xz}"; name=${name%.xz} ;;
		*.ko.zst) zstd -qdc "$f" >"$root/lib/modules/${name%.zst}"; name=${name%.zst} ;;
		*.ko.gz) gzip -dc "$f" >"$root/lib/modules/${name%.gz}"; name=${name%.gz} ;;
		*) cp "$f" "$root/lib/modules/$name" ;;
		esac
		echo "$name" >>"$root/etc/modules.list"
	done
}

# install_bins ROOT DEST:SRC... copies each binary to ROOT/DEST (DEST may be omitted: same path as SRC)
# together with the shared libraries ldd reports, at their real paths.
install_bins() {
	local root=$1 spec src dst f
	shift
	for spec in "$@"; do
		src=${spec#*:} dst=${spec%%:*}
		[ "$spec" = "$src" ] && dst=$src
		mkdir -p "$root$(dirname "$dst")"
		cp -L "$src" "$root$dst"
		for f in $(ldd "$src" | grep -oE '/[^ ]+'); do
			mkdir -p "$root$(dirname "$f")"
			cp -L "$f" "$root$f"
		done
	done
}

# need_static_busybox makes sure /bin/busybox has no shared libraries: the initramfs carries no libc for it.
need_static_busybox() {
	if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
		log "installing busybox-static"
		apt-get install -y -qq --no-install-recommends busybox-static >/dev/null 2>&1 ||
			{ apt-get update -qq && apt-get install -y -qq --no-install-recommends busybox-static >/dev/null; }
	fi
	! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox is not static"
}

# skeleton ROOT makes an empty initramfs root with busybox and a console node (init's first stdout).
skeleton() {
	rm -rf "$1"
	mkdir -p "$1"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,lib/modules}
	cp /bin/busybox "$1/bin/busybox"
	mknod -m 600 "$1/dev/console" c 5 1
	mknod -m 666 "$1/dev/null" c 1 3
}

# pack ROOT OUT writes ROOT as a gzip'd newc cpio archive, atomically.
pack() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6) >"$2.tmp"
	mv "$2.tmp" "$2"
}

# fingerprint ARGS... hashes file metadata (path, size, mtime) of the given inputs plus the strings given,
# so a step reruns when a script, the kernel package or a copied host binary changes.
fingerprint() {
	local a
	for a in "$@"; do
		if [ -e "$a" ]; then stat -L -c '%n %s %Y' "$a"; else echo "$a"; fi
	done | sha256sum | cut -d' ' -f1
}

# up_to_date STAMP FP OUT... succeeds when every OUT exists and STAMP holds FP.
up_to_date() {
	local stamp=$1 fp=$2 o
	shift 2
	for o in "$@"; do [ -e "$o" ] || return 1; done
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fp" ]
}

human_size() { du -h "$1" | cut -f1; }
