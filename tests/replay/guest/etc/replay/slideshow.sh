# slideshow: full-screen pictures (a synthetic one, a real one) and real icons at places,
# all converted on the host into raw B,G,R,X files (/usr/share/replay/*.raw, listed with
# their sizes in /usr/share/replay/slides). Linux 6.1's fbdev emulation reports no damage for a
# write of exactly one full line, hence dd bs=64 lines (and fbtool's care).
dd if=/usr/share/replay/synthetic.raw of=/dev/fb0 bs=262144 2>/dev/null
sleep 0.5
dd if=/usr/share/replay/background.raw of=/dev/fb0 bs=262144 2>/dev/null
sleep 0.5
echo "slides: full-screen pictures written"
while read -r file w h x y; do
    echo "slide $file"
    fbtool blit "/usr/share/replay/$file" "$w" "$h" "$x" "$y"
    sleep 0.3
done </usr/share/replay/slides
echo "slides: icons written"
# and a band of the synthetic picture over the lower part
fbtool blit /usr/share/replay/synthetic.raw 1024 128 0 640
