# mixed: the console and slideshow workloads, then a 10-second video (250 frames of the video
# workload's 480x270 window, 40 ms apart), one after the other (for benchmarks).
for workload in console slideshow; do
    sh -e "/etc/replay/$workload.sh"
    sleep 0.5
done
printf 'Saffron replay workload: 10-second video\n' >/dev/tty1
fbtool video /usr/share/replay/video-source.raw 256 256 480 270 272 249 250 40
