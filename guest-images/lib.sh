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
	if [ -n "${GOVMM_KERNEL_PKG:-}" ]; then echo "$GOVMM_KERNEL_PKG"; return; fi
	local p
	p=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	if [ -z "$p" ]; then
		p=$(ls -t "$DL"/linux-image-[0-9]*_amd64.deb 2>/dev/null | head -1 | xargs -r basename | cut -d_ -f1)
	fi
	if [ -z "$p" ]; then
		apt-get update -qq
		p=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	fi
	[ -n "$p" ] || die "cannot resolve the kernel package of linux-image-amd64"
	echo "$p"
}

# fetch_kernel sets KPKG, KVER, KDEB and KROOT (the extracted package, with modules.dep built).
fetch_kernel() {
	mkdir -p "$DL"
	KPKG=$(kernel_pkg)
	KVER=${KPKG#linux-image-}
	KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
	if [ -z "$KDEB" ]; then
		log "downloading kernel package $KPKG…"
		(cd "$DL" && apt-get download -q "$KPKG" 2>&1 | grep -v unsandboxed >&2 || true)
		KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
		if [ -z "$KDEB" ]; then
			log "$KPKG is not in this machine's suites; trying bookworm-backports…"
			(cd "$DL" && apt_backports download -q "$KPKG" 2>&1 | grep -v unsandboxed >&2 || true)
			KDEB=$(ls -t "$DL/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
		fi
		[ -n "$KDEB" ] || die "apt-get download $KPKG failed"
	fi
	KROOT=$DL/kroot-$KVER
	if [ ! -f "$KROOT/.done" ] || [ "$KDEB" -nt "$KROOT/.done" ]; then
		log "extracting $(basename "$KDEB")…"
		rm -rf "$KROOT"
		dpkg-deb -x "$KDEB" "$KROOT"
		depmod -b "$KROOT" "$KVER"
		touch "$KROOT/.done"
	fi
	[ -f "$KROOT/boot/vmlinuz-$KVER" ] || die "no vmlinuz-$KVER in $KDEB"
}

# apt_backports ARGS... runs apt-get against Debian bookworm-backports only, through a private sources
# list and state under $CACHE/apt-bpo (the machine's own apt configuration is left alone), on the
# mirror of the machine's own sources. Its lists are fetched on first use.
apt_backports() {
	local d=$CACHE/apt-bpo mirror
	mirror=$(awk '/^URIs:/{print $2; exit} /^deb /{for(i=2;i<=NF;i++) if ($i ~ /^http/) {print $i; exit}}' \
		/etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1)
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} bookworm-backports main" >"$d/sources.list"
	local opts=(-o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache")
	[ -n "$(ls "$d/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${opts[@]}" update -qq
	apt-get "${opts[@]}" "$@"
}

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
