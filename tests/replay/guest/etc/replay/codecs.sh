# codecs: one screen that needs every kind of image, for tests/e2e/test_codecs.py (run once
# per image compression mode, each time with a fresh client watching): coloured console text,
# a synthetic picture and a photo (the top half) written to /dev/fb0, real icons, a band of
# the synthetic picture, then console lines that scroll everything up (fbcon moves the whole
# screen). $1 is a run number, shown in the text.
tty=/dev/tty1
run=${1:-0}
printf '\033[2J\033[H\033[1;33mSaffron codec workload, run %s\033[0m\n' "$run" >$tty
n=1
while [ $n -le 12 ]; do
    printf '\033[3%dmline %02d\033[0m the quick brown fox jumps over the lazy dog %s\n' \
        $((n % 7 + 1)) $n "$run" >$tty
    n=$((n + 1))
done
sleep 0.3
dd if=/usr/share/replay/synthetic.raw of=/dev/fb0 bs=262144 2>/dev/null
sleep 0.3
# the photo over the top half (6 x 64 rows)
dd if=/usr/share/replay/photo.raw of=/dev/fb0 bs=262144 count=6 2>/dev/null
sleep 0.3
while read -r file w h x y; do
    fbtool blit "/usr/share/replay/$file" "$w" "$h" "$x" "$y"
done </usr/share/replay/slides
fbtool blit /usr/share/replay/synthetic.raw 1024 128 0 640
sleep 0.3
# The cursor is on the console's last rows: these lines scroll the pictures up.
printf '\033[48;1H' >$tty
n=1
while [ $n -le 8 ]; do
    printf '\033[3%dmscrolled %02d\033[0m run %s\n' $((n % 7 + 1)) $n "$run" >$tty
    n=$((n + 1))
done
