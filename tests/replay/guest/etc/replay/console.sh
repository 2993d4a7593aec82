# console: text on tty1 in colours, then enough lines to scroll the console several times.
tty=/dev/tty1
printf '\033[1;33mSaffron replay workload: console\033[0m\n\n' >$tty
cat /proc/version /proc/cmdline /etc/saffron/modules >$tty
hashes='########################################'
n=1
while [ $n -le 60 ]; do
    printf '\033[3%dmline %03d\033[0m the quick brown fox jumps over the lazy dog %s\n' \
        $((n % 7 + 1)) $n "$(echo "$hashes" | cut -c1-$((n % 40 + 1)))" >$tty
    [ $((n % 10)) = 0 ] && sleep 0.2
    n=$((n + 1))
done
ls -l /bin | head -n 40 >$tty
printf '\033[7m reverse video \033[0m \033[1mbold\033[0m \033[4munderline\033[0m\n' >$tty
printf '\033[44;37m%-60s\033[0m\nend of console workload\n' ' white on blue' >$tty
