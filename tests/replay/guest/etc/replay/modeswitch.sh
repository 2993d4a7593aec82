# modeswitch: text at 1024x768, a KMS client switches to 640x480 for a second (the console
# comes back at 1024x768), then to 800x600, where it stays while the host takes its picture.
printf 'Saffron replay workload: modeswitch\n' >/dev/tty1
qxl-modeset 640 480 1 pattern >/tmp/modeset1.log
grep -q MODESET-OK /tmp/modeset1.log
printf 'back at the console\n' >/dev/tty1
sleep 0.5
qxl-modeset 800 600 3600 pattern >/tmp/modeset2.log &
i=0
while ! grep -q MODESET-OK /tmp/modeset2.log; do
    i=$((i + 1)); [ $i -lt 100 ] || exit 1
    sleep 0.1
done
