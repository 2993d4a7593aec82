/*
 * netflood IFACE COUNT [SEED [SECONDS]]: sends COUNT frames (or as many as fit in SECONDS) of
 * random bytes and random lengths (an Ethernet header's 14 bytes up to 1500 more, every
 * sixteenth up to the interface's MTU) out of IFACE through a raw packet socket, as fast as the
 * socket takes them: a flood of garbage for the network tests of saffron's virtio-net card.
 * Every fourth frame goes to the broadcast address, every eighth claims to be IPv4 with a
 * nonsense header. Prints "netflood: SENT sent, ERRORS refused".
 */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: netflood IFACE COUNT [SEED [SECONDS]]\n");
        return 2;
    }
    long count = atol(argv[2]);
    srandom(argc > 3 ? (unsigned)atol(argv[3]) : 1);
    time_t until = argc > 4 ? time(NULL) + atol(argv[4]) : 0;
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s < 0) {
        perror("netflood: socket");
        return 1;
    }
    struct ifreq req;
    memset(&req, 0, sizeof req);
    snprintf(req.ifr_name, sizeof req.ifr_name, "%s", argv[1]);
    if (ioctl(s, SIOCGIFMTU, &req) < 0) {
        perror("netflood: SIOCGIFMTU");
        return 1;
    }
    int mtu = req.ifr_mtu;
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = (int)if_nametoindex(argv[1]);
    to.sll_halen = ETH_ALEN;
    static unsigned char frame[65536 + 14];
    for (size_t j = 0; j < sizeof frame; j++)
        frame[j] = (unsigned char)random();
    long sent = 0, refused = 0;
    for (long i = 0; i < count && (!until || time(NULL) < until); i++) {
        /* Mostly up to 1500 bytes; every sixteenth up to the MTU. */
        int max = i % 16 == 0 || mtu < 1500 ? mtu : 1500;
        size_t len = 14 + (size_t)(random() % (max + 1));
        if (len > sizeof frame)
            len = sizeof frame;
        for (size_t j = 0; j < 64; j++)
            frame[j] = (unsigned char)random();
        frame[0] &= 0xfe; /* unicast, unless broadcast below */
        if (i % 4 == 0)
            memset(frame, 0xff, 6);
        if (i % 8 == 0) {
            frame[12] = 0x08;
            frame[13] = 0x00;
        }
        if (sendto(s, frame, len, 0, (struct sockaddr *)&to, sizeof to) < 0)
            refused++;
        else
            sent++;
    }
    printf("netflood: %ld sent, %ld refused\n", sent, refused);
    return 0;
}
