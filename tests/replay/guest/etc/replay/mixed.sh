# mixed: the console, slideshow and video workloads one after the other (for benchmarks).
for workload in console slideshow video; do
    sh -e "/etc/replay/$workload.sh"
    sleep 0.5
done
