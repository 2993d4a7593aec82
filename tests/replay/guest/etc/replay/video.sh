# video: a 480x270 window where every pixel changes every frame (40 ms apart), over text.
printf 'Saffron replay workload: video\n' >/dev/tty1
fbtool video /usr/share/replay/video-source.raw 256 256 480 270 272 249 60 40
