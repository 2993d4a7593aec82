# grub-bios.sh: the BIOS-bootable disk shared by build-boot-disk and build-desktop-image.
# Sourced by bash scripts that define die(). The disk:
#   sector 0          GRUB's boot.img (i386-pc) + an MBR partition table (sfdisk)
#   sectors 1..2047   GRUB's core.img (grub-mkimage -O i386-pc), with every module it needs
#                     built in, so the disk holds no /boot/grub/i386-pc directory; its embedded
#                     config finds the partition by filesystem UUID and loads /boot/grub/grub.cfg
#   1 MiB..end        partition 1 (type 83, active): ext4 made from a staging directory
# Nothing is mounted: the filesystem is made (mke2fs -d) in a separate file and copied into
# place, and boot.img/core.img are written with dd, patched as grub-bios-setup patches them for
# a hard disk (core.img at sector 1 matches the defaults of boot.img's kernel sector and
# diskboot.img's blocklist, which grub-mkimage fills in).
# Needs: grub-pc-bin (grub-mkimage, /usr/lib/grub/i386-pc), e2fsprogs (mke2fs), fdisk (sfdisk).
# shellcheck shell=bash

grub_dir=${GRUB_I386_PC_DIR:-/usr/lib/grub/i386-pc}
grub_part_start=2048            # first sector of the partition (1 MiB); core.img goes below it
grub_modules="biosdisk part_msdos ext2 normal boot linux serial terminal terminfo echo test
              configfile search search_fs_uuid search_label"

# grub_need_tools: die with a one-line message unless the tools and GRUB's i386-pc files are here.
grub_need_tools() {
    local t f
    for t in sfdisk:fdisk mke2fs:e2fsprogs grub-mkimage:grub-common; do
        command -v "${t%%:*}" >/dev/null || die "${t%%:*} not found (apt-get install ${t#*:}, or run scripts/setup)"
    done
    for f in boot.img diskboot.img kernel.img moddep.lst; do
        [[ -f $grub_dir/$f ]] || die "$grub_dir/$f not found (apt-get install grub-pc-bin, or run scripts/setup)"
    done
}

# grub_tool_versions: the tool versions the disk depends on, for the callers' up-to-date keys.
grub_tool_versions() {
    dpkg-query -W -f='${Package} ${Version}\n' grub-pc-bin e2fsprogs 2>/dev/null || true
    mke2fs -V 2>&1 | head -n1
    echo "grubdir=$grub_dir"
}

# grub_uuid KEY: a filesystem UUID made from a hex key, so that the same inputs give the same disk.
grub_uuid() { sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/' <<<"$1"; }

# grub_cfg_head: the first lines of grub.cfg: the menu on the serial port (ttyS0, 115200) and
# the screen, 3 s, first entry.
grub_cfg_head() {
    cat <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=3
set default=0
EOF
}

# grub_make_disk OUT DISK_MIB STAGE UUID LABEL LABEL_ID WORKDIR
# Writes the disk OUT (DISK_MIB MiB, sparse): MBR with disk signature LABEL_ID, partition 1 an
# ext4 filesystem (UUID, LABEL) holding STAGE (which must have /boot/grub/grub.cfg), and GRUB.
# Sets grub_core_sectors.
grub_make_disk() {
    local out=$1 disk_mib=$2 stage=$3 uuid=$4 label=$5 label_id=$6 work=$7
    local part_kib=$(( disk_mib * 1024 - grub_part_start / 2 )) blocklist

    # core.img: find the partition by its UUID (so that the disk also boots when it is not the
    # first one), falling back on the built-in prefix (hd0,msdos1)/boot/grub.
    cat >"$work/embed.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $uuid
set prefix=(\$root)/boot/grub
EOF
    # shellcheck disable=SC2086  # word splitting intended
    grub-mkimage -O i386-pc -d "$grub_dir" -o "$work/core.img" -c "$work/embed.cfg" \
        -p '(hd0,msdos1)/boot/grub' $grub_modules || die "grub-mkimage failed"
    grub_core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
    (( grub_core_sectors < grub_part_start )) ||
        die "core.img ($grub_core_sectors sectors) does not fit before sector $grub_part_start"

    # The partition table, then the filesystem.
    rm -f "$out"
    truncate -s "${disk_mib}M" "$out"
    echo "label: dos
label-id: $label_id
start=$grub_part_start, type=83, bootable" | sfdisk -q "$out" >/dev/null || die "sfdisk failed"
    truncate -s "${part_kib}K" "$work/part.ext4"
    mke2fs -q -F -t ext4 -O ^metadata_csum_seed -L "$label" -U "$uuid" -E nodiscard \
        -d "$stage" "$work/part.ext4" "${part_kib}k" >/dev/null || die "mke2fs failed"
    dd if="$work/part.ext4" of="$out" bs=4K seek=$(( grub_part_start / 8 )) conv=notrunc,sparse status=none
    rm -f "$work/part.ext4"

    # boot.img: its first 440 bytes (the code; the disk signature and partition table stay). Its
    # kernel sector is 1 by default. As grub-bios-setup does for a hard disk, replace the jump
    # at 0x66 with two NOPs (the workaround for BIOSes that pass a bad boot drive in DL).
    dd if="$grub_dir/boot.img" of="$out" bs=440 count=1 conv=notrunc status=none
    printf '\x90\x90' | dd of="$out" bs=1 seek=$((0x66)) conv=notrunc status=none
    # core.img at sector 1; the blocklist at the end of its first sector (diskboot.img) must say
    # "sector 2, core_sectors - 1 sectors" (grub-mkimage writes the length, the start is 2).
    blocklist=$(od -An -tu4 -j $((512 - 12)) -N 4 "$work/core.img" | tr -d ' ')
    [[ $blocklist == 2 ]] || die "unexpected blocklist start $blocklist in core.img"
    dd if="$work/core.img" of="$out" bs=512 seek=1 conv=notrunc status=none
}
